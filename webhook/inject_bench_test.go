package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/revisions"
)

// benchWriter is a reusable http.ResponseWriter that keeps the last body.
type benchWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(b []byte) (int, error) { return w.body.Write(b) }

func loadPod(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	require.NoError(tb, err)
	j, err := yaml.YAMLToJSON(b)
	require.NoError(tb, err)
	return j
}

// withEnv returns the pod with n env vars added to its first container.
func withEnv(tb testing.TB, pod []byte, n int) []byte {
	tb.Helper()
	var p corev1.Pod
	require.NoError(tb, json.Unmarshal(pod, &p))
	for i := range n {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: fmt.Sprintf("something-%d", i), Value: "blah"})
	}
	b, err := json.Marshal(&p)
	require.NoError(tb, err)
	return b
}

// benchInputs are the AdmissionReviews of the benchmarks, each for a
// namespace labelled istio-injection=enabled.
func benchInputs(tb testing.TB) map[string][]byte {
	reviews := loadPod(tb, "testdata/inject/pods/reviews-v2.yaml")
	return map[string][]byte{
		"typical":               reviewFor(tb, "default", reviews),
		"env-2000":              reviewFor(tb, "default", withEnv(tb, reviews, 2000)),
		"istio-anchor":          reviewFor(tb, "default", loadPod(tb, "testdata/anchors/serve-pod.json")),
		"istio-anchor-env-2000": reviewFor(tb, "default", loadPod(tb, "testdata/anchors/manyenv-pod.json")),
		// Three HTTP probes, a lifecycle hook and six annotations: the
		// per-pod Go work of Istio compatibility (probes.go, podcontainers.go).
		"probes-and-annotations": reviewFor(tb, "default", loadPod(tb, "testdata/inject/pods/probes-and-annotations.yaml")),
	}
}

func benchState() *fixedState {
	return &fixedState{mesh: meshOf(stableCanary()), namespaces: map[string]map[string]string{"default": {"istio-injection": "enabled"}}}
}

// BenchmarkServeInject measures AdmissionReview bytes in → response bytes
// out through the Injector's http.Handler, and the same request handled the
// generic controller-runtime defaulter way (decode the whole Pod, append the
// same rendered fragment, marshal, jsonpatch.CreatePatch).
func BenchmarkServeInject(b *testing.B) {
	inputs := benchInputs(b)
	state := benchState()
	inj := newTestInjector(b, state)
	baseline := genericBaseline(b, inj, state)

	run := func(b *testing.B, h http.Handler, body []byte) {
		w := &benchWriter{h: http.Header{}}
		req, err := http.NewRequest(http.MethodPost, PathInject, nil)
		require.NoError(b, err)
		req.Header.Set("Content-Type", "application/json")
		// One warm-up request renders the templates and checks the answer.
		serveBench(req, w, h, body)
		require.Equal(b, http.StatusOK, w.code, w.body.String())
		require.Contains(b, w.body.String(), `"patch":`)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			serveBench(req, w, h, body)
		}
	}
	for _, name := range []string{"typical", "env-2000", "istio-anchor", "istio-anchor-env-2000", "probes-and-annotations"} {
		b.Run(name, func(b *testing.B) { run(b, inj, inputs[name]) })
	}
	b.Run("generic-diff-baseline", func(b *testing.B) { run(b, baseline, inputs["typical"]) })
}

func serveBench(req *http.Request, w *benchWriter, h http.Handler, body []byte) {
	w.body.Reset()
	w.code = http.StatusOK
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	h.ServeHTTP(w, req)
}

// genericBaseline is the same injection written as a controller-runtime
// admission.Handler: decode the whole Pod, mutate it with the same rendered
// fragment, marshal it and diff (admission.PatchResponseFromRaw uses
// jsonpatch.CreatePatch).
func genericBaseline(tb testing.TB, inj *Injector, state *fixedState) http.Handler {
	// admission.Webhook logs through controller-runtime's global logger.
	crlog.SetLogger(logr.Discard())
	scheme := runtime.NewScheme()
	require.NoError(tb, corev1.AddToScheme(scheme))
	decoder := admission.NewDecoder(scheme)
	handler := admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		var pod corev1.Pod
		if err := decoder.Decode(req, &pod); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		nsLabels, _, _ := state.NamespaceLabels(ctx, req.Namespace)
		d := revisions.Resolve(&state.mesh.Spec, inj.opts.OwnNamespace, revisions.Subject{
			Namespace: req.Namespace, NamespaceLabels: nsLabels, Labels: pod.Labels, Annotations: pod.Annotations, HostNetwork: pod.Spec.HostNetwork,
		})
		if !d.Inject {
			return admission.Allowed(d.Message).WithWarnings(d.Warnings...)
		}
		rt, _, err := inj.revisionTemplates(ctx, logr.Discard(), state.mesh, d.Revision)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		f := &rt.sidecar.frag
		pod.Spec.InitContainers = append(append([]corev1.Container{}, f.InitContainers...), pod.Spec.InitContainers...)
		names := make([]string, 0, len(pod.Spec.Containers))
		for _, c := range pod.Spec.Containers {
			names = append(names, c.Name)
		}
		for _, c := range f.Containers {
			c.Env = append(c.Env[:len(c.Env):len(c.Env)], corev1.EnvVar{Name: "ISTIO_META_APP_CONTAINERS", Value: fmt.Sprint(names)})
			pod.Spec.Containers = append(pod.Spec.Containers, c)
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, f.Volumes...)
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		for k, v := range f.Labels {
			pod.Labels[k] = v
		}
		pod.Labels[revisions.LabelRevision] = d.Revision.Name
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		for k, v := range f.Annotations {
			pod.Annotations[k] = v
		}
		status, _ := json.Marshal(revisions.InjectionStatus{Revision: d.Revision.Name, Containers: rt.sidecar.containerNames, InitContainers: rt.sidecar.initNames, Volumes: rt.sidecar.volumeNames})
		pod.Annotations[revisions.AnnotationRev] = d.Revision.Name
		pod.Annotations[revisions.AnnotationStatus] = string(status)
		out, err := json.Marshal(&pod)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		return admission.PatchResponseFromRaw(req.Object.Raw, out)
	})
	return &admission.Webhook{Handler: handler}
}

// TestGenericBaselineIsTheSameInjection keeps the benchmark's baseline honest:
// it must add the same containers, init containers, volumes and labels as
// the Injector, so that the two differ only in how the patch is made.
func TestGenericBaselineIsTheSameInjection(t *testing.T) {
	state := benchState()
	inj := newTestInjector(t, state)
	baseline := genericBaseline(t, inj, state)
	pod := loadPod(t, "testdata/inject/pods/reviews-v2.yaml")
	body := reviewFor(t, "default", pod)

	results := map[string]*corev1.Pod{}
	for name, h := range map[string]http.Handler{"injector": inj, "baseline": baseline} {
		_, raw, review := serve(t, h, body)
		require.NotNil(t, review, "%s: %s", name, raw)
		require.True(t, review.Response.Allowed, name)
		results[name] = mustPod(t, applyPatch(t, pod, review.Response.Patch))
	}
	a, b := results["injector"], results["baseline"]
	assert.Equal(t, containerNamesOf(a.Spec.Containers), containerNamesOf(b.Spec.Containers))
	assert.Equal(t, containerNamesOf(a.Spec.InitContainers), containerNamesOf(b.Spec.InitContainers))
	assert.Len(t, b.Spec.Volumes, len(a.Spec.Volumes))
	assert.Equal(t, a.Labels[revisions.LabelRevision], b.Labels[revisions.LabelRevision])
	assert.Equal(t, a.Spec.Containers[1].Image, b.Spec.Containers[1].Image)
}

func containerNamesOf(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
