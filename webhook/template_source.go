// Template sources: where a revision's injection templates come from — the
// embedded defaults, overlaid by the defaults ConfigMap, overlaid by the
// revision's own ConfigMap.

package webhook

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/charts"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Templates is the text of the two injection templates of a revision.
type Templates struct {
	// Sidecar is the template for application pods.
	Sidecar string
	// Gateway is the template for gateway pods.
	Gateway string
}

// text returns the template of key (sidecar or gateway).
func (t Templates) text(key string) string {
	if key == revisions.TemplateGateway {
		return t.Gateway
	}
	return t.Sidecar
}

// DefaultTemplates returns the default templates embedded from the chart
// (charts/meshrev/files/sidecar.tmpl and gateway.tmpl).
func DefaultTemplates() Templates {
	s, g := charts.DefaultTemplates()
	return Templates{Sidecar: s, Gateway: g}
}

// TemplateSource supplies the template text for a revision. It is called on
// the admission hot path, so it must answer from memory (an informer cache),
// never with an API call.
type TemplateSource interface {
	// Templates returns the templates of rev: its own (rev.Templates names a
	// ConfigMap) or the defaults.
	Templates(ctx context.Context, rev *v1alpha1.Revision) (Templates, error)
}

// TemplateOrigin is implemented by a TemplateSource that can say where a
// revision's templates come from (e.g. "ConfigMap meshrev-system/tmpl-1-23-6"),
// for the injector's logs, warnings and refusals about broken templates.
type TemplateOrigin interface {
	// TemplatesOrigin names where rev's templates are read from.
	TemplatesOrigin(rev *v1alpha1.Revision) string
}

// templatesOrigin names where rev's templates come from, asking src when it
// knows.
func templatesOrigin(src TemplateSource, rev *v1alpha1.Revision) string {
	if o, ok := src.(TemplateOrigin); ok {
		return o.TemplatesOrigin(rev)
	}
	if rev.Templates != "" {
		return "ConfigMap " + rev.Templates
	}
	return "the default templates"
}

// TemplateSourceFunc adapts a function to TemplateSource.
type TemplateSourceFunc func(ctx context.Context, rev *v1alpha1.Revision) (Templates, error)

// Templates calls f.
func (f TemplateSourceFunc) Templates(ctx context.Context, rev *v1alpha1.Revision) (Templates, error) {
	return f(ctx, rev)
}

// StaticTemplates is a TemplateSource that serves the same templates to every
// revision; a revision that names its own templates ConfigMap is an error,
// since there is nothing to read it from.
type StaticTemplates Templates

// Templates returns t unless rev names a ConfigMap.
func (t StaticTemplates) Templates(_ context.Context, rev *v1alpha1.Revision) (Templates, error) {
	if rev != nil && rev.Templates != "" {
		return Templates{}, fmt.Errorf("revision %s names templates ConfigMap %q, but the injector was started without a ConfigMap reader; start the manager normally (not with static templates) or remove spec.revisions[].templates", rev.Name, rev.Templates)
	}
	return Templates(t), nil
}

// ConfigMapTemplatesOptions configures NewConfigMapTemplateSource.
type ConfigMapTemplatesOptions struct {
	// Reader reads ConfigMaps; pass the manager's cache (restricted to
	// Namespace), so that no request makes an API call.
	Reader client.Reader
	// Namespace is meshrev's own namespace, where every templates ConfigMap lives.
	Namespace string
	// DefaultsConfigMap names the ConfigMap (keys sidecar, gateway) that
	// replaces the embedded default templates; empty means the embedded ones.
	DefaultsConfigMap string
}

// NewConfigMapTemplateSource returns a TemplateSource that reads templates
// from ConfigMaps with the keys "sidecar" and "gateway": the revision's own
// (spec.revisions[].templates), else DefaultsConfigMap, else the embedded
// defaults. A key missing from a ConfigMap falls back to the next level.
func NewConfigMapTemplateSource(opts ConfigMapTemplatesOptions) TemplateSource {
	return newConfigMapTemplates(opts)
}

// newConfigMapTemplates is NewConfigMapTemplateSource's source as its own
// type, for the templates validator, which judges an edit through the same
// layering (with).
func newConfigMapTemplates(opts ConfigMapTemplatesOptions) *configMapTemplates {
	return &configMapTemplates{opts: opts, embedded: DefaultTemplates()}
}

// configMapTemplates layers the embedded defaults, the defaults ConfigMap
// and a revision's own ConfigMap, key by key.
type configMapTemplates struct {
	opts     ConfigMapTemplatesOptions
	embedded Templates
}

// noDeepCopy: the ConfigMap is only read, so the cache's copy is shared
// instead of deep-copied on every admission request.
var noDeepCopy = &client.GetOptions{UnsafeDisableDeepCopy: new(true)}

// Templates layers rev's templates from the ConfigMaps in the cache.
func (s *configMapTemplates) Templates(ctx context.Context, rev *v1alpha1.Revision) (Templates, error) {
	return s.with(ctx, rev, nil)
}

// with is Templates as they will be once candidate (when not nil) is
// written: candidate is read in place of the stored ConfigMap of its name.
// The templates validator judges an edit with it, through the same layering
// injection uses.
func (s *configMapTemplates) with(ctx context.Context, rev *v1alpha1.Revision, candidate *corev1.ConfigMap) (Templates, error) {
	t := s.embedded
	if s.opts.DefaultsConfigMap != "" {
		if err := s.overlay(ctx, &t, s.opts.DefaultsConfigMap, candidate); err != nil {
			return Templates{}, fmt.Errorf("default templates (--templates-configmap): %w", err)
		}
	}
	if rev != nil && rev.Templates != "" {
		if err := s.overlay(ctx, &t, rev.Templates, candidate); err != nil {
			return Templates{}, fmt.Errorf("templates of revision %s: %w", rev.Name, err)
		}
	}
	return t, nil
}

// TemplatesOrigin names the ConfigMaps rev's templates are read from: the
// revision's own, over the defaults ConfigMap when there is one.
func (s *configMapTemplates) TemplatesOrigin(rev *v1alpha1.Revision) string {
	var names []string
	if rev != nil && rev.Templates != "" {
		names = append(names, s.opts.Namespace+"/"+rev.Templates)
	}
	if s.opts.DefaultsConfigMap != "" {
		names = append(names, s.opts.Namespace+"/"+s.opts.DefaultsConfigMap)
	}
	switch len(names) {
	case 0:
		return "the embedded default templates"
	case 1:
		return "ConfigMap " + names[0]
	}
	return "ConfigMaps " + strings.Join(names, " (over ") + ")"
}

// overlay replaces the keys of t that the ConfigMap name has, reading
// candidate in its place when it has that name.
func (s *configMapTemplates) overlay(ctx context.Context, t *Templates, name string, candidate *corev1.ConfigMap) error {
	cm := candidate
	if cm == nil || cm.Name != name {
		cm = &corev1.ConfigMap{}
		if err := s.opts.Reader.Get(ctx, client.ObjectKey{Namespace: s.opts.Namespace, Name: name}, cm, noDeepCopy); err != nil {
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("ConfigMap %s/%s not found: create it with the keys %q and %q", s.opts.Namespace, name, revisions.TemplateSidecar, revisions.TemplateGateway)
			}
			return fmt.Errorf("read ConfigMap %s/%s: %w", s.opts.Namespace, name, err)
		}
	}
	if v, ok := cm.Data[revisions.TemplateSidecar]; ok {
		t.Sidecar = v
	}
	if v, ok := cm.Data[revisions.TemplateGateway]; ok {
		t.Gateway = v
	}
	return nil
}
