package webhook

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// RevisionValidator checks that a revision can be published: its templates
// parse and render. *Injector implements it.
type RevisionValidator interface {
	// ValidateRevision returns why rev cannot be injected, or nil.
	ValidateRevision(ctx context.Context, mesh *v1alpha1.Mesh, rev v1alpha1.Revision) error
}

// MeshValidatorOptions configures NewMeshValidator.
type MeshValidatorOptions struct {
	// Reader reads namespaces, pod metadata and control-plane Deployments:
	// the manager's cache (readmodel.Read). Required.
	Reader client.Reader
	// MeshNamespace is where the control planes run; default istio-system.
	MeshNamespace string
	// Revisions checks the templates of every revision being published;
	// normally the *Injector. Nil skips the template check.
	Revisions RevisionValidator
	// Scheme decodes the Mesh; default client-go's scheme plus meshrev.io/v1alpha1.
	Scheme *runtime.Scheme
}

// meshGroupKind names the Mesh in refusals.
var meshGroupKind = v1alpha1.GroupVersion.WithKind("Mesh").GroupKind()

// NewMeshValidator returns the validating webhook for Mesh objects
// (/validate-mesh): every update must be one lifecycle step allowed by
// revisions.ValidateTransition against the cluster's facts, and every
// revision being published must render. Refusals carry the rule's message
// and field path; allowed steps carry the rule's warnings.
func NewMeshValidator(opts MeshValidatorOptions) *admission.Webhook {
	if opts.MeshNamespace == "" {
		opts.MeshNamespace = revisions.DefaultMeshNamespace
	}
	if opts.Scheme == nil {
		opts.Scheme = validatorScheme()
	}
	return admission.WithValidator[*v1alpha1.Mesh](opts.Scheme, &meshValidator{opts: opts})
}

// validatorScheme is readmodel.Scheme for the validators' decoders.
func validatorScheme() *runtime.Scheme {
	s, err := readmodel.Scheme()
	if err != nil {
		// It only registers static types: an error is a programming error.
		panic(fmt.Sprintf("validator scheme: %v", err))
	}
	return s
}

type meshValidator struct {
	opts MeshValidatorOptions
}

// ValidateCreate checks a new Mesh: a valid table with a stable revision and at most a canary.
func (v *meshValidator) ValidateCreate(ctx context.Context, m *v1alpha1.Mesh) (admission.Warnings, error) {
	return v.validate(ctx, nil, m)
}

// ValidateUpdate checks that the update is one allowed lifecycle step.
func (v *meshValidator) ValidateUpdate(ctx context.Context, old, m *v1alpha1.Mesh) (admission.Warnings, error) {
	return v.validate(ctx, old, m)
}

// ValidateDelete refuses to delete the Mesh while namespaces ask for
// injection or pods run its revisions (revisions.ValidateDelete), unless it
// carries meshrev.io/force=true.
func (v *meshValidator) ValidateDelete(ctx context.Context, m *v1alpha1.Mesh) (admission.Warnings, error) {
	facts, err := readmodel.Read(ctx, v.opts.Reader, m, v.opts.MeshNamespace)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("validate deleting mesh %s: %w", m.Name, err))
	}
	warnings, errs := revisions.ValidateDelete(m, facts)
	if len(errs) > 0 {
		logf.FromContext(ctx).Info("refused mesh delete", "mesh", m.Name, "errors", errs.ToAggregate().Error())
		return nil, apierrors.NewInvalid(meshGroupKind, m.Name, errs)
	}
	return warnings, nil
}

func (v *meshValidator) validate(ctx context.Context, old, m *v1alpha1.Mesh) (admission.Warnings, error) {
	log := logf.FromContext(ctx).WithValues("mesh", m.Name)
	// Metadata-only updates (labels, the force annotation alone) take no step
	// and need no facts.
	if old != nil && equality.Semantic.DeepEqual(old.Spec, m.Spec) {
		return nil, nil
	}
	// The facts describe the cluster before the step: the old table knows
	// the canary whose control plane a promotion needs.
	factsFor := m
	if old != nil {
		factsFor = old
	}
	facts, err := readmodel.Read(ctx, v.opts.Reader, factsFor, v.opts.MeshNamespace)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("validate mesh %s: %w", m.Name, err))
	}
	t, errs := revisions.ValidateTransition(old, m, facts)
	if len(errs) == 0 {
		errs = v.validateTemplates(ctx, old, m)
	}
	if len(errs) > 0 {
		log.Info("refused mesh update", "errors", errs.ToAggregate().Error())
		return nil, apierrors.NewInvalid(meshGroupKind, m.Name, errs)
	}
	if t.Action != revisions.ActionNone {
		log.Info("allowed lifecycle step", "action", t.Action, "from", t.From, "to", t.To, "warnings", len(t.Warnings))
	}
	return t.Warnings, nil
}

// validateTemplates renders the templates of every revision being published,
// so that a broken template is refused now rather than discovered at pod time.
func (v *meshValidator) validateTemplates(ctx context.Context, old, m *v1alpha1.Mesh) field.ErrorList {
	if v.opts.Revisions == nil {
		return nil
	}
	published := map[string]bool{}
	if old != nil {
		for _, r := range old.Spec.Revisions {
			published[r.Name] = true
		}
	}
	var errs field.ErrorList
	for i, r := range m.Spec.Revisions {
		if published[r.Name] {
			continue
		}
		if err := v.opts.Revisions.ValidateRevision(ctx, m, r); err != nil {
			p := field.NewPath("spec", "revisions").Index(i)
			if r.Templates != "" {
				errs = append(errs, field.Invalid(p.Child("templates"), r.Templates, fmt.Sprintf("revision %s cannot be injected: %v; fix the templates ConfigMap and publish again", r.Name, err)))
			} else {
				errs = append(errs, field.Invalid(p, r.Name, fmt.Sprintf("revision %s cannot be injected with the default templates: %v", r.Name, err)))
			}
		}
	}
	return errs
}
