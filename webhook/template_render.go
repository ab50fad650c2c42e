// Template rendering: what a template sees, what it renders to, and the
// checks a rendering must pass before injection relies on it.

package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/template"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

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
	// Proxy are the sidecar's settings: what the revision's release
	// installed (helm, external control planes), else Istio's chart defaults.
	Proxy ProxySettings
	// proxyKey is Proxy's key (the template cache's).
	proxyKey string
	// CNI is set when the revision's trafficInterception is CNI: the
	// template injects istio-validation instead of istio-init.
	CNI bool
}

// Fragment is a rendered template: what injection adds to a pod.
type Fragment struct {
	// Labels set on the pod unless it already has them.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations set on the pod unless it already has them.
	Annotations map[string]string `json:"annotations,omitempty"`
	// InitContainers are put in front of the pod's init containers.
	InitContainers []corev1.Container `json:"initContainers,omitempty"`
	// Containers are appended; a container of the pod with the same name
	// (a gateway's istio-proxy with image: auto) is merged over it, as
	// Istio merges it.
	Containers []corev1.Container `json:"containers,omitempty"`
	// Volumes are put in front of the pod's.
	Volumes []corev1.Volume `json:"volumes,omitempty"`
	// SecurityContext is merged over the pod's security context (its fields
	// win, as the fields of Istio's template do): the gateway template sets
	// the sysctl that lets the proxy bind ports below 1024.
	SecurityContext *corev1.PodSecurityContext `json:"securityContext,omitempty"`
}

// revisionTemplates is the rendered pair of one revision.
type revisionTemplates struct {
	sidecar, gateway *rendered
}

// CheckTemplate parses and renders text as the template key
// (revisions.TemplateSidecar or revisions.TemplateGateway) of rev, exactly as
// injection would (the injector's mesh namespace, proxy image repository and
// values, the same checks of the result), and returns why injection could not
// use it, or nil. It does not touch the injection cache: the templates
// validator judges an edit of a templates ConfigMap with it before the edit
// is written.
func (i *Injector) CheckTemplate(rev *v1alpha1.Revision, key, text string) error {
	if key != revisions.TemplateSidecar && key != revisions.TemplateGateway {
		return fmt.Errorf("no template %q: meshrev has only %q and %q", key, revisions.TemplateSidecar, revisions.TemplateGateway)
	}
	_, err := renderTemplate(key, text, i.templateData(i.revisionData(rev)))
	return err
}

// funcMap is the functions a template may call besides text/template's own.
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
func renderTemplate(name, text string, data *TemplateData) (*rendered, error) {
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
	if err := checkFragment(name, &frag); err != nil {
		return nil, err
	}
	return prepare(&frag)
}

// checkFragment refuses what injection cannot apply correctly: names that
// are no DNS labels or repeat, a container without image, labels and
// annotations that are no qualified names or that meshrev sets itself, and a
// gateway template that is not exactly one container.
func checkFragment(name string, f *Fragment) error {
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
	if len(f.Containers) == 0 {
		errs = append(errs, fmt.Sprintf("the %s template adds no container", name))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s template: %s", name, strings.Join(errs, ", "))
	}
	return nil
}
