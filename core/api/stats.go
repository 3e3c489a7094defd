package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/metrics"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// statsTimeout bounds how long TaskStats waits for one node, so a node
// that is down gives its rows an error instead of holding up the rest.
const statsTimeout = 5 * time.Second

// TaskStats samples the CPU and memory use of running tasks on their nodes.
func (s *Server) TaskStats(ctx context.Context, req *apiv1.TaskStatsRequest) (*apiv1.TaskStatsResponse, error) {
	resp, err := s.taskStats(ctx, req)
	return resp, toStatus(err)
}

func (s *Server) taskStats(ctx context.Context, req *apiv1.TaskStatsRequest) (*apiv1.TaskStatsResponse, error) {
	if s.opts.Workers == nil {
		return nil, fmt.Errorf("stats: this agent reaches no worker: %w", sdk.ErrUnsupported)
	}
	tasks, err := s.statsTasks(req)
	if err != nil {
		return nil, err
	}
	out := make([]*apiv1.TaskStatsSample, len(tasks))
	byNode := map[string][]int{}
	for i, t := range tasks {
		out[i] = &apiv1.TaskStatsSample{TaskId: t.GetId(), ServiceName: t.GetServiceName(), Slot: t.GetSlot(), NodeId: t.GetNodeId(), Node: t.GetNodeId()}
		if n, ok := s.opts.State.Node(t.GetNodeId()); ok && n.GetName() != "" {
			out[i].Node = n.GetName()
		}
		if t.GetState() != apiv1.TaskState_TASK_STATE_RUNNING {
			out[i].Error = fmt.Sprintf("task %s is %s, not running: it has no stats", t.GetId(), metrics.TaskStateLabel(t.GetState()))
			continue
		}
		byNode[t.GetNodeId()] = append(byNode[t.GetNodeId()], i)
	}
	var wg sync.WaitGroup
	for nodeID, idx := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]string, len(idx))
			for k, i := range idx {
				ids[k] = tasks[i].GetId()
			}
			cctx, cancel := context.WithTimeout(ctx, statsTimeout)
			defer cancel()
			samples, err := s.opts.Workers.TaskStats(cctx, nodeID, ids)
			if err != nil && cctx.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("node %s did not answer within %s", out[idx[0]].GetNode(), statsTimeout)
			}
			if err == nil && len(samples) != len(ids) {
				err = fmt.Errorf("node %s answered %d samples for %d tasks: %w", out[idx[0]].GetNode(), len(samples), len(ids), sdk.ErrInternal)
			}
			for k, i := range idx {
				if err != nil {
					out[i].Error = nodeNamed(out[i].GetNode(), status.Convert(err).Message())
					continue
				}
				got := samples[k]
				out[i].CpuUsageNs, out[i].MemoryBytes, out[i].MemoryLimitBytes = got.GetCpuUsageNs(), got.GetMemoryBytes(), got.GetMemoryLimitBytes()
				out[i].SampledUnixNano, out[i].Error = got.GetSampledUnixNano(), got.GetError()
			}
		}()
	}
	wg.Wait()
	return &apiv1.TaskStatsResponse{Stats: out}, nil
}

// statsTasks resolves a stats request to tasks: the named ones (running or
// not: one that is not gets a row saying so), or the running tasks of a
// service, of a node, or of the whole cluster.
func (s *Server) statsTasks(req *apiv1.TaskStatsRequest) ([]*apiv1.Task, error) {
	f, err := s.taskFilter(req.GetService(), req.GetNode())
	if err != nil {
		return nil, err
	}
	if len(req.GetTasks()) > 0 {
		if f != (state.TaskFilter{}) {
			return nil, invalid("stats: give tasks, or select them by service or node, not both")
		}
		out := make([]*apiv1.Task, 0, len(req.GetTasks()))
		for _, name := range req.GetTasks() {
			t, err := s.lookupTask(name)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		}
		return out, nil
	}
	var out []*apiv1.Task
	for _, t := range s.opts.State.Tasks(f) {
		if t.GetState() == apiv1.TaskState_TASK_STATE_RUNNING && t.GetNodeId() != "" {
			out = append(out, t)
		}
	}
	return out, nil
}

// nodeNamed is msg, a node's error, with the node named in front when msg
// does not name it (a call that timed out says only that).
func nodeNamed(node, msg string) string {
	if strings.Contains(msg, "node "+node) {
		return msg
	}
	return "node " + node + ": " + msg
}
