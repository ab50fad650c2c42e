package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"text/template"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

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
	return &configMapTemplates{opts: opts, embedded: DefaultTemplates()}
}

type configMapTemplates struct {
	opts     ConfigMapTemplatesOptions
	embedded Templates
}

// noDeepCopy: the ConfigMap is only read, so the cache's copy is shared
// instead of deep-copied on every admission request.
var noDeepCopy = &client.GetOptions{UnsafeDisableDeepCopy: new(true)}

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

// TemplateData is what a template sees. It holds nothing pod-specific: a
// template is rendered once per revision.
type TemplateData struct {
	// Revision is the revision being injected, with defaults applied.
	Revision RevisionData
	// MeshNamespace is where the control planes run (istio-system).
	MeshNamespace string
	// Values are the injector's knobs (clusterID, meshID, trustDomain, and
	// whatever InjectorOptions.Values adds).
	Values map[string]string
}

// RevisionData is the revision as a template sees it.
type RevisionData struct {
	// Name of the revision (1-23-6).
	Name string
	// Version of the revision (1.23.6).
	Version string
	// ProxyImage is the sidecar image, defaulted to <ProxyImageRepo>:<Version>.
	ProxyImage string
	// DiscoveryAddress of the control plane, defaulted to
	// istiod-<name>.<mesh namespace>.svc:15012.
	DiscoveryAddress string
}

// Fragment is a rendered template: what injection adds to a pod.
type Fragment struct {
	// Labels set on the pod unless it already has them.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations set on the pod unless it already has them.
	Annotations map[string]string `json:"annotations,omitempty"`
	// InitContainers are put in front of the pod's init containers.
	InitContainers []corev1.Container `json:"initContainers,omitempty"`
	// Containers are appended (sidecar) or, for the gateway template, the one
	// container is applied to the gateway's container.
	Containers []corev1.Container `json:"containers,omitempty"`
	// Volumes are appended.
	Volumes []corev1.Volume `json:"volumes,omitempty"`
}

// podEnvSentinel marks, in the pre-marshalled istio-proxy container, where
// the per-pod env vars are spliced in.
const podEnvSentinel = "__MESHREV_POD_ENV__"

// proxyContainerName is the container that receives the per-pod env vars and,
// for gateways, the container whose image is replaced.
const proxyContainerName = "istio-proxy"

// rendered is one template of one revision, rendered and pre-marshalled.
type rendered struct {
	frag Fragment
	// initJSON and containerJSON are the marshalled init containers and
	// containers; for the container named istio-proxy, proxyHead/proxyTail
	// surround the place where per-pod env entries go.
	initJSON      [][]byte
	containerJSON [][]byte
	proxyIndex    int // index in frag.Containers of istio-proxy, or -1
	proxyHead     []byte
	proxyTail     []byte
	volumeJSON    [][]byte
	// envJSON/mountJSON are, for the gateway template, the marshalled env vars
	// and volume mounts of the one container, by name.
	envJSON   []namedJSON
	mountJSON []namedJSON
	imageJSON []byte
	labels    []kvJSON
	annots    []kvJSON
	// names of what is added, for the status annotation
	initNames, containerNames, volumeNames []string
}

type namedJSON struct {
	name string
	json []byte
}

// kvJSON is a label or annotation with its patch path and value pre-encoded.
type kvJSON struct {
	key   string
	raw   string // the value
	path  []byte // JSON string of /metadata/labels/<escaped key>
	value []byte // JSON string of raw
}

// kv builds a kvJSON; prefix is /metadata/labels/ or /metadata/annotations/.
func kv(prefix, key, value string) kvJSON {
	return kvJSON{key: key, raw: value, path: appendJSONString(nil, prefix+escapePointer(key)), value: appendJSONString(nil, value)}
}

// revisionTemplates is the rendered pair of one revision.
type revisionTemplates struct {
	sidecar, gateway *rendered
}

func funcMap() template.FuncMap {
	return template.FuncMap{
		"quote": func(s string) (string, error) {
			b, err := json.Marshal(s)
			return string(b), err
		},
		"toJSON": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, errors.New("dict wants key/value pairs")
			}
			m := make(map[string]any, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, fmt.Errorf("dict key %v is not a string", kv[i])
				}
				m[k] = kv[i+1]
			}
			return m, nil
		},
	}
}

// renderTemplate parses, executes and decodes one template into a Fragment,
// checking what injection relies on.
func renderTemplate(name, text string, data *TemplateData, gateway bool) (*rendered, error) {
	tmpl, err := template.New(name).Funcs(funcMap()).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse %s template: %w", name, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render %s template: %w", name, err)
	}
	var frag Fragment
	if err := yaml.UnmarshalStrict(buf.Bytes(), &frag); err != nil {
		return nil, fmt.Errorf("%s template does not render to initContainers/containers/volumes/labels/annotations: %w", name, err)
	}
	if err := checkFragment(name, &frag, gateway); err != nil {
		return nil, err
	}
	return prepare(&frag, gateway)
}

func checkFragment(name string, f *Fragment, gateway bool) error {
	var errs []string
	seen := map[string]bool{}
	check := func(kind, n string) {
		if msgs := validation.IsDNS1123Label(n); len(msgs) > 0 {
			errs = append(errs, fmt.Sprintf("%s name %q: %s", kind, n, strings.Join(msgs, "; ")))
		}
		if seen[kind+"/"+n] {
			errs = append(errs, fmt.Sprintf("%s %q appears twice", kind, n))
		}
		seen[kind+"/"+n] = true
	}
	for _, c := range f.InitContainers {
		check("init container", c.Name)
	}
	for _, c := range f.Containers {
		check("container", c.Name)
		if c.Image == "" {
			errs = append(errs, fmt.Sprintf("container %q has no image", c.Name))
		}
	}
	for _, v := range f.Volumes {
		check("volume", v.Name)
	}
	for k := range f.Labels {
		if meshrevKey(k) {
			errs = append(errs, fmt.Sprintf("label %q is set by meshrev itself, not by a template", k))
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Sprintf("label %q: %s", k, strings.Join(msgs, "; ")))
		}
	}
	for k := range f.Annotations {
		if meshrevKey(k) {
			errs = append(errs, fmt.Sprintf("annotation %q is set by meshrev itself, not by a template", k))
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Sprintf("annotation %q: %s", k, strings.Join(msgs, "; ")))
		}
	}
	if gateway && len(f.Containers) != 1 {
		errs = append(errs, fmt.Sprintf("the gateway template must have exactly one container (applied to the gateway's container), it has %d", len(f.Containers)))
	}
	if !gateway && len(f.Containers) == 0 {
		errs = append(errs, "the sidecar template adds no container")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s template: %s", name, strings.Join(errs, ", "))
	}
	return nil
}

// prepare pre-marshals everything the patch needs, so that a request only
// concatenates bytes.
func prepare(f *Fragment, gateway bool) (*rendered, error) {
	r := &rendered{frag: *f, proxyIndex: -1}
	for _, c := range f.InitContainers {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		r.initJSON = append(r.initJSON, b)
		r.initNames = append(r.initNames, c.Name)
	}
	for i, c := range f.Containers {
		r.containerNames = append(r.containerNames, c.Name)
		if gateway {
			for _, e := range c.Env {
				b, err := json.Marshal(e)
				if err != nil {
					return nil, err
				}
				r.envJSON = append(r.envJSON, namedJSON{e.Name, b})
			}
			for _, m := range c.VolumeMounts {
				b, err := json.Marshal(m)
				if err != nil {
					return nil, err
				}
				r.mountJSON = append(r.mountJSON, namedJSON{m.Name, b})
			}
			r.imageJSON, _ = json.Marshal(c.Image)
			continue
		}
		if c.Name == proxyContainerName {
			c.Env = append(c.Env[:len(c.Env):len(c.Env)], corev1.EnvVar{Name: podEnvSentinel})
			b, err := json.Marshal(c)
			if err != nil {
				return nil, err
			}
			marker := []byte(`{"name":"` + podEnvSentinel + `"}`)
			at := bytes.Index(b, marker)
			if at < 0 {
				return nil, errors.New("internal error: per-pod env marker lost in marshalled istio-proxy container")
			}
			r.proxyIndex = i
			r.proxyHead, r.proxyTail = b[:at], b[at+len(marker):]
			r.containerJSON = append(r.containerJSON, nil)
			continue
		}
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		r.containerJSON = append(r.containerJSON, b)
	}
	for _, v := range f.Volumes {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		r.volumeJSON = append(r.volumeJSON, b)
		r.volumeNames = append(r.volumeNames, v.Name)
	}
	r.labels = kvs("/metadata/labels/", f.Labels)
	r.annots = kvs("/metadata/annotations/", f.Annotations)
	return r, nil
}

func kvs(prefix string, m map[string]string) []kvJSON {
	out := make([]kvJSON, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, kv(prefix, k, m[k]))
	}
	return out
}

// templateKey identifies what a rendering depends on: a change of any field
// (or of the template text) renders again.
type templateKey struct {
	name, version, proxyImage, discovery, templatesCM string
	text                                              Templates
}

type cacheEntry struct {
	key  templateKey
	tmpl *revisionTemplates
	err  error
	// good is the last successful render of this revision and goodKey what
	// it was rendered from: injection falls back to it while the current
	// templates fail.
	good    *revisionTemplates
	goodKey templateKey
	// reported is the last template error logged for this revision, so that
	// a broken ConfigMap is logged once per distinct error, not per pod.
	reported string
}

// templateCache renders each revision's templates once and keeps the result
// until the revision or its template text changes, and keeps the last good
// render of each revision.
type templateCache struct {
	mu      sync.RWMutex
	entries map[string]*cacheEntry
}

func (c *templateCache) get(key templateKey, render func() (*revisionTemplates, error)) (*revisionTemplates, error) {
	c.mu.RLock()
	e := c.entries[key.name]
	c.mu.RUnlock()
	if e != nil && e.key == key {
		return e.tmpl, e.err
	}
	t, err := render()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*cacheEntry{}
	}
	// A failure is cached too: a broken template is reported once per change,
	// not rendered again for every pod.
	ne := &cacheEntry{key: key, tmpl: t, err: err}
	if old := c.entries[key.name]; old != nil {
		ne.good, ne.goodKey, ne.reported = old.good, old.goodKey, old.reported
	}
	if err == nil {
		ne.good, ne.goodKey = t, key
	}
	c.entries[key.name] = ne
	return t, err
}

// lastGood returns the last good render of the revision name and what it
// was rendered from.
func (c *templateCache) lastGood(name string) (templateKey, *revisionTemplates, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.entries[name]
	if e == nil || e.good == nil {
		return templateKey{}, nil, false
	}
	return e.goodKey, e.good, true
}

// setGood records a good render of key made outside get (the last good text
// rendered again for changed revision fields).
func (c *templateCache) setGood(key templateKey, t *revisionTemplates) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key.name]; e != nil {
		e.good, e.goodKey = t, key
	}
}

// firstReport says whether msg is a new error for the revision name (to be
// logged) and remembers it.
func (c *templateCache) firstReport(name, msg string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*cacheEntry{}
	}
	e := c.entries[name]
	if e == nil {
		e = &cacheEntry{key: templateKey{name: "\x00unrendered"}}
		c.entries[name] = e
	}
	if e.reported == msg {
		return false
	}
	e.reported = msg
	return true
}

// healed forgets the reported error of the revision name once its templates
// render again, so that a later breakage is logged again.
func (c *templateCache) healed(name string) {
	c.mu.RLock()
	e := c.entries[name]
	reported := e != nil && e.reported != ""
	c.mu.RUnlock()
	if !reported {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[name]; e != nil {
		e.reported = ""
	}
}

// prune forgets revisions that are no longer published.
func (c *templateCache) prune(keep func(name string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.entries {
		if !keep(name) {
			delete(c.entries, name)
		}
	}
}
