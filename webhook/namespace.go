package webhook

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// NamespaceValidatorOptions configures NewNamespaceValidator.
type NamespaceValidatorOptions struct {
	// OwnNamespace is meshrev's own namespace (never injected).
	OwnNamespace string
	// Reader reads the Mesh "default": the manager's cache. Required.
	Reader client.Reader
	// Scheme decodes the Namespace; default client-go's scheme plus meshrev.io/v1alpha1.
	Scheme *runtime.Scheme
	// Renderer renders a revision's templates (the *Injector), to warn when
	// the namespace's Pod Security level refuses the injected pod; nil skips
	// that check.
	Renderer RevisionRenderer
}

// RevisionRenderer renders the templates of a revision. *Injector implements it.
type RevisionRenderer interface {
	// RenderRevision returns the sidecar and gateway fragments of rev.
	RenderRevision(ctx context.Context, rev v1alpha1.Revision) (sidecar, gateway Fragment, err error)
}

// NewNamespaceValidator returns the validating webhook for namespaces
// (/validate-namespace). It never denies: it resolves a plain pod of the
// namespace through revisions.Resolve and returns the decision's warnings
// (a label naming an unpublished revision, canary while no canary is
// published, both istio-injection and istio.io/rev set), so the person
// labelling learns at once what new pods will get.
func NewNamespaceValidator(opts NamespaceValidatorOptions) *admission.Webhook {
	if opts.Scheme == nil {
		opts.Scheme = validatorScheme()
	}
	return admission.WithValidator[*corev1.Namespace](opts.Scheme, &namespaceValidator{opts: opts})
}

type namespaceValidator struct {
	opts NamespaceValidatorOptions
}

// ValidateCreate warns about the labels of a new namespace.
func (v *namespaceValidator) ValidateCreate(ctx context.Context, ns *corev1.Namespace) (admission.Warnings, error) {
	return v.warn(ctx, ns), nil
}

// ValidateUpdate warns about the labels of an updated namespace.
func (v *namespaceValidator) ValidateUpdate(ctx context.Context, _, ns *corev1.Namespace) (admission.Warnings, error) {
	return v.warn(ctx, ns), nil
}

// ValidateDelete has nothing to say.
func (v *namespaceValidator) ValidateDelete(context.Context, *corev1.Namespace) (admission.Warnings, error) {
	return nil, nil
}

func (v *namespaceValidator) warn(ctx context.Context, ns *corev1.Namespace) admission.Warnings {
	_, hasInj := ns.Labels[revisions.LabelInjection]
	_, hasRev := ns.Labels[revisions.LabelRev]
	if !hasInj && !hasRev {
		return nil
	}
	log := logf.FromContext(ctx).WithValues("namespace", ns.Name)
	var spec *v1alpha1.MeshSpec
	var mesh v1alpha1.Mesh
	switch err := v.opts.Reader.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &mesh); {
	case err == nil:
		spec = &mesh.Spec
	case apierrors.IsNotFound(err):
		// Resolve explains that no Mesh is installed.
	default:
		// Warnings only: never block a namespace because meshrev cannot read its table.
		log.Error(err, "read the mesh to check namespace labels")
		return admission.Warnings{fmt.Sprintf("meshrev could not check the injection labels of namespace %s: %v", ns.Name, err)}
	}
	// A plain pod of the namespace: what its labels alone decide.
	d := revisions.Resolve(spec, v.opts.OwnNamespace, revisions.Subject{Namespace: ns.Name, NamespaceLabels: ns.Labels})
	warnings := admission.Warnings(d.Warnings)
	if d.Deny {
		// Under unknownRevisionPolicy: Deny the pods are refused; the
		// namespace is still admitted, with that message as a warning.
		warnings = append(warnings, d.Message)
	}
	if d.Inject && d.Revision != nil && v.opts.Renderer != nil {
		if _, enforced := ns.Labels[LabelPodSecurityEnforce]; enforced {
			if w := v.podSecurityWarning(ctx, ns, *d.Revision); w != "" {
				warnings = append(warnings, w)
			}
		}
	}
	return warnings
}

// podSecurityWarning says when the namespace's enforced Pod Security level
// refuses pods injected with rev's sidecar template.
func (v *namespaceValidator) podSecurityWarning(ctx context.Context, ns *corev1.Namespace, rev v1alpha1.Revision) string {
	sidecar, _, err := v.opts.Renderer.RenderRevision(ctx, rev)
	if err != nil {
		return ""
	}
	res, err := PodSecurityProblems(ns.Labels, sidecar)
	if err != nil {
		logf.FromContext(ctx).Error(err, "check the namespace's Pod Security level", "namespace", ns.Name)
		return ""
	}
	if len(res.Problems) == 0 {
		return ""
	}
	remedy := "Set the namespace's level to privileged for injected workloads, or do not label it for injection"
	if rev.TrafficInterception != v1alpha1.TrafficInterceptionCNI {
		// istio-init's NET_ADMIN and NET_RAW are what baseline refuses.
		remedy = fmt.Sprintf("Install the istio-cni node agent and set spec.revisions[%s].trafficInterception: CNI (istio-validation, no added capability; the injected pod then passes baseline), set the namespace's level to privileged for injected workloads, or do not label it for injection", rev.Name)
	}
	return fmt.Sprintf("namespace %s enforces Pod Security %q (label %s), which refuses pods injected with revision %s's sidecar: %s; such pods will not be created (their Deployments stay at 0 ready). %s",
		ns.Name, res.Enforced, LabelPodSecurityEnforce, rev.Name, strings.Join(res.Problems, "; "), remedy)
}
