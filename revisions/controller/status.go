package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
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
	// ConditionTemplatesReady is False while the injection templates of a
	// published revision do not render (a templates ConfigMap deleted or
	// broken): pods are then injected with the last good render or the
	// built-in templates.
	ConditionTemplatesReady = "TemplatesReady"
)

// DefaultHistoryLimit bounds status.history when Options.HistoryLimit is 0.
const DefaultHistoryLimit = 50

// StatusInput is everything ComputeStatus needs besides the facts.
type StatusInput struct {
	// OwnNamespace is meshrev's namespace (never injected).
	OwnNamespace string
	// HistoryLimit bounds the history (DefaultHistoryLimit when 0).
	HistoryLimit int
	// Now stamps new history entries and condition transitions.
	Now metav1.Time
}

// ComputeStatus derives the Mesh status from its spec, the status the
// controller last wrote, and the facts read from the cluster. It returns the new status and the
// lifecycle steps it recorded in history (for events).
func ComputeStatus(mesh *v1alpha1.Mesh, in StatusInput, facts *revisions.Facts) (v1alpha1.MeshStatus, []v1alpha1.HistoryEntry) {
	dp := ReportDataPlane(&mesh.Spec, in.OwnNamespace, facts)
	return ComputeStatusWith(mesh, in, facts, &dp)
}

// ComputeStatusWith is ComputeStatus with the data-plane report given (the
// controller keeps it per namespace and merges it; facts.Pods is not read).
func ComputeStatusWith(mesh *v1alpha1.Mesh, in StatusInput, facts *revisions.Facts, dataPlane *DataPlane) (v1alpha1.MeshStatus, []v1alpha1.HistoryEntry) {
	spec := &mesh.Spec
	steps := DetectSteps(spec, &mesh.Status, in.Now)

	dp := dataPlane.Status
	nsByRev := namespacesByRevision(spec, in.OwnNamespace, facts.Namespaces)

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
			ControlPlaneReady: facts.ControlPlaneReady[r.Name],
			Namespaces:        firstN(nsByRev[r.Name], v1alpha1.MaxListedNamespaces),
			NamespaceCount:    int32(len(nsByRev[r.Name])),
			Pods:              dataPlane.PodsByRevision[r.Name],
			OutdatedWorkloads: dataPlane.OutdatedWorkloadsByRevision[r.Name],
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
	for _, c := range conditions(spec, st, PendingRelabel(spec, facts.Namespaces)) {
		c.ObservedGeneration = mesh.Generation
		c.LastTransitionTime = in.Now
		meta.SetStatusCondition(&st.Conditions, c)
	}
	return st, steps
}

// CountsOnly says whether two statuses differ at most in their data-plane
// counts (pods, up to date, outdated, the outdated workloads listed, each
// revision's pods and outdated workloads, and the Progressing message that
// repeats them): such a change can wait for
// the next coalesced write. Anything else (phase, generation, revisions,
// tags, readiness, namespaces, history, conditions) cannot.
func CountsOnly(was, now *v1alpha1.MeshStatus) bool {
	strip := func(st *v1alpha1.MeshStatus) v1alpha1.MeshStatus {
		c := *st
		c.DataPlane = v1alpha1.DataPlaneStatus{}
		c.Revisions = slices.Clone(st.Revisions)
		for i := range c.Revisions {
			c.Revisions[i].Pods, c.Revisions[i].OutdatedWorkloads = 0, 0
		}
		// Progressing's message carries the outdated counts; its status and
		// reason (the phase) still count.
		c.Conditions = slices.Clone(st.Conditions)
		for i := range c.Conditions {
			if c.Conditions[i].Type == ConditionProgressing {
				c.Conditions[i].Message = ""
			}
		}
		return c
	}
	a, b := strip(was), strip(now)
	return equality.Semantic.DeepEqual(&a, &b)
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

// firstN is the first n of list (sorted), a copy: the status stays bounded.
func firstN(list []string, n int) []string {
	if len(list) > n {
		list = list[:n]
	}
	return slices.Clone(list)
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
			names[i] = fmt.Sprintf("%s (deployment %s)", n, revisions.ControlPlaneName(n))
		}
		ready.Message = fmt.Sprintf("the control plane of %s is not available yet", strings.Join(names, ", "))
	case len(pending) > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, "Relabelling"
		names := strings.Join(firstN(pending, v1alpha1.MaxListedNamespaces), ", ")
		if len(pending) > v1alpha1.MaxListedNamespaces {
			names += ", …"
		}
		ready.Message = fmt.Sprintf("promotion: %d namespaces still labelled %s=%s are being relabelled to %s (%s)", len(pending), revisions.LabelRev, revisions.TagCanary, revisions.TagStable, names)
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
		progressing.Message = fmt.Sprintf("%d pods in %d workloads still run an outdated sidecar; %s", st.DataPlane.Outdated, st.DataPlane.OutdatedWorkloadCount, next.Text)
	}
	return []metav1.Condition{ready, progressing}
}
