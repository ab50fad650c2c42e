package revisions

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func TestBoundOutdated(t *testing.T) {
	w := func(name string, revs ...string) v1alpha1.WorkloadStatus {
		return v1alpha1.WorkloadStatus{Kind: "Deployment", Namespace: "ns", Name: name, Revisions: revs, Want: "1-23-6", Pods: 1}
	}
	many := func(n int, rev string) []v1alpha1.WorkloadStatus {
		var out []v1alpha1.WorkloadStatus
		for i := range n {
			out = append(out, w(fmt.Sprintf("%s-%02d", rev, i), rev))
		}
		return out
	}
	tests := map[string]struct {
		in         []v1alpha1.WorkloadStatus
		limit      int
		wantNames  []string
		wantPerRev map[string]int32
	}{
		"fewer workloads than the limit are all listed": {
			in: many(3, "a"), limit: 10,
			wantNames:  []string{"a-00", "a-01", "a-02"},
			wantPerRev: map[string]int32{"a": 3},
		},
		"more than the limit keeps the first ones and counts all": {
			in: many(25, "a"), limit: 2,
			wantNames:  []string{"a-00", "a-01"},
			wantPerRev: map[string]int32{"a": 25},
		},
		"the limit applies per revision, so a later revision still shows its first workloads": {
			in: append(many(5, "a"), many(5, "b")...), limit: 2,
			wantNames:  []string{"a-00", "a-01", "b-00", "b-01"},
			wantPerRev: map[string]int32{"a": 5, "b": 5},
		},
		"a workload running two revisions is kept while either is under the limit and counts for both": {
			in: []v1alpha1.WorkloadStatus{w("x", "a"), w("y", "a", "b"), w("z", "a")}, limit: 1,
			wantNames:  []string{"x", "y"},
			wantPerRev: map[string]int32{"a": 3, "b": 1},
		},
		"nothing outdated lists nothing": {
			limit: 10, wantPerRev: map[string]int32{},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			listed, perRev := BoundOutdated(tc.in, tc.limit)
			var names []string
			for _, l := range listed {
				names = append(names, l.Name)
			}
			assert.Equal(t, tc.wantNames, names)
			assert.Equal(t, tc.wantPerRev, perRev)
		})
	}
}
