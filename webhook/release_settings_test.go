package webhook

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func TestProxyImageFromValues(t *testing.T) {
	cases := map[string]struct {
		values  string
		want    string
		wantOK  bool
		wantErr string
	}{
		"hub and tag of the release, Istio's default image name": {
			values: `{"global":{"hub":"mirror.example/istio","tag":"1.23.6","proxy":{"image":""}}}`, want: "mirror.example/istio/proxyv2:1.23.6", wantOK: true,
		},
		"an image name of the release": {
			values: `{"global":{"hub":"docker.io/istio","tag":"1.23.6","proxy":{"image":"proxyv2-custom"}}}`, want: "docker.io/istio/proxyv2-custom:1.23.6", wantOK: true,
		},
		"a variant is appended to the tag": {
			values: `{"global":{"hub":"docker.io/istio","tag":"1.23.6","variant":"distroless"}}`, want: "docker.io/istio/proxyv2:1.23.6-distroless", wantOK: true,
		},
		"a full image reference wins over hub and tag": {
			values: `{"global":{"hub":"docker.io/istio","tag":"1.23.6","proxy":{"image":"registry.example/envoy:7"}}}`, want: "registry.example/envoy:7", wantOK: true,
		},
		"a numeric tag": {
			values: `{"global":{"hub":"docker.io/istio","tag":1.23}}`, want: "docker.io/istio/proxyv2:1.23", wantOK: true,
		},
		"no hub says nothing":                   {values: `{"global":{"tag":"1.23.6"}}`},
		"no values say nothing":                 {values: ""},
		"values that are not JSON are an error": {values: `{`, wantErr: "injection values are not JSON"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok, err := ProxyImageFromValues(c.values)
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.wantOK, ok)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestReleaseFromConfig(t *testing.T) {
	withResources := func(p ProxySettings, reqCPU, reqMem, limCPU, limMem string) ProxySettings {
		p.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(reqCPU), corev1.ResourceMemory: resource.MustParse(reqMem)},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(limCPU), corev1.ResourceMemory: resource.MustParse(limMem)},
		}
		return p
	}
	cases := map[string]struct {
		values, mesh string
		want         Release
		wantErr      string
	}{
		"a release that says nothing keeps Istio's chart defaults": {
			want: Release{Proxy: DefaultProxySettings()},
		},
		"Istio's chart defaults as the istiod chart writes them give the defaults": {
			values: `{"global":{"hub":"docker.io/istio","tag":"1.23.6","proxy":{"image":"proxyv2","logLevel":"warning","componentLogLevel":"misc:error","privileged":false,
				"resources":{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"cpu":"2000m","memory":"1024Mi"}}}}}`,
			mesh: "defaultConfig:\n  discoveryAddress: istiod-1-23-6.istio-system.svc:15012\n",
			want: Release{Image: "docker.io/istio/proxyv2:1.23.6", Proxy: func() ProxySettings {
				p := DefaultProxySettings()
				p.DefaultConfig = map[string]any{"discoveryAddress": "istiod-1-23-6.istio-system.svc:15012"}
				return p
			}()},
		},
		"global.proxy values of the release reach the sidecar": {
			values: `{"global":{"proxy":{"logLevel":"debug","componentLogLevel":"misc:info","privileged":true,
				"resources":{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"cpu":"1","memory":"512Mi"}}}}}`,
			want: Release{Proxy: withResources(ProxySettings{LogLevel: "debug", ComponentLogLevel: "misc:info", Privileged: true}, "50m", "64Mi", "1", "512Mi")},
		},
		"the mesh config's defaultConfig.proxyMetadata becomes the sidecar's env": {
			mesh: "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n    ISTIO_META_DNS_AUTO_ALLOCATE: \"true\"\n",
			want: Release{Proxy: func() ProxySettings {
				p := DefaultProxySettings()
				p.ProxyMetadata = map[string]string{"ISTIO_META_DNS_CAPTURE": "true", "ISTIO_META_DNS_AUTO_ALLOCATE": "true"}
				p.DefaultConfig = map[string]any{"proxyMetadata": map[string]any{"ISTIO_META_DNS_CAPTURE": "true", "ISTIO_META_DNS_AUTO_ALLOCATE": "true"}}
				return p
			}()},
		},
		"global.proxy.holdApplicationUntilProxyStarts of the release holds the pods": {
			values: `{"global":{"proxy":{"holdApplicationUntilProxyStarts":true}}}`,
			want: Release{Proxy: func() ProxySettings {
				p := DefaultProxySettings()
				p.HoldApplicationUntilProxyStarts = true
				return p
			}()},
		},
		"injection values that are not JSON are an error": {values: `{`, wantErr: "injection values are not JSON"},
		"a mesh config that is not YAML is an error":      {mesh: "defaultConfig: [", wantErr: "mesh config is not YAML"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ReleaseFromConfig(c.values, c.mesh)
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want.Image, got.Image)
			assert.Equal(t, c.want.Proxy.key(), got.Proxy.key(), "settings (compared as the cache's key: quantities canonical)")
			assert.Equal(t, got.Proxy.key(), got.proxyKey, "the key is computed with the settings")
		})
	}
}

// releaseMap is a ReleaseSettings answering from a map, by revision.
type releaseMap map[string]Release

func (m releaseMap) Settings(_ context.Context, rev string) (Release, bool, error) {
	r, ok := m[rev]
	return r, ok, nil
}

func TestInjectionFollowsTheRevisionsRelease(t *testing.T) {
	rel, err := ReleaseFromConfig(`{"global":{"hub":"mirror.example/istio","tag":"1.23.6","proxy":{"logLevel":"debug","privileged":true,"holdApplicationUntilProxyStarts":true,
		"resources":{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"cpu":"1","memory":"512Mi"}}}}}`,
		"defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n")
	require.NoError(t, err)
	helm := &v1alpha1.ControlPlane{Helm: &v1alpha1.HelmControlPlane{}}
	cases := map[string]struct {
		rev            v1alpha1.Revision
		wantImage      string
		wantLogLevel   string
		wantCPU        string
		wantPrivileged bool
		wantDNSCapture bool
		wantHold       bool
	}{
		"a helm revision's sidecar follows its release": {
			rev:       v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ControlPlane: helm},
			wantImage: "mirror.example/istio/proxyv2:1.23.6", wantLogLevel: "debug", wantCPU: "50m", wantPrivileged: true, wantDNSCapture: true, wantHold: true,
		},
		"the revision's own proxyImage wins over the release's; the rest follows the release": {
			rev:       v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ProxyImage: "own.example/proxyv2:1.23.6", ControlPlane: helm},
			wantImage: "own.example/proxyv2:1.23.6", wantLogLevel: "debug", wantCPU: "50m", wantPrivileged: true, wantDNSCapture: true, wantHold: true,
		},
		"an image control plane has no release: Istio's chart defaults": {
			rev:       v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.23.6"}},
			wantImage: "docker.io/istio/proxyv2:1.23.6", wantLogLevel: "warning", wantCPU: "100m",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			spec := &v1alpha1.MeshSpec{Revisions: []v1alpha1.Revision{c.rev}, Stable: c.rev.Name}
			state := &fixedState{mesh: meshOf(spec), namespaces: map[string]map[string]string{"on": {"istio-injection": "enabled"}}}
			inj := newTestInjector(t, state, func(o *InjectorOptions) { o.ReleaseSettings = releaseMap{"1-23-6": rel} })
			_, _, review := serve(t, inj, reviewFor(t, "on", []byte(plainPod)))
			require.NotNil(t, review)
			require.True(t, review.Response.Allowed)
			pod := mustPod(t, applyPatch(t, []byte(plainPod), review.Response.Patch))
			var proxy, init *corev1.Container
			for i := range pod.Spec.Containers {
				if pod.Spec.Containers[i].Name == "istio-proxy" {
					proxy = &pod.Spec.Containers[i]
				}
			}
			for i := range pod.Spec.InitContainers {
				if pod.Spec.InitContainers[i].Name == "istio-init" {
					init = &pod.Spec.InitContainers[i]
				}
			}
			require.NotNil(t, proxy)
			require.NotNil(t, init)
			for _, ctr := range []*corev1.Container{proxy, init} {
				assert.Equal(t, c.wantImage, ctr.Image, ctr.Name)
				assert.Equal(t, c.wantCPU, ctr.Resources.Requests.Cpu().String(), ctr.Name)
				require.NotNil(t, ctr.SecurityContext.Privileged, ctr.Name)
				assert.Equal(t, c.wantPrivileged, *ctr.SecurityContext.Privileged, ctr.Name)
				assert.Equal(t, c.wantPrivileged, *ctr.SecurityContext.AllowPrivilegeEscalation, ctr.Name)
				assert.Equal(t, c.wantDNSCapture, slices.Contains(ctr.Env, corev1.EnvVar{Name: "ISTIO_META_DNS_CAPTURE", Value: "true"}), "%s env %v", ctr.Name, ctr.Env)
			}
			assert.Contains(t, proxy.Args, "--proxyLogLevel="+c.wantLogLevel)
			// global.proxy.holdApplicationUntilProxyStarts: the proxy first,
			// started before the app (pilot-agent wait).
			assert.Equal(t, c.wantHold, pod.Spec.Containers[0].Name == "istio-proxy", "istio-proxy first")
			assert.Equal(t, c.wantHold, proxy.Lifecycle != nil && proxy.Lifecycle.PostStart != nil, "postStart pilot-agent wait")
		})
	}
}

func TestCacheReleaseSettingsReadsBothConfigMaps(t *testing.T) {
	injector := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-sidecar-injector-1-23-6"},
		Data: map[string]string{"values": `{"global":{"hub":"mirror.example/istio","tag":"1.23.6","proxy":{"logLevel":"debug"}}}`}}
	mesh := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-1-23-6"},
		Data: map[string]string{"mesh": "defaultConfig:\n  proxyMetadata:\n    A: b\n"}}
	c := fake.NewClientBuilder().WithObjects(injector, mesh).Build()
	s := NewReleaseSettings(c, "istio-system")
	ctx := context.Background()

	r, ok, err := s.Settings(ctx, "1-23-6")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "mirror.example/istio/proxyv2:1.23.6", r.Image)
	assert.Equal(t, "debug", r.Proxy.LogLevel)
	assert.Equal(t, map[string]string{"A": "b"}, r.Proxy.ProxyMetadata)

	// A new version of either ConfigMap is parsed again.
	mesh.Data["mesh"] = "defaultConfig:\n  proxyMetadata:\n    A: c\n"
	require.NoError(t, c.Update(ctx, mesh))
	r, _, err = s.Settings(ctx, "1-23-6")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"A": "c"}, r.Proxy.ProxyMetadata)

	_, ok, err = s.Settings(ctx, "1-22-6")
	require.NoError(t, err)
	assert.False(t, ok, "a revision without a release has no settings")
}
