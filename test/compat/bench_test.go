package compat

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/webhook"
)

// BenchmarkAnchor runs Istio's injector (pkg/kube/inject, as Istio's own
// BenchmarkInjectServePC0 serves it: the default templates, no ProxyConfig
// objects, a new httptest request per operation) and meshrev's injector
// (its /istio-anchor case) on the same pod — Istio's benchmark pod,
// webhook/testdata/anchors/serve-pod.json — in one process and one run, so
// that the ratio of the two is measured on the same machine at the same
// load (BENCHMARKS.md):
//
//	cd test/compat && go test -run '^$' -bench Anchor -benchmem -count 5 .
func BenchmarkAnchor(b *testing.B) {
	raw, err := os.ReadFile("../../webhook/testdata/anchors/serve-pod.json")
	require.NoError(b, err)
	pod, err := yaml.YAMLToJSON(raw)
	require.NoError(b, err)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metaAdmissionReview,
		Request: &admissionv1.AdmissionRequest{
			UID: "5d1f4e7a-3c5b-4a9e-8f2d-1b6c7a8e9f00", Kind: podGVK, Resource: podGVR,
			Namespace: testNamespace, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: pod},
		},
	})
	require.NoError(b, err)

	istio := newIstioInjector(b, revisionName, false)
	setNativeSidecars(false)
	version := istio.Version
	if version == "" || version == "latest" {
		version = "1.31.0"
	}
	meshrev := newMeshrevInjector(b, revisionName, version, false, false)
	for _, c := range []struct {
		name string
		h    http.Handler
		path string
	}{{"istio-InjectServePC0", istio.mux, "/inject"}, {"meshrev-istio-anchor", meshrev, webhook.PathInject}} {
		// Both inject the pod (a patch, allowed) before anything is timed.
		out := review(b, c.h, c.path, testNamespace, pod)
		require.False(b, out.Refused, "%s refused the benchmark pod: %s", c.name, out.Message)
		require.NotEqual(b, string(pod), string(out.Pod), "%s did not inject the benchmark pod", c.name)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "http://sidecar-injector"+c.path, bytes.NewReader(body))
				req.Header.Add("Content-Type", "application/json")
				c.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
