package controller

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// clusterFacts builds namespaces ns-0..ns-(n-1), each with deployments
// Deployments of replicas pods; pods of even deployments run old, the others
// new. Namespace ns-0 is pinned to old with istio.io/rev.
func clusterFacts(namespaces, deployments, replicas int, old, new string) revisions.Facts {
	f := revisions.Facts{Namespaces: map[string]map[string]string{}}
	for n := range namespaces {
		ns := fmt.Sprintf("ns-%d", n)
		f.Namespaces[ns] = map[string]string{revisions.LabelInjection: revisions.InjectionEnabled}
		if n == 0 {
			f.Namespaces[ns] = map[string]string{revisions.LabelRev: old}
		}
		for d := range deployments {
			rev := new
			if d%2 == 0 {
				rev = old
			}
			for p := range replicas {
				f.Pods = append(f.Pods, revisions.Pod{Namespace: ns, Name: fmt.Sprintf("app-%02d-%d", d, p),
					Labels: map[string]string{revisions.LabelRevision: rev}, Annotations: statusAnnotation(rev), Containers: proxyContainers, Owner: revisions.Owner{Kind: "Deployment", Name: fmt.Sprintf("app-%02d", d)}})
			}
		}
	}
	return f
}

func TestMergedPerNamespaceReportsEqualTheWholeReport(t *testing.T) {
	promoted := meshSpec("1-23-6", "", "1-22-6", "1-23-6")
	tests := map[string]struct {
		namespaces, deployments, replicas int
		wantListed                        int
	}{
		"a small cluster lists every outdated workload": {namespaces: 2, deployments: 4, replicas: 3, wantListed: 4},
		"more outdated workloads than the bound: the first ones of each revision": {namespaces: 12, deployments: 5, replicas: 10,
			wantListed: 2 + v1alpha1.MaxListedOutdatedWorkloads}, // ns-0's two on 1-23-6, then the first ten on 1-22-6
		"one namespace, many workloads": {namespaces: 1, deployments: 40, replicas: 1, wantListed: v1alpha1.MaxListedOutdatedWorkloads},
		"no pods":                       {namespaces: 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			facts := clusterFacts(tc.namespaces, tc.deployments, tc.replicas, "1-22-6", "1-23-6")
			whole := ReportDataPlane(&promoted, "meshrev-system", &facts)

			byNS := map[string]DataPlane{}
			for ns, labels := range facts.Namespaces {
				part := revisions.Facts{Namespaces: map[string]map[string]string{ns: labels}}
				for _, p := range facts.Pods {
					if p.Namespace == ns {
						part.Pods = append(part.Pods, p)
					}
				}
				byNS[ns] = ReportDataPlane(&promoted, "meshrev-system", &part)
			}
			merged := mergeDataPlanes(byNS)
			assert.Equal(t, whole.Status, merged.Status)
			assert.Equal(t, whole.PodsByRevision, merged.PodsByRevision)
			assert.Equal(t, whole.OutdatedWorkloadsByRevision, merged.OutdatedWorkloadsByRevision)
			assert.Len(t, merged.Status.OutdatedWorkloads, tc.wantListed)
			assert.LessOrEqual(t, len(merged.Status.OutdatedWorkloads), v1alpha1.MaxListedOutdatedWorkloads*len(promoted.Revisions))
		})
	}
}

func TestDataPlaneStateTakesWhatChanged(t *testing.T) {
	live := map[string]map[string]string{"a": {}, "b": {}, "c": {}}
	tests := map[string]struct {
		firstKey, secondKey string
		reports             []string
		marked              []string
		want                []string
	}{
		"a new spec recomputes every live namespace and every namespace with a report": {
			firstKey: "uid/1", secondKey: "uid/2", reports: []string{"gone"}, want: []string{"a", "b", "c", "gone"},
		},
		"the same spec recomputes only the marked namespaces": {
			firstKey: "uid/1", secondKey: "uid/1", marked: []string{"b", "zz"}, want: []string{"b", "zz"},
		},
		"a namespace with a report that is no longer live is recomputed (and dropped)": {
			firstKey: "uid/1", secondKey: "uid/1", reports: []string{"a", "terminating"}, want: []string{"terminating"},
		},
		"nothing marked and the same spec: nothing to read": {
			firstKey: "uid/1", secondKey: "uid/1",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newDataPlaneState()
			s.take(tc.firstKey, live)
			for _, ns := range tc.reports {
				s.store(ns, &DataPlane{})
			}
			for _, ns := range tc.marked {
				s.markDirty(ns)
			}
			got := s.take(tc.secondKey, live)
			if len(tc.want) == 0 {
				require.Empty(t, got)
				return
			}
			assert.Equal(t, tc.want, got)
			for _, ns := range got {
				if _, ok := live[ns]; !ok {
					s.store(ns, nil) // what refresh does with a namespace that is gone
				}
			}
			assert.Empty(t, s.take(tc.secondKey, live), "taking clears the marks")
		})
	}
}
