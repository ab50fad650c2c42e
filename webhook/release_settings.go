// Release settings: the proxy image a helm or external control plane's own
// release installed, so the sidecar matches the control plane that serves it.

package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// ReleaseSettings reads what a revision's control-plane release installed.
// It is called on the admission hot path, so it must answer from memory.
type ReleaseSettings interface {
	// ProxyImage returns the sidecar image the release of revision rev
	// configured, and false when the release says none (or has no
	// istio-sidecar-injector-<rev> ConfigMap).
	ProxyImage(ctx context.Context, rev string) (string, bool, error)
}

// InjectorConfigMapName is the ConfigMap of Istio's istiod chart that holds a
// revision's injection values: istio-sidecar-injector-<rev>.
func InjectorConfigMapName(rev string) string { return "istio-sidecar-injector-" + rev }

// CacheReleaseSettings reads the istio-sidecar-injector-<rev> ConfigMaps of
// the mesh namespace from a cache, parsing each version of a ConfigMap once.
type CacheReleaseSettings struct {
	reader    client.Reader
	namespace string

	mu     sync.Mutex
	parsed map[string]parsedImage // by ConfigMap name
}

type parsedImage struct {
	resourceVersion string
	image           string
	ok              bool
}

// NewReleaseSettings reads the ConfigMaps of meshNamespace through reader
// (the manager's cache).
func NewReleaseSettings(reader client.Reader, meshNamespace string) *CacheReleaseSettings {
	return &CacheReleaseSettings{reader: reader, namespace: meshNamespace, parsed: map[string]parsedImage{}}
}

// ProxyImage implements ReleaseSettings.
func (s *CacheReleaseSettings) ProxyImage(ctx context.Context, rev string) (string, bool, error) {
	name := InjectorConfigMapName(rev)
	var cm corev1.ConfigMap
	if err := s.reader.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: name}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("read ConfigMap %s/%s: %w", s.namespace, name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.parsed[name]; ok && p.resourceVersion == cm.ResourceVersion {
		return p.image, p.ok, nil
	}
	image, ok, err := ProxyImageFromValues(cm.Data["values"])
	if err != nil {
		return "", false, fmt.Errorf("ConfigMap %s/%s: %w", s.namespace, name, err)
	}
	s.parsed[name] = parsedImage{resourceVersion: cm.ResourceVersion, image: image, ok: ok}
	return image, ok, nil
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
	var v struct {
		Global struct {
			Hub     string `json:"hub"`
			Tag     any    `json:"tag"`
			Variant string `json:"variant"`
			Proxy   struct {
				Image string `json:"image"`
			} `json:"proxy"`
		} `json:"global"`
	}
	if err := json.Unmarshal([]byte(values), &v); err != nil {
		return "", false, fmt.Errorf("injection values are not JSON: %w", err)
	}
	g := v.Global
	if strings.Contains(g.Proxy.Image, "/") {
		return g.Proxy.Image, true, nil
	}
	tag := ""
	switch t := g.Tag.(type) {
	case string:
		tag = t
	case float64:
		tag = fmt.Sprint(t)
	}
	if g.Hub == "" || tag == "" {
		return "", false, nil
	}
	image := g.Proxy.Image
	if image == "" {
		image = "proxyv2"
	}
	out := g.Hub + "/" + image + ":" + tag
	if g.Variant != "" {
		out += "-" + g.Variant
	}
	return out, true, nil
}

// releaseProxyImage sets rd's proxy image from rev's release when rev names
// none itself and its control plane comes from a release (helm, external).
func (i *Injector) releaseProxyImage(ctx context.Context, rev *v1alpha1.Revision, rd *RevisionData) error {
	if i.opts.ReleaseSettings == nil || rev.ProxyImage != "" || rev.ControlPlane == nil || rev.ControlPlane.Image != "" {
		return nil
	}
	image, ok, err := i.opts.ReleaseSettings.ProxyImage(ctx, rev.Name)
	if err != nil {
		return fmt.Errorf("proxy image of revision %s: %w", rev.Name, err)
	}
	if ok {
		rd.ProxyImage = image
	}
	return nil
}
