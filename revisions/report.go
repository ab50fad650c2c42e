package revisions

import (
	"cmp"
	"slices"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// DataPlaneReport counts the injected pods of facts, decides for each
// whether it runs the revision the decision table gives it today (Resolve,
// the injector's own function), and groups the outdated ones by top owner.
// It also returns the number of pods per revision. A pod whose namespace is
// not among the facts' live namespaces is left out: it goes with its
// namespace and is nobody's upgrade to do.
func DataPlaneReport(spec *v1alpha1.MeshSpec, ownNamespace string, facts *Facts) (v1alpha1.DataPlaneStatus, map[string]int32) {
	var dp v1alpha1.DataPlaneStatus
	perRev := map[string]int32{}
	type key struct{ ns, kind, name string }
	workloads := map[key]*v1alpha1.WorkloadStatus{}
	for i := range facts.Pods {
		pod := &facts.Pods[i]
		have := pod.Revision()
		if have == "" {
			continue
		}
		nsLabels, live := facts.Namespaces[pod.Namespace]
		if !live {
			continue
		}
		dp.Pods++
		perRev[have]++
		// hostNetwork is irrelevant here: a pod that carries a sidecar was injected.
		want := Resolve(spec, ownNamespace, Subject{
			Namespace:       pod.Namespace,
			NamespaceLabels: nsLabels,
			Labels:          pod.Labels,
			Annotations:     pod.Annotations,
		}).RevisionName()
		if want == have {
			dp.UpToDate++
			continue
		}
		dp.Outdated++
		k := key{pod.Namespace, pod.Owner.Kind, pod.Owner.Name}
		w := workloads[k]
		if w == nil {
			w = &v1alpha1.WorkloadStatus{Kind: pod.Owner.Kind, Namespace: pod.Namespace, Name: pod.Owner.Name, Want: want}
			workloads[k] = w
		}
		w.Pods++
		if !slices.Contains(w.Revisions, have) {
			w.Revisions = append(w.Revisions, have)
			slices.Sort(w.Revisions)
		}
		w.Gateway = w.Gateway || IsGateway(pod.Labels, pod.Annotations)
	}
	for _, w := range workloads {
		dp.OutdatedWorkloads = append(dp.OutdatedWorkloads, *w)
	}
	slices.SortFunc(dp.OutdatedWorkloads, func(a, b v1alpha1.WorkloadStatus) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return dp, perRev
}
