package main

import (
	"encoding/json"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup() // the plugins startManager built
	os.Exit(code)
}

// startManager serves the real API of a real single-node manager (store-bolt,
// FSM, Raft) on a unix socket and returns the manager and the socket.
func startManager(t *testing.T) (*dispatchertest.Manager, string) {
	t.Helper()
	m := dispatchertest.Start(t, dispatchertest.Options{})
	dir, err := os.MkdirTemp("", "warren-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "warren.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(api.Options{State: m.State, Raft: m.Raft, Events: m.Events}).GRPCServer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return m, sock
}

// addNode stores a node as a registration would. UpdatedAt is now: the
// dispatcher leaves a READY node without a session alone for a TTL.
func addNode(m *dispatchertest.Manager, n *apiv1.Node) {
	n.CreatedAt, n.UpdatedAt = timestamppb.Now(), timestamppb.Now()
	m.Apply(&fsmpb.UpsertNode{Node: n})
}

// TestNodeCommandLine checks the command lines that are refused before the
// agent is called; the socket leads nowhere, so any call would fail
// differently.
func TestNodeCommandLine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	tests := []refusal{
		{"update without a change", []string{"node", "update", "edge-1"},
			"Error: nothing to update: give at least one of --availability, --label-add or --label-rm\nRun 'warren node update --help' for usage.\n"},
		{"update without a node", []string{"node", "update", "--availability", "drain"},
			"Error: \"warren node update\" needs one node NAME or ID\nRun 'warren node update --help' for usage.\n"},
		{"unknown availability", []string{"node", "update", "edge-1", "--availability", "off"},
			"Error: invalid argument \"off\" for \"--availability\" flag: use active, pause or drain\nRun 'warren node update --help' for usage.\n"},
		{"label-add without a value", []string{"node", "update", "edge-1", "--label-add", "zone"},
			"Error: invalid --label-add \"zone\": expected KEY=VALUE\nRun 'warren node update --help' for usage.\n"},
		{"label-rm with a value", []string{"node", "update", "edge-1", "--label-rm", "zone=a"},
			"Error: invalid --label-rm \"zone=a\": give the KEY alone, without =VALUE\nRun 'warren node update --help' for usage.\n"},
		{"label add without labels", []string{"node", "label", "add", "edge-1"},
			"Error: \"warren node label add\" needs a node NAME or ID and at least one KEY=VALUE\nRun 'warren node label add --help' for usage.\n"},
		{"label add without a value", []string{"node", "label", "add", "edge-1", "zone"},
			"Error: invalid label \"zone\": expected KEY=VALUE\nRun 'warren node label add --help' for usage.\n"},
		{"label add twice", []string{"node", "label", "add", "edge-1", "zone=a", "zone=b"},
			"Error: invalid label: \"zone\" is given twice\nRun 'warren node label add --help' for usage.\n"},
		{"label rm of an empty key", []string{"node", "label", "rm", "edge-1", ""},
			"Error: invalid label key: the KEY is empty\nRun 'warren node label rm --help' for usage.\n"},
		{"label rm without keys", []string{"node", "label", "rm", "edge-1"},
			"Error: \"warren node label rm\" needs a node NAME or ID and at least one label KEY\nRun 'warren node label rm --help' for usage.\n"},
		{"rm without a node", []string{"node", "rm", "--force"},
			"Error: \"warren node rm\" needs at least one node NAME or ID\nRun 'warren node rm --help' for usage.\n"},
		{"unknown label command", []string{"node", "label", "set", "edge-1"},
			"Error: unknown command \"set\" for \"warren node label\"\nRun 'warren node label --help' for usage.\n"},
	}
	checkRefusals(t, sock, tests)
}

func TestNodeCommands(t *testing.T) {
	m, sock := startManager(t)
	addNode(m, &apiv1.Node{
		Id: "w1aaaaaaaaaaaaaaaaaaaaaa", Name: "edge-1", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Worker: true,
		Status: apiv1.NodeStatus_NODE_STATUS_READY,
		Labels: map[string]string{"zone": "a"}, AgentLabels: map[string]string{"zone": "a"},
	})
	addNode(m, &apiv1.Node{Id: "w2bbbbbbbbbbbbbbbbbbbbbb", Name: "edge-2", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Worker: true, Status: apiv1.NodeStatus_NODE_STATUS_DOWN})
	addNode(m, &apiv1.Node{Id: "m1cccccccccccccccccccccc", Name: "mgr", Role: apiv1.NodeRole_NODE_ROLE_MANAGER, Status: apiv1.NodeStatus_NODE_STATUS_READY})
	node := func(id string) *apiv1.Node {
		n, ok := m.State.Node(id)
		if !ok {
			t.Fatalf("node %s is gone", id)
		}
		return n
	}
	const edge1 = "w1aaaaaaaaaaaaaaaaaaaaaa"

	r := warren(t, sock, "node", "update", "edge-1", "--availability", "drain").mustSucceed(t)
	if r.stdout != "edge-1\n" || node(edge1).GetAvailability() != apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN {
		t.Errorf("update printed %q; availability %v", r.stdout, node(edge1).GetAvailability())
	}
	r = warren(t, sock, "node", "update", "w1a", "--availability", "pause", "--label-add", "rack=r1", "-o", "json").mustSucceed(t)
	var printed []struct {
		Name         string            `json:"name"`
		Availability string            `json:"availability"`
		Labels       map[string]string `json:"labels"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &printed); err != nil || len(printed) != 1 || printed[0].Name != "edge-1" ||
		printed[0].Availability != "NODE_AVAILABILITY_PAUSE" || printed[0].Labels["rack"] != "r1" {
		t.Errorf("update -o json printed (%v):\n%s", err, r.stdout)
	}

	r = warren(t, sock, "node", "label", "add", "edge-1", "zone=b", "disk=ssd", "gpu=").mustSucceed(t)
	want := map[string]string{"zone": "b", "rack": "r1", "disk": "ssd", "gpu": ""}
	if r.stdout != "edge-1\n" || !maps.Equal(node(edge1).GetLabels(), want) {
		t.Errorf("label add printed %q; labels %v, want %v", r.stdout, node(edge1).GetLabels(), want)
	}
	r = warren(t, sock, "node", "label", "rm", "edge-1", "zone", "disk", "missing", "-o", "table").mustSucceed(t)
	want = map[string]string{"zone": "a", "rack": "r1", "gpu": ""}
	if !maps.Equal(node(edge1).GetLabels(), want) || !strings.Contains(r.stdout, "Availability:") || !strings.Contains(r.stdout, "gpu=") {
		t.Errorf("label rm: labels %v, want %v; printed:\n%s", node(edge1).GetLabels(), want, r.stdout)
	}
	r = warren(t, sock, "node", "label", "rm", "edge-1", "zone")
	if r.code != 1 || !strings.Contains(r.stderr, `label "zone" comes from the node's agent configuration`) {
		t.Errorf("removing a configured label: status %d, stderr %q", r.code, r.stderr)
	}
	r = warren(t, sock, "node", "label", "add", "edge-1", "bad key=x")
	if r.code != 1 || !strings.Contains(r.stderr, `label key "bad key" is invalid`) {
		t.Errorf("adding a bad label: status %d, stderr %q", r.code, r.stderr)
	}

	// rm: one failure does not stop the others.
	r = warren(t, sock, "node", "rm", "edge-1", "mgr", "edge-2", "nope")
	wantErr := "Error: node \"edge-1\" is ready: stop its agent first, or force the removal"
	if r.code != 1 || r.stdout != "edge-2\n" || !strings.HasPrefix(r.stderr, wantErr) ||
		!strings.Contains(r.stderr, "Error: node \"mgr\" is a manager: demote it first: warren node demote mgr") ||
		!strings.Contains(r.stderr, "Error: node \"nope\"") {
		t.Errorf("rm: status %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if _, ok := m.State.Node("w2bbbbbbbbbbbbbbbbbbbbbb"); ok {
		t.Error("edge-2 still there")
	}
	r = warren(t, sock, "node", "rm", "--force", "edge-1").mustSucceed(t)
	if _, ok := m.State.Node(edge1); ok || r.stdout != "edge-1\n" {
		t.Errorf("rm --force printed %q; node still there: %v", r.stdout, ok)
	}
}
