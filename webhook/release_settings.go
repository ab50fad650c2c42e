// Release settings: what a helm or external control plane's own release
// installed for its sidecars (the proxy image, Istio's global.proxy values
// and the mesh config's defaultConfig), so the sidecar matches the control
// plane that serves it.

package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// ReleaseSettings reads what a revision's control-plane release installed.
// It is called on the admission hot path, so it must answer from memory.
type ReleaseSettings interface {
	// Settings returns the sidecar settings the release of revision rev
	// installed (istio-sidecar-injector-<rev> and istio-<rev>), and false
	// when it has none of those ConfigMaps.
	Settings(ctx context.Context, rev string) (Release, bool, error)
}

// Release is what a revision's release says about its sidecars.
type Release struct {
	// Image is the sidecar image ("" when the values name no hub and tag).
	Image string
	// Proxy are the sidecar settings, Istio's chart defaults where the
	// release sets nothing.
	Proxy ProxySettings
	// proxyKey is Proxy's key, computed once per parse.
	proxyKey string
}

// ProxySettings are the sidecar's settings a template sees beside its image:
// Istio's global.proxy values and the mesh config's defaultConfig.
type ProxySettings struct {
	// LogLevel is Envoy's log level (--proxyLogLevel), global.proxy.logLevel.
	LogLevel string `json:"logLevel"`
	// ComponentLogLevel is Envoy's per-component log level
	// (--proxyComponentLogLevel), global.proxy.componentLogLevel.
	ComponentLogLevel string `json:"componentLogLevel"`
	// Privileged runs istio-proxy and istio-init privileged, with privilege
	// escalation, global.proxy.privileged.
	Privileged bool `json:"privileged"`
	// HoldApplicationUntilProxyStarts starts istio-proxy before the app
	// containers in every pod, global.proxy.holdApplicationUntilProxyStarts
	// (Istio ORs it with the ProxyConfig's field).
	HoldApplicationUntilProxyStarts bool `json:"holdApplicationUntilProxyStarts,omitempty"`
	// Resources of istio-proxy and istio-init, global.proxy.resources.
	Resources corev1.ResourceRequirements `json:"resources"`
	// ProxyMetadata are env vars of istio-proxy and istio-init, the mesh
	// config's defaultConfig.proxyMetadata.
	ProxyMetadata map[string]string `json:"proxyMetadata,omitempty"`
	// DefaultConfig is the mesh config's defaultConfig as written: the base
	// of PROXY_CONFIG (proxyconfig.go).
	DefaultConfig map[string]any `json:"defaultConfig,omitempty"`
}

// DefaultProxySettings are Istio's chart defaults (values.yaml of the istiod
// chart, an empty mesh defaultConfig): what a revision without a release
// gets, and what a release that sets nothing gets.
func DefaultProxySettings() ProxySettings {
	return ProxySettings{
		LogLevel:          "warning",
		ComponentLogLevel: "misc:error",
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		},
	}
}

// defaultProxy and its key are computed once: every admission of a
// revision without a release uses them.
var (
	defaultProxy    = DefaultProxySettings()
	defaultProxyKey = defaultProxy.key()
)

// key is the settings as a comparable string (the template cache's key).
func (p ProxySettings) key() string {
	b, _ := json.Marshal(p) // maps are written sorted
	return string(b)
}

// InjectorConfigMapName is the ConfigMap of Istio's istiod chart that holds a
// revision's injection values: istio-sidecar-injector-<rev>.
func InjectorConfigMapName(rev string) string { return "istio-sidecar-injector-" + rev }

// MeshConfigMapName is the ConfigMap of Istio's istiod chart that holds a
// revision's mesh config (key "mesh"): istio-<rev>.
func MeshConfigMapName(rev string) string { return "istio-" + rev }

// CacheReleaseSettings reads the istio-sidecar-injector-<rev> and
// istio-<rev> ConfigMaps of the mesh namespace from a cache, parsing each
// version of a pair once.
type CacheReleaseSettings struct {
	reader    client.Reader
	namespace string

	mu     sync.Mutex
	parsed map[string]parsedRelease // by revision
}

type parsedRelease struct {
	versions string // resourceVersions of the two ConfigMaps
	release  Release
	ok       bool
}

// NewReleaseSettings reads the ConfigMaps of meshNamespace through reader
// (the manager's cache).
func NewReleaseSettings(reader client.Reader, meshNamespace string) *CacheReleaseSettings {
	return &CacheReleaseSettings{reader: reader, namespace: meshNamespace, parsed: map[string]parsedRelease{}}
}

// Settings implements ReleaseSettings.
func (s *CacheReleaseSettings) Settings(ctx context.Context, rev string) (Release, bool, error) {
	var injector, mesh corev1.ConfigMap
	hasInjector, err := s.get(ctx, InjectorConfigMapName(rev), &injector)
	if err != nil {
		return Release{}, false, err
	}
	hasMesh, err := s.get(ctx, MeshConfigMapName(rev), &mesh)
	if err != nil {
		return Release{}, false, err
	}
	if !hasInjector && !hasMesh {
		return Release{}, false, nil
	}
	versions := injector.ResourceVersion + "/" + mesh.ResourceVersion
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.parsed[rev]; ok && p.versions == versions {
		return p.release, p.ok, nil
	}
	r, err := ReleaseFromConfig(injector.Data["values"], mesh.Data["mesh"])
	if err != nil {
		return Release{}, false, fmt.Errorf("ConfigMaps %s and %s of %s: %w", InjectorConfigMapName(rev), MeshConfigMapName(rev), s.namespace, err)
	}
	s.parsed[rev] = parsedRelease{versions: versions, release: r, ok: true}
	return r, true, nil
}

func (s *CacheReleaseSettings) get(ctx context.Context, name string, cm *corev1.ConfigMap) (bool, error) {
	// Read only: the cache's copy is shared, not deep-copied per admission.
	if err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, cm, noDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("read ConfigMap %s/%s: %w", s.namespace, name, err)
	}
	return true, nil
}

// injectionValues is the part of the istiod chart's injection values
// (istio-sidecar-injector-<rev>, key "values", JSON) injection follows.
type injectionValues struct {
	Global struct {
		Hub     string `json:"hub"`
		Tag     any    `json:"tag"`
		Variant string `json:"variant"`
		Proxy   struct {
			Image             string                       `json:"image"`
			LogLevel          string                       `json:"logLevel"`
			ComponentLogLevel string                       `json:"componentLogLevel"`
			Privileged        *bool                        `json:"privileged"`
			Hold              *bool                        `json:"holdApplicationUntilProxyStarts"`
			Resources         *corev1.ResourceRequirements `json:"resources"`
		} `json:"proxy"`
	} `json:"global"`
}

// meshConfig is the part of a mesh config (istio-<rev>, key "mesh", YAML)
// injection follows.
type meshConfig struct {
	DefaultConfig struct {
		ProxyMetadata map[string]string `json:"proxyMetadata"`
	} `json:"defaultConfig"`
}

// ReleaseFromConfig reads a release's sidecar settings from the injection
// values (JSON) and the mesh config (YAML) of Istio's istiod chart; either
// may be empty. Settings neither sets keep Istio's chart defaults.
func ReleaseFromConfig(values, mesh string) (r Release, err error) {
	r = Release{Proxy: DefaultProxySettings()}
	defer func() { r.proxyKey = r.Proxy.key() }()
	if strings.TrimSpace(values) != "" {
		var v injectionValues
		if err := json.Unmarshal([]byte(values), &v); err != nil {
			return Release{}, fmt.Errorf("injection values are not JSON: %w", err)
		}
		r.Image = proxyImage(v)
		p := v.Global.Proxy
		if p.LogLevel != "" {
			r.Proxy.LogLevel = p.LogLevel
		}
		if p.ComponentLogLevel != "" {
			r.Proxy.ComponentLogLevel = p.ComponentLogLevel
		}
		if p.Privileged != nil {
			r.Proxy.Privileged = *p.Privileged
		}
		if p.Hold != nil {
			r.Proxy.HoldApplicationUntilProxyStarts = *p.Hold
		}
		if p.Resources != nil {
			// As Istio's template: the values' resources as they are
			// (toYaml), no merge with the defaults.
			r.Proxy.Resources = *p.Resources
		}
	}
	if strings.TrimSpace(mesh) != "" {
		var m meshConfig
		if err := yaml.Unmarshal([]byte(mesh), &m); err != nil {
			return Release{}, fmt.Errorf("mesh config is not YAML: %w", err)
		}
		if len(m.DefaultConfig.ProxyMetadata) > 0 {
			r.Proxy.ProxyMetadata = maps.Clone(m.DefaultConfig.ProxyMetadata)
		}
		var raw struct {
			DefaultConfig map[string]any `json:"defaultConfig"`
		}
		if err := yaml.Unmarshal([]byte(mesh), &raw); err != nil {
			return Release{}, fmt.Errorf("mesh config is not YAML: %w", err)
		}
		if len(raw.DefaultConfig) > 0 {
			r.Proxy.DefaultConfig = raw.DefaultConfig
		}
	}
	return r, nil
}

// ProxyImageFromValues computes the sidecar image from the injection values
// of Istio's istiod chart (key "values" of istio-sidecar-injector-<rev>) as
// Istio's sidecar template does: global.proxy.image when it names a
// repository (contains "/"), else <global.hub>/<global.proxy.image, default
// proxyv2>:<global.tag>[-<global.variant>]. False when hub or tag is unset.
func ProxyImageFromValues(values string) (string, bool, error) {
	if strings.TrimSpace(values) == "" {
		return "", false, nil
	}
	var v injectionValues
	if err := json.Unmarshal([]byte(values), &v); err != nil {
		return "", false, fmt.Errorf("injection values are not JSON: %w", err)
	}
	image := proxyImage(v)
	return image, image != "", nil
}

func proxyImage(v injectionValues) string {
	g := v.Global
	if strings.Contains(g.Proxy.Image, "/") {
		return g.Proxy.Image
	}
	tag := ""
	switch t := g.Tag.(type) {
	case string:
		tag = t
	case float64:
		tag = fmt.Sprint(t)
	}
	if g.Hub == "" || tag == "" {
		return ""
	}
	image := g.Proxy.Image
	if image == "" {
		image = "proxyv2"
	}
	out := g.Hub + "/" + image + ":" + tag
	if g.Variant != "" {
		out += "-" + g.Variant
	}
	return out
}

// releaseSettings sets rd's proxy image and settings from rev's release when
// its control plane comes from a release (helm, external). A revision's own
// proxyImage wins over the release's.
func (i *Injector) releaseSettings(ctx context.Context, rev *v1alpha1.Revision, rd *RevisionData) error {
	if i.opts.ReleaseSettings == nil || rev.ControlPlane == nil || rev.ControlPlane.Image != "" {
		return nil
	}
	r, ok, err := i.opts.ReleaseSettings.Settings(ctx, rev.Name)
	if err != nil {
		return fmt.Errorf("release settings of revision %s: %w", rev.Name, err)
	}
	if !ok {
		return nil
	}
	if rev.ProxyImage == "" && r.Image != "" {
		rd.ProxyImage = r.Image
	}
	rd.Proxy, rd.proxyKey = r.Proxy, r.proxyKey
	return nil
}
