package webhook

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// TemplatesValidatorOptions configures NewTemplatesValidator.
type TemplatesValidatorOptions struct {
	// Namespace is meshrev's own namespace, where every templates ConfigMap
	// lives; ConfigMaps of other namespaces are allowed untouched. Required.
	Namespace string
	// DefaultsConfigMap names the defaults ConfigMap (--templates-configmap);
	// empty when the embedded templates are the defaults.
	DefaultsConfigMap string
	// Reader reads the Mesh "default" and the other templates ConfigMaps:
	// the manager's cache. Required.
	Reader client.Reader
	// Injector renders the templates exactly as injection does (its mesh
	// namespace, proxy image repository and values). Required.
	Injector *Injector
	// Scheme decodes the ConfigMap; default client-go's scheme plus meshrev.io/v1alpha1.
	Scheme *runtime.Scheme
}

// NewTemplatesValidator returns the validating webhook for templates
// ConfigMaps (/validate-templates), which closes the gap the Mesh validator
// leaves: it checks templates when a revision is published, this webhook
// when they are edited afterwards. A ConfigMap of meshrev's namespace is a
// templates ConfigMap when it is the defaults ConfigMap or a published
// revision names it (spec.revisions[].templates); every other ConfigMap is
// allowed at once, without being decoded.
//
//   - CREATE and UPDATE are refused when a template of the ConfigMap (key
//     sidecar or gateway) does not parse or render for a published revision
//     that uses it, with a message naming the ConfigMap, the key, the
//     revision and the error. An UPDATE that leaves both keys as they are
//     (labels, annotations, other keys) is allowed without rendering.
//   - DELETE is refused while a published revision names the ConfigMap. The
//     defaults ConfigMap is not named by any revision: its deletion is
//     allowed, with a warning naming the revisions that read it (the chart
//     keeps that deletion away from the webhook, so that helm uninstall
//     does not depend on the manager).
func NewTemplatesValidator(opts TemplatesValidatorOptions) *admission.Webhook {
	if opts.Scheme == nil {
		opts.Scheme = validatorScheme()
	}
	// The same layering of ConfigMaps the injector's template source applies.
	src := newConfigMapTemplates(ConfigMapTemplatesOptions{Reader: opts.Reader, Namespace: opts.Namespace, DefaultsConfigMap: opts.DefaultsConfigMap})
	return &admission.Webhook{Handler: &templatesValidator{opts: opts, src: src, decoder: admission.NewDecoder(opts.Scheme)}}
}

type templatesValidator struct {
	opts    TemplatesValidatorOptions
	src     *configMapTemplates
	decoder admission.Decoder
}

// Handle judges one ConfigMap request.
func (v *templatesValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Namespace != v.opts.Namespace {
		return admission.Allowed("")
	}
	isDefaults := v.opts.DefaultsConfigMap != "" && req.Name == v.opts.DefaultsConfigMap
	var mesh v1alpha1.Mesh
	var spec *v1alpha1.MeshSpec
	switch err := v.opts.Reader.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &mesh, noDeepCopy); {
	case err == nil:
		spec = &mesh.Spec
	case apierrors.IsNotFound(err):
		// No Mesh: no revision uses any ConfigMap.
		return admission.Allowed("")
	default:
		// Without the Mesh, whether this is a templates ConfigMap is unknown.
		return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("meshrev could not read the Mesh %q to check ConfigMap %s/%s against the revisions' templates: %w; retry", v1alpha1.MeshName, req.Namespace, req.Name, err))
	}
	naming := revisionsNaming(spec, req.Name)
	if !isDefaults && len(naming) == 0 {
		return admission.Allowed("")
	}
	log := logf.FromContext(ctx).WithValues("configmap", req.Namespace+"/"+req.Name, "operation", req.Operation)
	cmName := req.Namespace + "/" + req.Name

	switch req.Operation {
	case admissionv1.Delete:
		if len(naming) > 0 {
			msg := fmt.Sprintf("ConfigMap %s holds the templates of published %s %s (spec.revisions[].templates): point %s at another templates ConfigMap, or unpublish %s, before deleting it",
				cmName, plural(len(naming), "revision", "revisions"), strings.Join(naming, ", "), plural(len(naming), "that revision", "those revisions"), plural(len(naming), "it", "them"))
			log.Info("refused templates ConfigMap deletion", "revisions", naming)
			return admission.Denied(msg)
		}
		users := revisionsReadingDefaults(spec)
		if len(users) == 0 {
			return admission.Allowed("")
		}
		return admission.Allowed("").WithWarnings(fmt.Sprintf("ConfigMap %s holds the default templates (--templates-configmap) of %s %s: until it is created again, their templates cannot be read and pods keep their last good render",
			cmName, plural(len(users), "revision", "revisions"), strings.Join(users, ", ")))
	case admissionv1.Create, admissionv1.Update:
	default:
		return admission.Allowed("")
	}

	var cm corev1.ConfigMap
	if err := v.decoder.DecodeRaw(req.Object, &cm); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode ConfigMap %s: %w", cmName, err))
	}
	if req.Operation == admissionv1.Update {
		var old corev1.ConfigMap
		if err := v.decoder.DecodeRaw(req.OldObject, &old); err == nil && sameTemplates(&old, &cm) {
			return admission.Allowed("")
		}
	}
	if msgs := v.check(ctx, spec, &cm, isDefaults); len(msgs) > 0 {
		log.Info("refused templates ConfigMap", "errors", strings.Join(msgs, "; "))
		return admission.Denied(strings.Join(msgs, "; "))
	}
	if !hasTemplateKey(&cm) {
		return admission.Allowed("").WithWarnings(fmt.Sprintf("ConfigMap %s has neither the key %q nor %q: the revisions that use it get the templates it would replace", cmName, revisions.TemplateSidecar, revisions.TemplateGateway))
	}
	return admission.Allowed("")
}

// check renders every template cm holds for every published revision whose
// injection reads it, and returns one message per failure.
func (v *templatesValidator) check(ctx context.Context, spec *v1alpha1.MeshSpec, cm *corev1.ConfigMap, isDefaults bool) []string {
	var msgs []string
	for i := range spec.Revisions {
		rev := spec.Revisions[i]
		own := rev.Templates == cm.Name
		if !own && !isDefaults {
			continue
		}
		// What the revision will inject once cm is written: a key of cm that
		// another ConfigMap replaces for this revision is not judged here.
		// When that layering cannot be read, cm's own keys are judged.
		eff, effErr := v.src.with(ctx, &rev, cm)
		for _, key := range []string{revisions.TemplateSidecar, revisions.TemplateGateway} {
			text, ok := cm.Data[key]
			if !ok || (effErr == nil && eff.text(key) != text) {
				continue
			}
			if err := v.opts.Injector.CheckTemplate(&rev, key, text); err != nil {
				msgs = append(msgs, fmt.Sprintf("ConfigMap %s/%s key %q does not render for published revision %s: %v; fix the template (until then the ConfigMap stays as it was)",
					cm.Namespace, cm.Name, key, rev.Name, err))
			}
		}
	}
	return msgs
}

// revisionsNaming returns the published revisions whose templates field names
// the ConfigMap name.
func revisionsNaming(spec *v1alpha1.MeshSpec, name string) []string {
	var out []string
	for _, r := range spec.Revisions {
		if r.Templates == name {
			out = append(out, r.Name)
		}
	}
	return out
}

// revisionsReadingDefaults returns the published revisions that read the
// defaults ConfigMap: all of them (a revision's own ConfigMap overlays the
// defaults key by key).
func revisionsReadingDefaults(spec *v1alpha1.MeshSpec) []string {
	out := make([]string, 0, len(spec.Revisions))
	for _, r := range spec.Revisions {
		out = append(out, r.Name)
	}
	return out
}

// sameTemplates says whether old and cm hold the same template keys.
func sameTemplates(old, cm *corev1.ConfigMap) bool {
	for _, key := range []string{revisions.TemplateSidecar, revisions.TemplateGateway} {
		a, aok := old.Data[key]
		b, bok := cm.Data[key]
		if aok != bok || a != b {
			return false
		}
	}
	return true
}

// hasTemplateKey says whether cm has a sidecar or gateway key.
func hasTemplateKey(cm *corev1.ConfigMap) bool {
	return slices.ContainsFunc([]string{revisions.TemplateSidecar, revisions.TemplateGateway}, func(k string) bool {
		_, ok := cm.Data[k]
		return ok
	})
}

// plural picks one or many by n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
