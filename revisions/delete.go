package revisions

import (
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// ValidateDelete decides whether the Mesh m may be deleted. Deleting it
// removes every revision and (garbage collection) their control planes: a
// namespace that asks for injection then has no revision to inject, and pods
// running a sidecar lose their control plane. So the delete is refused while
// a namespace asks for injection (istio-injection=enabled, or any
// istio.io/rev) or a pod runs one of m's revisions, unless m carries
// meshrev.io/force=true (set before deleting: a delete has no new object to
// carry it). Forced, the dependents become warnings.
func ValidateDelete(m *v1alpha1.Mesh, facts Facts) ([]string, field.ErrorList) {
	var namespaces []string
	for _, ns := range slices.Sorted(maps.Keys(facts.Namespaces)) {
		l := facts.Namespaces[ns]
		switch {
		case l[LabelInjection] == InjectionEnabled:
			namespaces = append(namespaces, fmt.Sprintf("%s with %s=%s", ns, LabelInjection, InjectionEnabled))
		case l[LabelInjection] != InjectionDisabled && l[LabelRev] != "":
			namespaces = append(namespaces, fmt.Sprintf("%s with %s=%s", ns, LabelRev, l[LabelRev]))
		}
	}
	var pods []string
	for _, r := range m.Spec.Revisions {
		pods = append(pods, facts.PodsOf(r.Name)...)
	}
	slices.Sort(pods)
	var deps []string
	if len(namespaces) > 0 {
		deps = append(deps, nameFew(namespaces, "namespace")+verb(len(namespaces), " asks", " ask")+" for injection")
	}
	if len(pods) > 0 {
		deps = append(deps, nameFew(pods, "pod")+verb(len(pods), " runs", " run")+" its sidecars")
	}
	if len(deps) == 0 {
		return nil, nil
	}
	what := deps[0]
	if len(deps) == 2 {
		what += " and " + deps[1]
	}
	if Forced(m) {
		return []string{fmt.Sprintf("deleting Mesh %s although %s (forced): new pods that ask for injection are refused until a Mesh exists, and running sidecars lose their control planes", m.Name, what)}, nil
	}
	return nil, field.ErrorList{field.Forbidden(field.NewPath("metadata", "name"), fmt.Sprintf(
		"cannot delete Mesh %s: %s; without the Mesh there is no revision to inject (new pods that ask for one are refused) and its control planes are deleted with it; remove the injection labels (meshrev namespace disable NAMESPACE) and redeploy those workloads first, or override with annotation %s=true set on the Mesh before deleting it (kubectl annotate mesh %s %s=true)",
		m.Name, what, AnnotationForce, m.Name, AnnotationForce))}
}

func verb(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
