package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// DataPlane is the data-plane part of the Mesh status: the bounded report
// and the per-revision counts.
type DataPlane struct {
	// Status is the report, its workload list bounded by
	// v1alpha1.MaxListedOutdatedWorkloads per revision.
	Status v1alpha1.DataPlaneStatus
	// PodsByRevision counts the pods per revision they run.
	PodsByRevision map[string]int32
	// OutdatedWorkloadsByRevision counts, per revision, the workloads with
	// outdated pods that run it.
	OutdatedWorkloadsByRevision map[string]int32
}

// ReportDataPlane computes the bounded data-plane report of facts with the
// core's DataPlaneReport.
func ReportDataPlane(spec *v1alpha1.MeshSpec, ownNamespace string, facts *revisions.Facts) DataPlane {
	dp, perRev := revisions.DataPlaneReport(spec, ownNamespace, facts)
	listed, byRev := revisions.BoundOutdated(dp.OutdatedWorkloads, v1alpha1.MaxListedOutdatedWorkloads)
	dp.OutdatedWorkloadCount = int32(len(dp.OutdatedWorkloads))
	dp.OutdatedWorkloads = listed
	return DataPlane{Status: dp, PodsByRevision: perRev, OutdatedWorkloadsByRevision: byRev}
}

// mergeDataPlanes adds up per-namespace reports, visited in namespace order
// so that the bounded list stays the first workloads of each revision.
func mergeDataPlanes(byNamespace map[string]DataPlane) DataPlane {
	out := DataPlane{PodsByRevision: map[string]int32{}, OutdatedWorkloadsByRevision: map[string]int32{}}
	var all []v1alpha1.WorkloadStatus
	for _, ns := range slices.Sorted(maps.Keys(byNamespace)) {
		d := byNamespace[ns]
		out.Status.Pods += d.Status.Pods
		out.Status.UpToDate += d.Status.UpToDate
		out.Status.Outdated += d.Status.Outdated
		out.Status.OutdatedWorkloadCount += d.Status.OutdatedWorkloadCount
		for rev, n := range d.PodsByRevision {
			out.PodsByRevision[rev] += n
		}
		for rev, n := range d.OutdatedWorkloadsByRevision {
			out.OutdatedWorkloadsByRevision[rev] += n
		}
		// Each namespace keeps its own first workloads per revision, which
		// include the first ones of the whole cluster.
		all = append(all, d.Status.OutdatedWorkloads...)
	}
	out.Status.OutdatedWorkloads, _ = revisions.BoundOutdated(all, v1alpha1.MaxListedOutdatedWorkloads)
	return out
}

// dataPlaneState keeps the data-plane report per namespace between
// reconciles, so that a reconcile reads the pods of the namespaces that
// changed (marked by the watch handlers) rather than every injected pod.
// A new Mesh spec (UID and generation) makes every namespace stale.
type dataPlaneState struct {
	mu sync.Mutex
	// dirty are the namespaces whose pods or labels changed since their
	// report was computed.
	dirty map[string]struct{}
	// specKey identifies the spec the reports were computed for.
	specKey string
	// reports are the current per-namespace reports (namespaces without
	// injected pods have none).
	reports map[string]DataPlane
}

func newDataPlaneState() *dataPlaneState {
	return &dataPlaneState{dirty: map[string]struct{}{}, reports: map[string]DataPlane{}}
}

// markDirty records that namespace's pods or labels changed.
func (s *dataPlaneState) markDirty(namespace string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty[namespace] = struct{}{}
}

// take returns the namespaces to recompute for the spec specKey and clears
// the marks: the marked ones and those with a report that are no longer
// live, or, when the spec changed, every live namespace and every namespace
// with a report.
func (s *dataPlaneState) take(specKey string, live map[string]map[string]string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	todo := s.dirty
	s.dirty = map[string]struct{}{}
	// A namespace that stopped being live (terminating) without a label
	// change leaves the report now, as DataPlaneReport leaves it out.
	for ns := range s.reports {
		if _, ok := live[ns]; !ok {
			todo[ns] = struct{}{}
		}
	}
	if specKey != s.specKey {
		s.specKey = specKey
		for ns := range live {
			todo[ns] = struct{}{}
		}
		for ns := range s.reports {
			todo[ns] = struct{}{}
		}
	}
	return slices.Sorted(maps.Keys(todo))
}

// refresh recomputes the reports of the namespaces take returns, reading
// their injected pods from r (the cache, indexed by namespace), and returns
// the merged report. On error the namespaces not done stay marked.
func (s *dataPlaneState) refresh(ctx context.Context, r client.Reader, mesh *v1alpha1.Mesh, ownNamespace string, live map[string]map[string]string) (DataPlane, int, error) {
	todo := s.take(fmt.Sprintf("%s/%d", mesh.UID, mesh.Generation), live)
	for i, ns := range todo {
		labels, ok := live[ns]
		if !ok {
			s.store(ns, nil)
			continue
		}
		pods, err := readmodel.InjectedPods(ctx, r, true, client.InNamespace(ns))
		if err != nil {
			for _, rest := range todo[i:] {
				s.markDirty(rest)
			}
			return DataPlane{}, i, err
		}
		if len(pods) == 0 {
			s.store(ns, nil)
			continue
		}
		facts := revisions.Facts{Namespaces: map[string]map[string]string{ns: labels}, Pods: pods}
		d := ReportDataPlane(&mesh.Spec, ownNamespace, &facts)
		s.store(ns, &d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return mergeDataPlanes(s.reports), len(todo), nil
}

func (s *dataPlaneState) store(namespace string, d *DataPlane) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d == nil {
		delete(s.reports, namespace)
		return
	}
	s.reports[namespace] = *d
}
