package containerd_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/warrenorch/warren/sdk/runtime"
)

// BenchmarkStartTask starts a task (StartTask returns once its process
// runs) and destroys it (kill, delete the process, container, snapshot
// and log), on the managed containerd, in-process.
func BenchmarkStartTask(b *testing.B) {
	rt := newRuntime(b)
	importImage(b, rt, testImage)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("bench%d-%d", os.Getpid(), i)
		_, st, err := rt.StartTask(ctx, runtime.TaskSpec{TaskID: id, Image: testImage.Ref, Command: []string{"sleep", "3600"}})
		if err != nil {
			b.Fatal(err)
		}
		if st.State != runtime.StateRunning || st.PID == 0 {
			b.Fatalf("StartTask = %+v, want running", st)
		}
		if err := rt.DestroyTask(ctx, id, true); err != nil {
			b.Fatal(err)
		}
	}
}
