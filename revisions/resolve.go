package revisions

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Reason is why the decision table decided as it did: one code per row.
type Reason string

// The reasons, in the order of the decision table (docs/design.md, "The decision table"):
//
//	#  condition                                         result
//	1  system or meshrev namespace                       skip      SystemNamespace
//	2  spec.hostNetwork                                  skip      HostNetwork
//	3  pod sidecar.istio.io/inject=false (label/annot.)  skip      PodOptOut
//	4  namespace istio-injection=disabled                skip      NamespaceDisabled
//	5  pod istio.io/rev=X                                X         PodRevisionLabel
//	6  namespace istio-injection=enabled                 stable    NamespaceInjectionEnabled
//	7  namespace istio.io/rev=X                          X         NamespaceRevisionLabel
//	8  pod sidecar.istio.io/inject=true                  stable    PodInjectLabel
//	9  otherwise                                         skip      NotSelected
//
// Rows 5–8 resolve a tag or name X through the table; when X names nothing
// published the result is UnknownRevision (skip, or deny under
// unknownRevisionPolicy: Deny), and when no Mesh exists it is NoMesh.
const (
	ReasonSystemNamespace           Reason = "SystemNamespace"
	ReasonHostNetwork               Reason = "HostNetwork"
	ReasonPodOptOut                 Reason = "PodOptOut"
	ReasonNamespaceDisabled         Reason = "NamespaceDisabled"
	ReasonPodRevisionLabel          Reason = "PodRevisionLabel"
	ReasonNamespaceInjectionEnabled Reason = "NamespaceInjectionEnabled"
	ReasonNamespaceRevisionLabel    Reason = "NamespaceRevisionLabel"
	ReasonPodInjectLabel            Reason = "PodInjectLabel"
	ReasonNotSelected               Reason = "NotSelected"
	ReasonUnknownRevision           Reason = "UnknownRevision"
	ReasonNoMesh                    Reason = "NoMesh"
)

// Subject is what the decision looks at: a pod's labels and its namespace's.
type Subject struct {
	// Namespace of the pod.
	Namespace string
	// NamespaceLabels are the labels of the pod's namespace.
	NamespaceLabels map[string]string
	// Labels of the pod.
	Labels map[string]string
	// Annotations of the pod.
	Annotations map[string]string
	// HostNetwork is the pod's spec.hostNetwork.
	HostNetwork bool
}

// Decision is the outcome of Resolve.
type Decision struct {
	// Inject is true when the pod gets a sidecar.
	Inject bool
	// Deny is true when the pod must be refused (unknownRevisionPolicy: Deny).
	Deny bool
	// Revision is the revision to inject (empty when not injecting).
	Revision *v1alpha1.Revision
	// Selector is the label that selected the revision, e.g.
	// "namespace istio.io/rev=canary" (empty when the pod is skipped before any).
	Selector string
	// Reason is the row of the decision table that decided.
	Reason Reason
	// Message explains the decision to a person.
	Message string
	// Warnings are things the person should fix; they are sent as admission warnings.
	Warnings []string
}

// RevisionName is the decided revision's name, or "".
func (d Decision) RevisionName() string {
	if d.Revision == nil {
		return ""
	}
	return d.Revision.Name
}

// Resolve applies the decision table of docs/design.md to a pod. mesh may be nil
// when no Mesh exists yet; ownNamespace is meshrev's own namespace, never
// injected. It is the one implementation of the table: the webhook, the
// controller's data-plane report and the CLI's check-inject all call it.
func Resolve(mesh *v1alpha1.MeshSpec, ownNamespace string, s Subject) Decision {
	nsInject, nsRev := s.NamespaceLabels[LabelInjection], s.NamespaceLabels[LabelRev]
	podRev := s.Labels[LabelRev]

	var warnings []string
	if nsInject != "" && nsInject != InjectionEnabled && nsInject != InjectionDisabled {
		warnings = append(warnings, fmt.Sprintf("namespace %s label %s=%q is neither %q nor %q and is ignored", s.Namespace, LabelInjection, nsInject, InjectionEnabled, InjectionDisabled))
	}
	skip := func(r Reason, msg string) Decision {
		return Decision{Reason: r, Message: msg, Warnings: warnings}
	}

	switch {
	case s.Namespace == ownNamespace || slices.Contains(SystemNamespaces, s.Namespace):
		return Decision{Reason: ReasonSystemNamespace, Message: fmt.Sprintf("namespace %s is a system namespace and is never injected", s.Namespace)}
	case s.HostNetwork:
		return skip(ReasonHostNetwork, "pod uses the host network (spec.hostNetwork) and is never injected")
	case s.Labels[LabelSidecarInject] == "false":
		return skip(ReasonPodOptOut, fmt.Sprintf("pod label %s=false opts the pod out", LabelSidecarInject))
	case s.Annotations[LabelSidecarInject] == "false":
		return skip(ReasonPodOptOut, fmt.Sprintf("pod annotation %s=false opts the pod out", LabelSidecarInject))
	case nsInject == InjectionDisabled:
		if nsRev != "" {
			warnings = append(warnings, fmt.Sprintf("namespace %s sets both %s=%s and %s=%s: %s wins and pods get no sidecar; remove one of them (%s, or %s)",
				s.Namespace, LabelInjection, nsInject, LabelRev, nsRev, LabelInjection, RemedyNamespaceSwitch.Command(s.Namespace, "<revision>"), RemedyNamespaceDisable.Command(s.Namespace)))
		}
		return skip(ReasonNamespaceDisabled, fmt.Sprintf("namespace %s label %s=%s disables injection", s.Namespace, LabelInjection, InjectionDisabled))
	case podRev != "":
		return resolveTag(mesh, ReasonPodRevisionLabel, "pod "+LabelRev+"="+podRev, podRev, warnings)
	case nsInject == InjectionEnabled:
		if nsRev != "" {
			warnings = append(warnings, fmt.Sprintf("namespace %s sets both %s=%s and %s=%s: %s wins and the pod gets the stable revision; remove one of them (%s)",
				s.Namespace, LabelInjection, nsInject, LabelRev, nsRev, LabelInjection, RemedyNamespaceSwitch.Command(s.Namespace, "<revision>")))
		}
		return resolveTag(mesh, ReasonNamespaceInjectionEnabled, "namespace "+LabelInjection+"="+InjectionEnabled, TagStable, warnings)
	case nsRev != "":
		return resolveTag(mesh, ReasonNamespaceRevisionLabel, "namespace "+LabelRev+"="+nsRev, nsRev, warnings)
	case s.Labels[LabelSidecarInject] == "true":
		return resolveTag(mesh, ReasonPodInjectLabel, "pod "+LabelSidecarInject+"=true", TagStable, warnings)
	}
	return skip(ReasonNotSelected, fmt.Sprintf("neither namespace %s nor the pod asks for injection (no %s or %s label)", s.Namespace, LabelInjection, LabelRev))
}

// resolveTag resolves X of rows 5–8: a tag or a revision name.
func resolveTag(mesh *v1alpha1.MeshSpec, reason Reason, selector, x string, warnings []string) Decision {
	d := Decision{Reason: reason, Selector: selector, Warnings: warnings}
	if mesh == nil {
		d.Reason = ReasonNoMesh
		d.Message = fmt.Sprintf("%s asks for injection but no Mesh %q is installed, so there is no revision to inject; install meshrev's chart or create the Mesh", selector, v1alpha1.MeshName)
		d.Warnings = append(d.Warnings, d.Message)
		return d
	}
	name := x
	switch x {
	case TagStable, TagDefault:
		name = mesh.Stable
	case TagCanary:
		if mesh.Canary != "" {
			name = mesh.Canary
		} else {
			name = mesh.Stable
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s: no canary is published, so the pod gets the stable revision %s; switch the label to stable (%s)", selector, mesh.Stable, RemedyNamespaceSwitch.Command("NS", TagStable)))
		}
	}
	rev := FindRevision(mesh, name)
	if rev == nil {
		d.Reason = ReasonUnknownRevision
		d.Message = fmt.Sprintf("%s names revision %q, which is not published (published: %s); the pod gets no sidecar. Label it with stable, canary or a published revision",
			selector, x, strings.Join(PublishedNames(mesh), ", "))
		if mesh.UnknownRevisionPolicy == v1alpha1.UnknownRevisionDeny {
			d.Deny = true
			d.Message = strings.Replace(d.Message, "the pod gets no sidecar", "the pod is refused (unknownRevisionPolicy: Deny)", 1)
		} else {
			d.Warnings = append(d.Warnings, d.Message)
		}
		return d
	}
	d.Inject, d.Revision = true, rev
	d.Message = fmt.Sprintf("%s resolves to revision %s (version %s)", selector, rev.Name, rev.Version)
	if x != rev.Name {
		d.Message = fmt.Sprintf("%s: %s resolves to revision %s (version %s)", selector, x, rev.Name, rev.Version)
	}
	return d
}

// FindRevision returns the published revision named name, or nil.
func FindRevision(mesh *v1alpha1.MeshSpec, name string) *v1alpha1.Revision {
	if mesh == nil || name == "" {
		return nil
	}
	for i := range mesh.Revisions {
		if mesh.Revisions[i].Name == name {
			return &mesh.Revisions[i]
		}
	}
	return nil
}

// PublishedNames lists the published revisions with their tags, for messages:
// "1-22-6 (stable), 1-23-6 (canary)".
func PublishedNames(mesh *v1alpha1.MeshSpec) []string {
	if mesh == nil {
		return nil
	}
	out := make([]string, 0, len(mesh.Revisions))
	for _, r := range mesh.Revisions {
		switch r.Name {
		case mesh.Stable:
			out = append(out, r.Name+" (stable)")
		case mesh.Canary:
			out = append(out, r.Name+" (canary)")
		default:
			out = append(out, r.Name)
		}
	}
	return out
}

// Tags returns the tags that resolve to the named revision.
func Tags(mesh *v1alpha1.MeshSpec, name string) []string {
	var tags []string
	if mesh != nil && name != "" {
		if mesh.Stable == name {
			tags = append(tags, TagStable)
		}
		if mesh.Canary == name {
			tags = append(tags, TagCanary)
		}
	}
	return tags
}
