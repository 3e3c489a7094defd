package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/credentials/insecure"
)

func TestLeaderHintRoundTrip(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		leader string
	}{
		{"names the leader", notLeaderError("10.0.0.2:7420"), "10.0.0.2:7420"},
		{"no leader known", notLeaderError(""), ""},
		{"another error", errors.New("boom"), ""},
	}
	for _, c := range cases {
		if got := LeaderHint(c.err); got != c.leader {
			t.Errorf("%s: LeaderHint = %q, want %q", c.name, got, c.leader)
		}
	}
}

// The manager set goes to a named leader first, then round-robins over the
// known addresses, and remembers what the cluster told it on disk.
func TestManagerSet(t *testing.T) {
	dir := t.TempDir()
	m := newManagerSet(dir, insecure.NewCredentials(), []string{"a:1", "b:1"}, hclog.NewNullLogger())
	defer m.close()
	var got []string
	for range 3 {
		a, _ := m.pick()
		got = append(got, a)
	}
	if want := []string{"a:1", "b:1", "a:1"}; !slices.Equal(got, want) {
		t.Fatalf("picks %v, want %v", got, want)
	}
	m.noteError(notLeaderError("c:1"))
	if a, _ := m.pick(); a != "c:1" {
		t.Fatalf("after a leader hint, pick = %q, want c:1", a)
	}
	m.update([]string{"c:1", "d:1"})
	if saved := loadManagers(dir); !slices.Equal(saved, []string{"c:1", "d:1"}) {
		t.Fatalf("saved managers %v", saved)
	}
	if _, err := os.Stat(filepath.Join(dir, managersFile)); err != nil {
		t.Fatal(err)
	}
	empty := newManagerSet(t.TempDir(), insecure.NewCredentials(), nil, hclog.NewNullLogger())
	if _, err := empty.dial(t.Context()); err == nil {
		t.Fatal("dial with no address known succeeded")
	}
}
