package revisions

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Action is a lifecycle step: one update of the Mesh.
type Action string

// The lifecycle steps of docs/design.md ("The lifecycle").
const (
	// ActionNone: the spec did not change.
	ActionNone Action = ""
	// ActionInstall: the Mesh is created.
	ActionInstall Action = "Install"
	// ActionDeployCanary: a revision is added and becomes the canary.
	ActionDeployCanary Action = "DeployCanary"
	// ActionPromote: the canary becomes stable.
	ActionPromote Action = "Promote"
	// ActionRevoke: the canary and its revision are removed.
	ActionRevoke Action = "Revoke"
	// ActionUnpublish: a revision that is neither stable nor canary is removed.
	ActionUnpublish Action = "Unpublish"
	// ActionEdit: settings that may change at any time (control plane,
	// unknown-revision policy) changed.
	ActionEdit Action = "Edit"
)

// Transition is an allowed lifecycle step.
type Transition struct {
	// Action is the step.
	Action Action
	// From is the revision the step moves away from (the old stable on
	// promote, the removed revision on revoke and unpublish).
	From string
	// To is the revision the step moves to (the new canary, the new stable).
	To string
	// Warnings are admission warnings for the person taking the step.
	Warnings []string
}

// Forced reports whether the Mesh carries meshrev.io/force: "true".
func Forced(m *v1alpha1.Mesh) bool { return m != nil && m.Annotations[AnnotationForce] == "true" }

// forcedStep reports whether an update forces its step: the annotation must
// be added by the same update, so that one left behind (a client that died
// before removing it) never silently forces a later step.
func forcedStep(old, updated *v1alpha1.Mesh) bool { return Forced(updated) && !Forced(old) }

// maxNamed is how many offending objects a message names before it counts the rest.
const maxNamed = 5

// ValidateMesh checks a Mesh on its own: names, versions, tags and policy.
func ValidateMesh(m *v1alpha1.Mesh) field.ErrorList {
	var errs field.ErrorList
	if m.Name != v1alpha1.MeshName {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), m.Name, fmt.Sprintf("a cluster has one Mesh and it is named %q", v1alpha1.MeshName)))
	}
	spec := field.NewPath("spec")
	revs := spec.Child("revisions")
	if len(m.Spec.Revisions) == 0 {
		errs = append(errs, field.Required(revs, "publish at least the stable revision"))
	}
	seen := map[string]bool{}
	for i, r := range m.Spec.Revisions {
		p := revs.Index(i)
		for _, msg := range ValidateRevisionName(r.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), r.Name, msg))
		}
		if seen[r.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), r.Name))
		}
		seen[r.Name] = true
		if _, err := ParseVersion(r.Version); err != nil {
			errs = append(errs, field.Invalid(p.Child("version"), r.Version, err.Error()))
		}
		if cp := r.ControlPlane; cp != nil {
			errs = append(errs, validateControlPlane(p.Child("controlPlane"), r)...)
		}
	}
	switch {
	case m.Spec.Stable == "":
		errs = append(errs, field.Required(spec.Child("stable"), "name the stable revision"))
	case !seen[m.Spec.Stable]:
		errs = append(errs, field.Invalid(spec.Child("stable"), m.Spec.Stable, "names no published revision (published: "+strings.Join(PublishedNames(&m.Spec), ", ")+")"))
	}
	if c := m.Spec.Canary; c != "" {
		switch {
		case !seen[c]:
			errs = append(errs, field.Invalid(spec.Child("canary"), c, "names no published revision (published: "+strings.Join(PublishedNames(&m.Spec), ", ")+")"))
		case c == m.Spec.Stable:
			errs = append(errs, field.Invalid(spec.Child("canary"), c, "the canary must be another revision than stable"))
		}
	}
	switch m.Spec.UnknownRevisionPolicy {
	case "", v1alpha1.UnknownRevisionAllow, v1alpha1.UnknownRevisionDeny:
	default:
		errs = append(errs, field.NotSupported(spec.Child("unknownRevisionPolicy"), m.Spec.UnknownRevisionPolicy, []string{string(v1alpha1.UnknownRevisionAllow), string(v1alpha1.UnknownRevisionDeny)}))
	}
	switch m.Spec.ControlPlaneDeletionPolicy {
	case "", v1alpha1.ControlPlaneUninstall, v1alpha1.ControlPlaneOrphan:
	default:
		errs = append(errs, field.NotSupported(spec.Child("controlPlaneDeletionPolicy"), m.Spec.ControlPlaneDeletionPolicy, []string{string(v1alpha1.ControlPlaneUninstall), string(v1alpha1.ControlPlaneOrphan)}))
	}
	return errs
}

// ValidateTransition decides whether the update from old to updated (old nil
// on create) is one allowed lifecycle step, applying every row of docs/design.md's
// lifecycle table against the facts. It is the one implementation of those
// rules: the validating webhook enforces it, the CLI only proposes updates.
func ValidateTransition(old, updated *v1alpha1.Mesh, facts Facts) (Transition, field.ErrorList) {
	if errs := ValidateMesh(updated); len(errs) > 0 {
		return Transition{}, errs
	}
	spec := field.NewPath("spec")
	if old == nil {
		return validateInstall(updated, facts)
	}
	o, n := &old.Spec, &updated.Spec
	oldRevs, newRevs := byName(o.Revisions), byName(n.Revisions)
	var added, removed []string
	for name := range newRevs {
		if _, ok := oldRevs[name]; !ok {
			added = append(added, name)
		}
	}
	for name := range oldRevs {
		if _, ok := newRevs[name]; !ok {
			removed = append(removed, name)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)

	// A published revision is immutable but for its control plane: what a
	// revision injects must not change under running pods.
	var errs field.ErrorList
	for i, r := range n.Revisions {
		if prev, ok := oldRevs[r.Name]; ok {
			p := spec.Child("revisions").Index(i)
			for _, f := range []struct{ name, was, is string }{
				{"version", prev.Version, r.Version},
				{"proxyImage", prev.ProxyImage, r.ProxyImage},
				{"discoveryAddress", prev.DiscoveryAddress, r.DiscoveryAddress},
				{"templates", prev.Templates, r.Templates},
			} {
				if f.was != f.is {
					errs = append(errs, field.Forbidden(p.Child(f.name), fmt.Sprintf("revision %s is published and its %s (%q) cannot be edited in place: pods already run it; publish a new revision instead (%s)", r.Name, f.name, f.was, RemedyCanaryDeploy.Command())))
				}
			}
		}
	}
	if len(errs) > 0 {
		return Transition{}, errs
	}

	sameTags := o.Stable == n.Stable && o.Canary == n.Canary
	switch {
	case len(added) == 0 && len(removed) == 0 && sameTags:
		if specEqualButControlPlanes(o, n) {
			return Transition{Action: ActionNone}, nil
		}
		return Transition{Action: ActionEdit}, nil
	case len(added) == 1 && len(removed) == 0 && o.Stable == n.Stable && o.Canary == "" && n.Canary == added[0]:
		return validateDeployCanary(n, newRevs[added[0]], oldRevs, facts)
	case len(added) == 0 && len(removed) == 0 && o.Canary != "" && n.Stable == o.Canary && n.Canary == "":
		return validatePromote(old, updated, facts)
	case len(added) == 0 && len(removed) == 1 && o.Canary == removed[0] && n.Canary == "" && n.Stable == o.Stable:
		return validateRevoke(o, facts)
	case len(added) == 0 && len(removed) == 1 && sameTags && removed[0] != o.Stable && removed[0] != o.Canary:
		return validateUnpublish(old, updated, oldRevs[removed[0]], facts)
	}
	return Transition{}, field.ErrorList{refuseOther(old, updated, added, removed)}
}

func validateInstall(m *v1alpha1.Mesh, facts Facts) (Transition, field.ErrorList) {
	revs := field.NewPath("spec", "revisions")
	for i, r := range m.Spec.Revisions {
		if r.Name != m.Spec.Stable && r.Name != m.Spec.Canary {
			return Transition{}, field.ErrorList{field.Forbidden(revs.Index(i), fmt.Sprintf("revision %s is neither stable nor canary: a new Mesh publishes its stable revision and at most a canary", r.Name))}
		}
	}
	if m.Spec.Canary != "" {
		stable := byName(m.Spec.Revisions)[m.Spec.Stable]
		if errs := checkCanaryVersion(m, stable, byName(m.Spec.Revisions)[m.Spec.Canary], facts.IstioCRDVersion); len(errs) > 0 {
			return Transition{}, errs
		}
	}
	return Transition{Action: ActionInstall, To: m.Spec.Stable}, nil
}

func checkCanaryVersion(m *v1alpha1.Mesh, stable, canary v1alpha1.Revision, crdVersion string) field.ErrorList {
	sv, _ := ParseVersion(stable.Version) // ValidateMesh parsed both
	cv, _ := ParseVersion(canary.Version)
	if err := CheckSkip(sv, cv); err != nil {
		return field.ErrorList{field.Forbidden(revisionPath(m, canary.Name).Child("version"), fmt.Sprintf("cannot deploy canary %s: %v", canary.Name, err))}
	}
	return checkCRDVersion(m, canary, crdVersion)
}

func validateDeployCanary(n *v1alpha1.MeshSpec, canary v1alpha1.Revision, oldRevs map[string]v1alpha1.Revision, facts Facts) (Transition, field.ErrorList) {
	m := &v1alpha1.Mesh{Spec: *n}
	for _, name := range slices.Sorted(maps.Keys(oldRevs)) {
		if name != n.Stable {
			return Transition{}, field.ErrorList{field.Forbidden(field.NewPath("spec", "canary"), fmt.Sprintf(
				"cannot deploy canary %s: revision %s is still published from the last upgrade; finish that upgrade first: upgrade the data plane (%s) and unpublish %s (%s)",
				canary.Name, name, RemedyDataPlaneUpgrade.Command(), name, RemedyUnpublish.Command()))}
		}
	}
	if errs := checkCanaryVersion(m, oldRevs[n.Stable], canary, facts.IstioCRDVersion); len(errs) > 0 {
		return Transition{}, errs
	}
	return Transition{Action: ActionDeployCanary, From: n.Stable, To: canary.Name}, nil
}

func validatePromote(old, updated *v1alpha1.Mesh, facts Facts) (Transition, field.ErrorList) {
	c := old.Spec.Canary
	t := Transition{Action: ActionPromote, From: old.Spec.Stable, To: c}
	if !facts.ControlPlaneReady[c] {
		if !forcedStep(old, updated) {
			return Transition{}, field.ErrorList{field.Forbidden(field.NewPath("spec", "stable"), fmt.Sprintf(
				"cannot promote canary %s: its control plane is not Ready, so pods would get sidecars that cannot connect; wait for it (kubectl get deploy %s), or override with annotation %s=true set in the same update (%s)",
				c, ControlPlaneName(c), AnnotationForce, RemedyPromoteForce.Command()))}
		}
		t.Warnings = append(t.Warnings, fmt.Sprintf("promoting canary %s although its control plane is not Ready (forced)", c))
	}
	return t, nil
}

func validateRevoke(o *v1alpha1.MeshSpec, facts Facts) (Transition, field.ErrorList) {
	c := o.Canary
	var using []string
	for _, ns := range slices.Sorted(maps.Keys(facts.Namespaces)) {
		if v := facts.Namespaces[ns][LabelRev]; v == TagCanary || v == c {
			using = append(using, fmt.Sprintf("%s (%s=%s)", ns, LabelRev, v))
		}
	}
	if len(using) > 0 {
		first := strings.SplitN(using[0], " ", 2)[0]
		return Transition{}, field.ErrorList{field.Forbidden(field.NewPath("spec", "canary"), fmt.Sprintf(
			"cannot revoke canary %s: %s still on the canary; switch them back first (%s) and redeploy their workloads",
			c, nameFew(using, "namespace")+isAre(len(using)), RemedyNamespaceSwitch.Command(first, TagStable)))}
	}
	t := Transition{Action: ActionRevoke, From: c, To: o.Stable}
	if pods := facts.PodsOf(c); len(pods) > 0 {
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s still run the sidecar of revoked revision %s and will lose their control plane; redeploy them (%s)", nameFew(pods, "pod"), c, RemedyRedeploy.Command()))
	}
	return t, nil
}

func validateUnpublish(old, updated *v1alpha1.Mesh, rev v1alpha1.Revision, facts Facts) (Transition, field.ErrorList) {
	var pins []string
	for _, ns := range slices.Sorted(maps.Keys(facts.Namespaces)) {
		if facts.Namespaces[ns][LabelRev] == rev.Name {
			pins = append(pins, ns)
		}
	}
	path := field.NewPath("spec", "revisions")
	if len(pins) > 0 {
		return Transition{}, field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"cannot unpublish %s: %s pinned to it (%s=%s); switch them first (%s)",
			rev.Name, nameFew(pins, "namespace")+isAre(len(pins)), LabelRev, rev.Name, RemedyNamespaceSwitch.Command(pins[0], TagStable)))}
	}
	t := Transition{Action: ActionUnpublish, From: rev.Name, To: updated.Spec.Stable}
	if pods := facts.PodsOf(rev.Name); len(pods) > 0 {
		msg := fmt.Sprintf("%s still run the sidecar of %s", nameFew(pods, "pod"), rev.Name)
		if !forcedStep(old, updated) {
			return Transition{}, field.ErrorList{field.Forbidden(path, fmt.Sprintf(
				"cannot unpublish %s: %s; upgrade them first (%s), or override with annotation %s=true set in the same update (%s)",
				rev.Name, msg, RemedyDataPlaneUpgrade.Command(), AnnotationForce, RemedyUnpublishForce.Command()))}
		}
		t.Warnings = append(t.Warnings, msg+" and lose their control plane (forced)")
	}
	return t, nil
}

// refuseOther explains why an update is none of the lifecycle steps.
func refuseOther(old, updated *v1alpha1.Mesh, added, removed []string) *field.Error {
	o, n := &old.Spec, &updated.Spec
	spec := field.NewPath("spec")
	switch {
	case o.Canary != "" && n.Stable == o.Canary && len(removed)+len(added) > 0:
		return field.Forbidden(spec, fmt.Sprintf("this update promotes %s and changes the published revisions at once; take one step at a time: promote (%s), upgrade the data plane, then unpublish (%s)", o.Canary, RemedyPromote.Command(), RemedyUnpublish.Command()))
	case o.Canary == "" && o.Stable != n.Stable:
		if _, published := byName(o.Revisions)[n.Stable]; published && n.Stable != o.Stable {
			return field.Forbidden(spec.Child("stable"), fmt.Sprintf("cannot set stable from %s to %s: after a promotion the upgrade cannot be revoked (the old revision stays only until it is unpublished); to move on, finish this upgrade and deploy a newer canary", o.Stable, n.Stable))
		}
		return field.Forbidden(spec.Child("stable"), fmt.Sprintf("cannot set stable from %s to %s: no canary is deployed to promote; deploy one first (%s)", o.Stable, n.Stable, RemedyCanaryDeploy.Command()))
	case o.Stable != n.Stable && n.Stable != o.Canary:
		why := "stable moves only to the canary, by promotion (" + RemedyPromote.Command() + ")"
		if _, published := byName(o.Revisions)[n.Stable]; published {
			why = "after a promotion the upgrade cannot be revoked (the old revision stays only until it is unpublished); to move on, finish this upgrade and deploy a newer canary"
		}
		return field.Forbidden(spec.Child("stable"), fmt.Sprintf("cannot set stable from %s to %s: %s", o.Stable, n.Stable, why))
	case o.Canary != "" && n.Canary != "" && o.Canary != n.Canary:
		return field.Forbidden(spec.Child("canary"), fmt.Sprintf("canary %s is already deployed: promote it (%s) or revoke it (%s) before deploying another", o.Canary, RemedyPromote.Command(), RemedyRevoke.Command()))
	case o.Canary == "" && n.Canary != "" && len(added) == 0:
		return field.Forbidden(spec.Child("canary"), fmt.Sprintf("cannot make %s the canary: a canary is a newly published revision (%s)", n.Canary, RemedyCanaryDeploy.Command()))
	case o.Canary != "" && n.Canary == "" && n.Stable == o.Stable && !slices.Contains(removed, o.Canary):
		return field.Forbidden(spec.Child("canary"), fmt.Sprintf("to revoke canary %s, remove its revision too (%s)", o.Canary, RemedyRevoke.Command()))
	case len(added) > 0 && n.Canary != "" && slices.Contains(added, n.Canary) && o.Canary != "":
		return field.Forbidden(spec.Child("canary"), fmt.Sprintf("canary %s is already deployed: promote or revoke it first", o.Canary))
	case len(added) > 0 && !slices.Contains(added, n.Canary):
		return field.Forbidden(spec.Child("revisions"), fmt.Sprintf("cannot publish %s without making it the canary: new revisions are deployed as canaries (%s)", strings.Join(added, ", "), RemedyCanaryDeploy.Command()))
	case len(removed) > 0 && (slices.Contains(removed, o.Stable)):
		return field.Forbidden(spec.Child("revisions"), fmt.Sprintf("cannot remove stable revision %s", o.Stable))
	}
	return field.Forbidden(spec, "this update is more than one lifecycle step; take one step at a time: deploy canary, promote, revoke or unpublish")
}

func specEqualButControlPlanes(o, n *v1alpha1.MeshSpec) bool {
	if o.UnknownRevisionPolicy != n.UnknownRevisionPolicy {
		return false
	}
	oldRevs := byName(o.Revisions)
	for _, r := range n.Revisions {
		if !controlPlaneEqual(oldRevs[r.Name].ControlPlane, r.ControlPlane) {
			return false
		}
	}
	return true
}

func controlPlaneEqual(a, b *v1alpha1.ControlPlane) bool {
	if a == nil || b == nil {
		return a == b
	}
	ra, rb := int32(1), int32(1)
	if a.Replicas != nil {
		ra = *a.Replicas
	}
	if b.Replicas != nil {
		rb = *b.Replicas
	}
	return a.Image == b.Image && ra == rb && a.ServiceType == b.ServiceType &&
		a.External == b.External && reflect.DeepEqual(a.Helm, b.Helm)
}

func byName(revs []v1alpha1.Revision) map[string]v1alpha1.Revision {
	m := make(map[string]v1alpha1.Revision, len(revs))
	for _, r := range revs {
		m[r.Name] = r
	}
	return m
}

func revisionPath(m *v1alpha1.Mesh, name string) *field.Path {
	for i, r := range m.Spec.Revisions {
		if r.Name == name {
			return field.NewPath("spec", "revisions").Index(i)
		}
	}
	return field.NewPath("spec", "revisions")
}

// nameFew names up to maxNamed items and counts the rest: "3 pods (a, b, c)".
func nameFew(items []string, noun string) string {
	n := len(items)
	plural := noun + "s"
	if n == 1 {
		plural = noun
	}
	shown := items
	if n > maxNamed {
		shown = items[:maxNamed]
	}
	s := fmt.Sprintf("%d %s (%s", n, plural, strings.Join(shown, ", "))
	if n > maxNamed {
		s += fmt.Sprintf(", and %d more", n-maxNamed)
	}
	return s + ")"
}

func isAre(n int) string {
	if n == 1 {
		return " is"
	}
	return " are"
}
