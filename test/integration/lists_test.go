package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/testutil"
)

// bigLabels are 60 labels of 4,000 characters: a spec of ~235 KiB, near the
// 256 KiB a spec may have.
func bigLabels() map[string]string {
	l := map[string]string{}
	for i := range 60 {
		l[fmt.Sprintf("k%02d", i)] = strings.Repeat(string(rune('a'+i%26)), 4000)
	}
	return l
}

// TestCLIListsMoreThanFourMiB: 20 services of ~235 KiB specs (4.6 MiB) and a
// service of 20 such tasks (4.6 MiB) are more than gRPC's 4 MiB receive
// limit, which the CLI keeps: `service ls`, `task ls`, `service ps`, `node ls`
// and the wait after `service create` page through them and show all.
func TestCLIListsMoreThanFourMiB(t *testing.T) {
	a, bin := startAgent(t, "")
	c := a.Client()
	ctx := context.Background()
	for i := range 19 {
		spec := &apiv1.ServiceSpec{Name: fmt.Sprintf("big-%02d", i), Image: "busybox", Labels: bigLabels()}
		if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec}); err != nil {
			t.Fatalf("create %s: %v", spec.GetName(), err)
		}
	}
	cli := func(t *testing.T, args ...string) string {
		t.Helper()
		out, errOut, code := testutil.RunCLI(t, bin, a.Socket, args...)
		if code != 0 {
			t.Fatalf("warren %s: exit %d\n%s%s", strings.Join(args[:min(len(args), 4)], " "), code, out, errOut)
		}
		return out
	}

	// The wait after create lists the service's 20 tasks of ~235 KiB each.
	// This manager runs no worker, so they stay pending and the wait ends
	// at --timeout-converge: what counts is that it lists them.
	create := []string{"service", "create", "many", "--image", "busybox", "--replicas", "20", "--timeout-converge", "1s"}
	for k, v := range bigLabels() {
		create = append(create, "--label", k+"="+v)
	}
	out, errOut, code := testutil.RunCLI(t, bin, a.Socket, create...)
	if code == 0 || !strings.Contains(errOut, "not converged after 1s") || strings.Contains(errOut, "larger than max") {
		t.Errorf("service create many (no worker): exit %d, want the wait to time out listing its tasks\n%s%s", code, out, errOut)
	}
	testutil.Eventually(t, 30*time.Second, "the 20 tasks of service many", func() bool {
		info, err := c.ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
		return err == nil && info.GetTasks() == 20
	})

	rows := func(table string) int { return len(strings.Split(strings.TrimSpace(table), "\n")) - 1 }
	tests := []struct {
		args []string
		rows int
	}{
		{[]string{"service", "ls"}, 20},
		{[]string{"task", "ls"}, 20},
		{[]string{"task", "ls", "--all", "--service", "many"}, 20},
		{[]string{"service", "ps", "many"}, 20},
		{[]string{"node", "ls"}, 1},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if got := rows(cli(t, tt.args...)); got != tt.rows {
				t.Errorf("%d rows, want %d", got, tt.rows)
			}
			var list []json.RawMessage
			if err := json.Unmarshal([]byte(cli(t, append(tt.args, "-o", "json")...)), &list); err != nil || len(list) != tt.rows {
				t.Errorf("-o json: %d objects (%v), want %d", len(list), err, tt.rows)
			}
		})
	}
}
