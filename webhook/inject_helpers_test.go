package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// fixedState is a State holding fixed data: what the manager's cache would
// hold at one instant. meshErr and nsErr make the reads fail, as a cache that
// is not started or not synced does.
type fixedState struct {
	mesh       *v1alpha1.Mesh
	namespaces map[string]map[string]string
	meshErr    error
	nsErr      error
}

func (s *fixedState) Mesh(context.Context) (*v1alpha1.Mesh, error) {
	if s.meshErr != nil {
		return nil, s.meshErr
	}
	return s.mesh, nil
}

func (s *fixedState) NamespaceLabels(_ context.Context, name string) (map[string]string, bool, error) {
	if s.nsErr != nil {
		return nil, false, s.nsErr
	}
	l, ok := s.namespaces[name]
	return l, ok, nil
}

func meshOf(spec *v1alpha1.MeshSpec) *v1alpha1.Mesh {
	if spec == nil {
		return nil
	}
	m := &v1alpha1.Mesh{Spec: *spec}
	m.Name = v1alpha1.MeshName
	return m
}

// stableCanary is the mesh of the canary upgrade 1.22.6 → 1.23.6.
func stableCanary() *v1alpha1.MeshSpec {
	return &v1alpha1.MeshSpec{
		Revisions: []v1alpha1.Revision{{Name: "1-22-6", Version: "1.22.6"}, {Name: "1-23-6", Version: "1.23.6"}},
		Stable:    "1-22-6",
		Canary:    "1-23-6",
	}
}

func newTestInjector(tb testing.TB, state State, opts ...func(*InjectorOptions)) *Injector {
	tb.Helper()
	o := InjectorOptions{OwnNamespace: "meshrev-system", State: state, Registerer: prometheus.NewRegistry()}
	for _, f := range opts {
		f(&o)
	}
	inj, err := NewInjector(o)
	require.NoError(tb, err)
	return inj
}

// reviewFor wraps a pod in an admission/v1 AdmissionReview of a CREATE.
func reviewFor(tb testing.TB, namespace string, pod []byte) []byte {
	tb.Helper()
	req := map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":       types.UID("0d1f4e7a-3c5b-4a9e-8f2d-1b6c7a8e9f00"),
			"kind":      map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource":  map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"namespace": namespace,
			"operation": "CREATE",
			"userInfo":  map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller"},
			"object":    json.RawMessage(pod),
			"oldObject": nil,
			"dryRun":    false,
			"options":   map[string]any{"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
		},
	}
	b, err := json.Marshal(req)
	require.NoError(tb, err)
	return b
}

// serve posts body to the injector over its http.Handler and returns the
// HTTP status, the raw body and, on 200, the decoded review.
func serve(tb testing.TB, inj http.Handler, body []byte) (int, []byte, *admissionv1.AdmissionReview) {
	tb.Helper()
	r := httptest.NewRequest(http.MethodPost, PathInject, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	inj.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return w.Code, w.Body.Bytes(), nil
	}
	var out admissionv1.AdmissionReview
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	require.NoError(tb, dec.Decode(&out), "response is not an AdmissionReview: %s", w.Body.String())
	return w.Code, w.Body.Bytes(), &out
}

// applyPatch applies a JSON Patch as the API server does and checks that the
// result is a Pod (no unknown fields).
func applyPatch(tb testing.TB, pod, patch []byte) []byte {
	tb.Helper()
	if len(patch) == 0 {
		return pod
	}
	p, err := jsonpatch.DecodePatch(patch)
	require.NoError(tb, err, "patch does not decode: %s", patch)
	out, err := p.Apply(pod)
	require.NoError(tb, err, "patch does not apply: %s", patch)
	mustPod(tb, out)
	return out
}

func mustPod(tb testing.TB, b []byte) *corev1.Pod {
	tb.Helper()
	var pod corev1.Pod
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	require.NoError(tb, dec.Decode(&pod), "not a Pod: %s", b)
	return &pod
}

// applyPatchLoose applies a JSON Patch without requiring a Pod as result
// (the fuzzer's inputs need not be pods).
func applyPatchLoose(tb testing.TB, doc, patch []byte) []byte {
	tb.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	require.NoError(tb, err, "patch does not decode: %s", patch)
	out, err := p.Apply(doc)
	require.NoError(tb, err, "patch %s does not apply to %s", patch, doc)
	return out
}
