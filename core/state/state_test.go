package state

import (
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func TestLookups(t *testing.T) {
	s := New()
	s.PutTasks([]*apiv1.Task{{Id: "abcd1111", ServiceId: "s"}, {Id: "abcd2222", ServiceId: "s"}, {Id: "ffff0000", ServiceId: "s"}})
	s.PutService(&apiv1.Service{Id: "svc12345", Spec: &apiv1.ServiceSpec{Name: "web"}})
	tests := []struct {
		name, query string
		want        Lookup
		id          string
	}{
		{"task by id", "abcd2222", Found, "abcd2222"},
		{"task by unique prefix", "ffff", Found, "ffff0000"},
		{"task prefix matching two", "abcd", Ambiguous, ""},
		{"missing task", "9999", NotFound, ""},
		{"empty", "", NotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res := s.LookupTask(tt.query)
			if res != tt.want || (tt.id != "" && got.GetId() != tt.id) {
				t.Fatalf("LookupTask(%q) = %v, %v; want %s, %v", tt.query, got.GetId(), res, tt.id, tt.want)
			}
		})
	}
	for _, q := range []string{"web", "svc12345", "svc1"} {
		if got, res := s.LookupService(q); res != Found || got.GetId() != "svc12345" {
			t.Errorf("LookupService(%q) = %v, %v", q, got.GetId(), res)
		}
	}
	// Renaming through PutService moves the name index.
	s.PutService(&apiv1.Service{Id: "svc12345", Spec: &apiv1.ServiceSpec{Name: "api"}})
	if _, ok := s.ServiceByName("web"); ok {
		t.Error("old name still indexed after a rename")
	}
	// The task indexes follow node moves and deletions.
	s.PutTasks([]*apiv1.Task{{Id: "abcd1111", ServiceId: "s", NodeId: "n1"}})
	if got := s.Tasks(TaskFilter{NodeID: "n1"}); len(got) != 1 {
		t.Fatalf("tasks on n1 = %d, want 1", len(got))
	}
	s.DeleteTasks([]string{"abcd1111"})
	if got := s.Tasks(TaskFilter{NodeID: "n1"}); len(got) != 0 {
		t.Fatalf("deleted task still indexed on n1")
	}
	if got := s.Tasks(TaskFilter{ServiceID: "s"}); len(got) != 2 {
		t.Fatalf("tasks of s = %d, want 2", len(got))
	}
}
