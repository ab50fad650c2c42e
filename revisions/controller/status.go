package controller

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Condition types of the Mesh status.
const (
	// ConditionReady is True when every published revision's control plane is
	// available and no promotion relabel is pending.
	ConditionReady = "Ready"
	// ConditionProgressing is True while an upgrade is under way (a canary is
	// deployed, the data plane is being upgraded, or the old revision waits
	// to be unpublished).
	ConditionProgressing = "Progressing"
)

// DefaultHistoryLimit bounds status.history when Options.HistoryLimit is 0.
const DefaultHistoryLimit = 50

// Snapshot is what one reconcile read from the cluster: the inputs of the
// status, gathered from the manager's cache.
type Snapshot struct {
	// Namespaces maps each namespace name to its labels.
	Namespaces map[string]map[string]string
	// Pods are the pods that carry the meshrev.io/revision label (metadata only).
	Pods []metav1.PartialObjectMetadata
	// ReplicaSetOwners maps "namespace/name" of a ReplicaSet to its
	// controlling owner, so that a pod's top owner is its Deployment.
	ReplicaSetOwners map[string]*metav1.OwnerReference
	// ControlPlaneReady says, per published revision, whether its control
	// plane is available (true for a revision without controlPlane).
	ControlPlaneReady map[string]bool
}

// StatusInput is everything ComputeStatus needs besides the snapshot.
type StatusInput struct {
	// OwnNamespace is meshrev's namespace (never injected).
	OwnNamespace string
	// HistoryLimit bounds the history (DefaultHistoryLimit when 0).
	HistoryLimit int
	// Now stamps new history entries and condition transitions.
	Now metav1.Time
}

// ComputeStatus derives the Mesh status from its spec, the status the
// controller last wrote, and the snapshot. It returns the new status and the
// lifecycle steps it recorded in history (for events).
func ComputeStatus(mesh *v1alpha1.Mesh, in StatusInput, snap Snapshot) (v1alpha1.MeshStatus, []v1alpha1.HistoryEntry) {
	spec := &mesh.Spec
	steps := DetectSteps(spec, &mesh.Status, in.Now)

	dp, podsByRev := DataPlaneReport(spec, in.OwnNamespace, snap)
	nsByRev := namespacesByRevision(spec, in.OwnNamespace, snap.Namespaces)

	st := v1alpha1.MeshStatus{
		ObservedGeneration: mesh.Generation,
		Phase:              revisions.Phase(spec, dp.Outdated),
		Previous:           revisions.Previous(spec),
		DataPlane:          dp,
	}
	for _, r := range spec.Revisions {
		st.Revisions = append(st.Revisions, v1alpha1.RevisionStatus{
			Name:              r.Name,
			Version:           r.Version,
			Tags:              revisions.Tags(spec, r.Name),
			ControlPlaneReady: snap.ControlPlaneReady[r.Name],
			Namespaces:        nsByRev[r.Name],
			Pods:              podsByRev[r.Name],
		})
	}

	limit := in.HistoryLimit
	if limit <= 0 {
		limit = DefaultHistoryLimit
	}
	st.History = append(slices.Clone(mesh.Status.History), steps...)
	if len(st.History) > limit {
		st.History = slices.Clone(st.History[len(st.History)-limit:])
	}

	st.Conditions = slices.Clone(mesh.Status.Conditions)
	for _, c := range conditions(spec, st, PendingRelabel(spec, snap.Namespaces)) {
		c.ObservedGeneration = mesh.Generation
		c.LastTransitionTime = in.Now
		meta.SetStatusCondition(&st.Conditions, c)
	}
	return st, steps
}

// DetectSteps compares the spec with what the status last recorded (the
// revisions and their tags) and returns the lifecycle steps taken since, in
// the order they must have happened. Because the controller writes the
// recorded revisions together with the history entries, each step is
// recorded exactly once, across restarts too.
func DetectSteps(spec *v1alpha1.MeshSpec, st *v1alpha1.MeshStatus, now metav1.Time) []v1alpha1.HistoryEntry {
	entry := func(a revisions.Action, from, to string) v1alpha1.HistoryEntry {
		return v1alpha1.HistoryEntry{Time: now, Action: string(a), From: from, To: to}
	}
	if len(st.Revisions) == 0 && len(st.History) == 0 {
		steps := []v1alpha1.HistoryEntry{entry(revisions.ActionInstall, "", spec.Stable)}
		if spec.Canary != "" {
			steps = append(steps, entry(revisions.ActionDeployCanary, spec.Stable, spec.Canary))
		}
		return steps
	}
	var wasStable, wasCanary string
	was := map[string]bool{}
	for _, r := range st.Revisions {
		was[r.Name] = true
		if slices.Contains(r.Tags, revisions.TagStable) {
			wasStable = r.Name
		}
		if slices.Contains(r.Tags, revisions.TagCanary) {
			wasCanary = r.Name
		}
	}
	is := map[string]bool{}
	for _, r := range spec.Revisions {
		is[r.Name] = true
	}

	var steps []v1alpha1.HistoryEntry
	promoted := wasCanary != "" && spec.Stable == wasCanary && wasStable != spec.Stable
	if promoted {
		steps = append(steps, entry(revisions.ActionPromote, wasStable, wasCanary))
	}
	for _, name := range slices.Sorted(maps.Keys(was)) {
		if is[name] {
			continue
		}
		if name == wasCanary && !promoted {
			steps = append(steps, entry(revisions.ActionRevoke, name, spec.Stable))
		} else {
			steps = append(steps, entry(revisions.ActionUnpublish, name, spec.Stable))
		}
	}
	if spec.Canary != "" && spec.Canary != wasCanary {
		steps = append(steps, entry(revisions.ActionDeployCanary, spec.Stable, spec.Canary))
	}
	return steps
}

// PendingRelabel lists the namespaces still labelled istio.io/rev=canary
// after a promotion (no canary published, the old stable still published):
// the controller rewrites them to stable. Keeping this an invariant (rather
// than a one-shot action) is what makes the promotion resumable. Outside
// that window a namespace labelled canary ahead of time is left alone; it
// resolves to stable, with a warning, until a canary is deployed.
func PendingRelabel(spec *v1alpha1.MeshSpec, namespaces map[string]map[string]string) []string {
	if spec.Canary != "" || revisions.Previous(spec) == "" {
		return nil
	}
	var out []string
	for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
		if namespaces[ns][revisions.LabelRev] == revisions.TagCanary {
			out = append(out, ns)
		}
	}
	return out
}

// namespacesByRevision lists, per revision, the namespaces whose labels
// resolve a plain new pod to it.
func namespacesByRevision(spec *v1alpha1.MeshSpec, ownNamespace string, namespaces map[string]map[string]string) map[string][]string {
	out := map[string][]string{}
	for _, ns := range slices.Sorted(maps.Keys(namespaces)) {
		d := revisions.Resolve(spec, ownNamespace, revisions.Subject{Namespace: ns, NamespaceLabels: namespaces[ns]})
		if d.Inject {
			out[d.RevisionName()] = append(out[d.RevisionName()], ns)
		}
	}
	return out
}

// Owner is a pod's top owner: the workload an upgrade restarts.
type Owner struct {
	// Kind is Deployment, StatefulSet, DaemonSet, another controller kind, or Pod for a bare pod.
	Kind string
	// Name of the owner.
	Name string
}

// TopOwner follows a pod's controller reference to the workload that owns
// it: ReplicaSet → its Deployment (through replicaSetOwners), StatefulSet,
// DaemonSet, any other controller, or the pod itself when it has none.
func TopOwner(pod *metav1.PartialObjectMetadata, replicaSetOwners map[string]*metav1.OwnerReference) Owner {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return Owner{Kind: "Pod", Name: pod.Name}
	}
	if ref.Kind == "ReplicaSet" && strings.HasPrefix(ref.APIVersion, "apps/") {
		if up := replicaSetOwners[pod.Namespace+"/"+ref.Name]; up != nil {
			return Owner{Kind: up.Kind, Name: up.Name}
		}
	}
	return Owner{Kind: ref.Kind, Name: ref.Name}
}

// IsGateway reports whether a pod is a gateway, by the injector's own rule
// (revisions.IsGateway).
func IsGateway(labels, annotations map[string]string) bool {
	return revisions.IsGateway(labels, annotations)
}

// DataPlaneReport counts the injected pods, decides for each whether it runs
// the revision the decision table gives it today (revisions.Resolve, the
// webhook's own function), and groups the outdated ones by top owner. It
// also returns the number of pods per revision.
func DataPlaneReport(spec *v1alpha1.MeshSpec, ownNamespace string, snap Snapshot) (v1alpha1.DataPlaneStatus, map[string]int32) {
	var dp v1alpha1.DataPlaneStatus
	perRev := map[string]int32{}
	type key struct{ ns, kind, name string }
	workloads := map[key]*v1alpha1.WorkloadStatus{}
	for i := range snap.Pods {
		pod := &snap.Pods[i]
		have := pod.Labels[revisions.LabelRevision]
		if have == "" {
			continue
		}
		nsLabels, live := snap.Namespaces[pod.Namespace]
		if !live {
			// The namespace is being deleted (or is not in the cache yet):
			// its pods go with it and are nobody's upgrade to do.
			continue
		}
		dp.Pods++
		perRev[have]++
		// hostNetwork is irrelevant here: a pod that carries a sidecar was injected.
		want := revisions.Resolve(spec, ownNamespace, revisions.Subject{
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
		o := TopOwner(pod, snap.ReplicaSetOwners)
		k := key{pod.Namespace, o.Kind, o.Name}
		w := workloads[k]
		if w == nil {
			w = &v1alpha1.WorkloadStatus{Kind: o.Kind, Namespace: pod.Namespace, Name: o.Name, Want: want}
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

// conditions computes Ready and Progressing (without times and generation).
func conditions(spec *v1alpha1.MeshSpec, st v1alpha1.MeshStatus, pending []string) []metav1.Condition {
	var notReady []string
	for _, r := range st.Revisions {
		if !r.ControlPlaneReady {
			notReady = append(notReady, r.Name)
		}
	}
	ready := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "ControlPlanesReady",
		Message: fmt.Sprintf("the control planes of %s are available", strings.Join(revisions.PublishedNames(spec), ", "))}
	switch {
	case len(notReady) > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, "ControlPlaneNotReady"
		names := make([]string, len(notReady))
		for i, n := range notReady {
			names[i] = fmt.Sprintf("%s (deployment %s)", n, ControlPlaneName(n))
		}
		ready.Message = fmt.Sprintf("the control plane of %s is not available yet", strings.Join(names, ", "))
	case len(pending) > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, "Relabelling"
		ready.Message = fmt.Sprintf("promotion: %d namespaces still labelled %s=%s are being relabelled to %s (%s)", len(pending), revisions.LabelRev, revisions.TagCanary, revisions.TagStable, strings.Join(pending, ", "))
	}

	next := revisions.Next(spec, st.Phase)
	progressing := metav1.Condition{Type: ConditionProgressing, Status: metav1.ConditionTrue, Reason: string(st.Phase), Message: next.Text}
	switch {
	case len(pending) > 0:
		progressing.Reason = "Relabelling"
		progressing.Message = ready.Message
	case st.Phase == v1alpha1.PhaseStable:
		progressing.Status = metav1.ConditionFalse
	case st.Phase == v1alpha1.PhaseDataPlaneUpgrading:
		progressing.Message = fmt.Sprintf("%d pods in %d workloads still run an outdated sidecar; %s", st.DataPlane.Outdated, len(st.DataPlane.OutdatedWorkloads), next.Text)
	}
	return []metav1.Condition{ready, progressing}
}
