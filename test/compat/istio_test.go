package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/kube/multicluster"
	istiolog "istio.io/istio/pkg/log"
)

// istioInjector is Istio's own sidecar injector webhook (pkg/kube/inject),
// in-process, with the settings of Istio's default chart (profile empty,
// pilot enabled) rendered from the manifests embedded in the pinned module,
// as Istio's own injection tests load them.
type istioInjector struct {
	mux *http.ServeMux
	// Version is the proxy version of the default chart (global.tag), which
	// meshrev's revision is given too.
	Version string
}

// staticWatcher serves one injection config; Istio's webhook reads its
// config through a Watcher.
type staticWatcher struct {
	cfg    *inject.Config
	values string
}

func (w *staticWatcher) SetHandler(func(*inject.Config, string) error) {}
func (w *staticWatcher) Run(<-chan struct{})                           {}
func (w *staticWatcher) Get() (*inject.Config, string, error)          { return w.cfg, w.values, nil }

// newIstioInjector renders Istio's default charts and starts its webhook for
// revision rev; cni enables the istio-cni component (components.cni.enabled,
// which sets values.pilot.cni.enabled, as Istio's own CNI injection tests do).
func newIstioInjector(t testing.TB, rev string, cni bool) *istioInjector {
	t.Helper()
	for _, s := range istiolog.Scopes() {
		s.SetOutputLevel(istiolog.NoneLevel)
	}
	flags := []string{"profile=empty", "components.pilot.enabled=true"}
	if cni {
		flags = append(flags, "components.cni.enabled=true")
	}
	manifests, _, err := render.GenerateManifest(nil, flags, false, nil, nil)
	require.NoError(t, err, "render Istio's default charts")
	var cfgText, values, meshText string
	for _, set := range manifests {
		for _, o := range set.Manifests {
			if o.GetKind() != "ConfigMap" {
				continue
			}
			data, _ := o.Object["data"].(map[string]any)
			switch o.GetName() {
			case "istio-sidecar-injector":
				cfgText, _ = data["config"].(string)
				values, _ = data["values"].(string)
			case "istio":
				meshText, _ = data["mesh"].(string)
			}
		}
	}
	require.NotEmpty(t, cfgText, "Istio's charts rendered no istio-sidecar-injector ConfigMap")
	cfg, err := inject.UnmarshalConfig([]byte(cfgText))
	require.NoError(t, err)
	mc, err := mesh.ApplyMeshConfig(meshText, mesh.DefaultMeshConfig())
	require.NoError(t, err)
	vc, err := inject.NewValuesConfig(values)
	require.NoError(t, err)

	env := &model.Environment{Watcher: meshwatcher.NewTestWatcher(mc)}
	env.SetPushContext(&model.PushContext{ProxyConfigs: &model.ProxyConfigs{}})
	mux := http.NewServeMux()
	_, err = inject.NewWebhook(inject.WebhookParameters{
		Watcher:      &staticWatcher{cfg: &cfg, values: values},
		Env:          env,
		Mux:          mux,
		Revision:     rev,
		MultiCluster: multicluster.NewFakeController(),
	})
	require.NoError(t, err)
	return &istioInjector{mux: mux, Version: vc.Struct().GetGlobal().GetTag().GetStringValue()}
}

// setNativeSidecars switches Istio between classic and native sidecars: its
// ENABLE_NATIVE_SIDECARS feature (true/false, as a node-version probe would
// decide on a cluster whose kubelets are all ≥ or < 1.33).
func setNativeSidecars(native bool) {
	if native {
		features.EnableNativeSidecars = features.NativeSidecarModeEnabled
	} else {
		features.EnableNativeSidecars = features.NativeSidecarModeDisabled
	}
}

// outcome is what an injector did with one pod.
type outcome struct {
	// Refused is set when the pod was not admitted; Message says why.
	Refused bool
	Message string
	// Pod is the pod after the patch (the input when nothing was patched).
	Pod []byte
}

// review posts an AdmissionReview of a pod CREATE to h and applies the
// answer's patch to the pod.
func review(t testing.TB, h http.Handler, path, namespace string, pod []byte) outcome {
	t.Helper()
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metaAdmissionReview,
		Request: &admissionv1.AdmissionRequest{
			UID:       "5d1f4e7a-3c5b-4a9e-8f2d-1b6c7a8e9f00",
			Kind:      podGVK,
			Resource:  podGVR,
			Namespace: namespace,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: pod},
		},
	})
	require.NoError(t, err)
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return outcome{Refused: true, Message: fmt.Sprintf("HTTP %d: %s", w.Code, w.Body.String())}
	}
	var out admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &out), "answer is not an AdmissionReview: %s", w.Body.String())
	require.NotNil(t, out.Response, "AdmissionReview without response: %s", w.Body.String())
	if !out.Response.Allowed {
		msg := ""
		if out.Response.Result != nil {
			msg = out.Response.Result.Message
		}
		return outcome{Refused: true, Message: msg}
	}
	patched, err := applyPatch(pod, out.Response.Patch)
	if err != nil {
		return outcome{Refused: true, Message: "patch does not apply: " + err.Error()}
	}
	return outcome{Pod: patched}
}

func (i *istioInjector) inject(t testing.TB, namespace string, pod []byte) outcome {
	return review(t, i.mux, "/inject", namespace, pod)
}
