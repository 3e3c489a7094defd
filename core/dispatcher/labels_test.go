package dispatcher

import (
	"maps"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func TestMergeLabels(t *testing.T) {
	type m = map[string]string
	cases := []struct {
		name  string
		old   *apiv1.Node
		agent m
		want  m
	}{
		{"new node", nil, m{"zone": "a"}, m{"zone": "a"}},
		{"new node without labels", nil, nil, nil},
		{
			"agent labels follow the configuration",
			&apiv1.Node{Labels: m{"zone": "a", "disk": "ssd"}, AgentLabels: m{"zone": "a", "disk": "ssd"}},
			m{"zone": "b", "gpu": "yes"},
			m{"zone": "b", "gpu": "yes"},
		},
		{
			"operator labels survive",
			&apiv1.Node{Labels: m{"zone": "a", "rack": "r1"}, AgentLabels: m{"zone": "a"}},
			m{"zone": "a"},
			m{"zone": "a", "rack": "r1"},
		},
		{
			"an operator's value wins over the configuration's",
			&apiv1.Node{Labels: m{"zone": "x"}, AgentLabels: m{"zone": "a"}},
			m{"zone": "b"},
			m{"zone": "x"},
		},
		{
			"stored without agent labels: every stored label is the operator's",
			&apiv1.Node{Labels: m{"zone": "a"}},
			m{"zone": "b", "disk": "ssd"},
			m{"zone": "a", "disk": "ssd"},
		},
		{
			"everything removed",
			&apiv1.Node{Labels: m{"zone": "a"}, AgentLabels: m{"zone": "a"}},
			nil,
			nil,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before m
			if tc.old != nil {
				before = maps.Clone(tc.old.GetLabels())
			}
			got := mergeLabels(tc.old, tc.agent)
			if !maps.Equal(got, tc.want) || (tc.want == nil) != (got == nil) {
				t.Errorf("mergeLabels = %v, want %v", got, tc.want)
			}
			if tc.old != nil && !maps.Equal(before, tc.old.GetLabels()) {
				t.Error("mergeLabels changed the stored node")
			}
		})
	}
}
