package agent

import (
	"context"
	"fmt"
	"io"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// localWorkers gives the API access to the runtime of the worker that runs
// in this same agent. The API does not reach the runtimes of other nodes
// yet: their tasks' logs are refused as unsupported, and images are
// imported on each node through its own socket.
type localWorkers struct {
	nodeID   string
	nodeName string
	rt       runtime.Runtime
}

func (w *localWorkers) TaskLogs(ctx context.Context, task *apiv1.Task, follow bool, tail int64, send func([]byte) error) error {
	if task.GetNodeId() != w.nodeID {
		return fmt.Errorf("task %s runs on node %s, and this manager serves only the logs of its own node's tasks (run `warren task logs` on that node's manager, if it is one): %w", task.GetId(), task.GetNodeId(), sdk.ErrUnsupported)
	}
	if tail <= 0 {
		tail = runtime.TailAll
	}
	return w.rt.TaskLogs(ctx, runtime.LogsRequest{TaskID: task.GetId(), Follow: follow, Tail: tail}, func(c runtime.LogChunk) error {
		return send(c.Data)
	})
}

func (w *localWorkers) ImportImage(ctx context.Context, r io.Reader) ([]*apiv1.ImportedImage, []string, error) {
	images, err := w.rt.ImportImage(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	out := make([]*apiv1.ImportedImage, 0, len(images))
	for _, img := range images {
		out = append(out, &apiv1.ImportedImage{Ref: img.Ref, Digest: img.Digest, Size: img.Size})
	}
	return out, []string{w.nodeName}, nil
}
