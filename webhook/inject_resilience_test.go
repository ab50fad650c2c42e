package webhook

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// errCacheNotSynced stands for what a controller-runtime cache returns while
// it cannot answer (not started, not synced before the request's deadline).
var errCacheNotSynced = errors.New("timed out waiting for cache to be synced")

func TestInjectRefusesForRetryWhenTheStateCannotBeRead(t *testing.T) {
	hostNetworkPod := `{"metadata":{"name":"node-agent"},"spec":{"hostNetwork":true,"containers":[{"name":"a","image":"x"}]}}`
	tests := map[string]struct {
		meshErr, nsErr error
		pod            string
		allowed        bool
	}{
		"a Mesh that cannot be read refuses the pod for retry instead of admitting it without a sidecar": {
			meshErr: errCacheNotSynced, pod: plainPod,
		},
		"a namespace that cannot be read refuses the pod for retry instead of admitting it without a sidecar": {
			nsErr: errCacheNotSynced, pod: plainPod,
		},
		"a pod decided from its own spec (hostNetwork) is still admitted while the state cannot be read": {
			meshErr: errCacheNotSynced, nsErr: errCacheNotSynced, pod: hostNetworkPod, allowed: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			state := &fixedState{
				mesh:       meshOf(stableCanary()),
				namespaces: map[string]map[string]string{"shop": {"istio-injection": "enabled"}},
				meshErr:    tc.meshErr, nsErr: tc.nsErr,
			}
			inj := newTestInjector(t, state)
			code, body, review := serve(t, inj, reviewFor(t, "shop", []byte(tc.pod)))
			require.Equal(t, http.StatusOK, code, "a refusal is an AdmissionReview, not an HTTP error: %s", body)
			resp := review.Response
			require.NotNil(t, resp)
			assert.Empty(t, resp.Patch)
			if tc.allowed {
				assert.True(t, resp.Allowed)
				return
			}
			assert.False(t, resp.Allowed, "a pod must never be admitted uninjected because the cache could not be read")
			require.NotNil(t, resp.Result)
			assert.Equal(t, int32(http.StatusServiceUnavailable), resp.Result.Code)
			assert.Equal(t, metav1.StatusReasonServiceUnavailable, resp.Result.Reason)
			assert.Contains(t, resp.Result.Message, "could not read its cache")
			assert.Contains(t, resp.Result.Message, errCacheNotSynced.Error())
			assert.Contains(t, resp.Result.Message, "retry the request")
			assert.InDelta(t, 1, testutil.ToFloat64(inj.metrics.injections.WithLabelValues("", resultError, "")), 0)
		})
	}
}

type ctxKey struct{}

func TestCacheStatePropagatesReadErrorsAndTheRequestContext(t *testing.T) {
	scheme := runtime.NewScheme()
	require.NoError(t, corev1.AddToScheme(scheme))
	require.NoError(t, v1alpha1.AddToScheme(scheme))
	mesh := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"istio-injection": "enabled"}}}
	tests := map[string]struct {
		objects   []client.Object
		getErr    error
		wantMesh  bool
		wantNS    bool
		wantError bool
	}{
		"objects in the cache are returned": {
			objects: []client.Object{mesh, ns}, wantMesh: true, wantNS: true,
		},
		"objects missing from the cache are absent, not errors": {},
		"a cache that cannot answer is an error, not an absent Mesh or namespace": {
			objects: []client.Object{mesh, ns}, getErr: errCacheNotSynced, wantError: true,
		},
		"a NotFound from the reader is absence": {
			getErr: apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "shop"),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var seen []context.Context
			var mu sync.Mutex
			reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.objects...).WithInterceptorFuncs(interceptor.Funcs{
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					mu.Lock()
					seen = append(seen, ctx)
					mu.Unlock()
					if tc.getErr != nil {
						return tc.getErr
					}
					return c.Get(ctx, key, obj, opts...)
				},
			}).Build()
			s := &CacheState{reader: reader}
			ctx := context.WithValue(context.Background(), ctxKey{}, "request")

			m, err := s.Mesh(ctx)
			labels, known, nsErr := s.NamespaceLabels(ctx, "shop")
			if tc.wantError {
				require.ErrorIs(t, err, errCacheNotSynced)
				require.ErrorIs(t, nsErr, errCacheNotSynced)
				assert.Contains(t, err.Error(), "read Mesh default from the cache")
				assert.Contains(t, nsErr.Error(), "read namespace shop from the cache")
			} else {
				require.NoError(t, err)
				require.NoError(t, nsErr)
			}
			assert.Equal(t, tc.wantMesh, m != nil)
			assert.Equal(t, tc.wantNS, known)
			if tc.wantNS {
				assert.Equal(t, "enabled", labels["istio-injection"])
			}
			require.Len(t, seen, 2)
			for _, c := range seen {
				assert.Equal(t, "request", c.Value(ctxKey{}), "the cache must be read with the request's context")
			}
		})
	}
}

func TestInjectLatencyIsRecordedForEveryRequest(t *testing.T) {
	tests := map[string]struct {
		method string
		body   func(t *testing.T) []byte
		ctype  string
		max    int64
		want   int
	}{
		"an injected pod is timed":                        {body: func(t *testing.T) []byte { return reviewFor(t, "on", []byte(plainPod)) }, want: http.StatusOK},
		"a pod refused for an unknown namespace is timed": {body: func(t *testing.T) []byte { return reviewFor(t, "unknown-ns", []byte(plainPod)) }, want: http.StatusOK},
		"a malformed review is timed":                     {body: func(*testing.T) []byte { return []byte(`{"apiVersion":`) }, want: http.StatusBadRequest},
		"a body over the limit is timed":                  {body: func(t *testing.T) []byte { return reviewFor(t, "on", []byte(plainPod)) }, max: 64, want: http.StatusRequestEntityTooLarge},
		"a GET is timed":                                  {method: http.MethodGet, body: func(*testing.T) []byte { return nil }, want: http.StatusMethodNotAllowed},
		"a YAML body is timed":                            {ctype: "application/yaml", body: func(*testing.T) []byte { return []byte("a: b") }, want: http.StatusUnsupportedMediaType},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			state := &fixedState{mesh: meshOf(stableCanary()), namespaces: map[string]map[string]string{"on": {"istio-injection": "enabled"}}}
			inj := newTestInjector(t, state, func(o *InjectorOptions) { o.Registerer = reg; o.MaxRequestBytes = tc.max })
			method, ctype := tc.method, tc.ctype
			if method == "" {
				method = http.MethodPost
			}
			if ctype == "" {
				ctype = "application/json"
			}
			r := httptest.NewRequest(method, PathInject, bytes.NewReader(tc.body(t)))
			r.Header.Set("Content-Type", ctype)
			w := httptest.NewRecorder()
			inj.ServeHTTP(w, r)
			require.Equal(t, tc.want, w.Code, "body: %s", w.Body.String())
			assert.Equal(t, uint64(1), latencyCount(t, reg), "meshrev_injection_duration_seconds must observe this request")
		})
	}
}

// latencyCount reads the sample count of meshrev_injection_duration_seconds.
func latencyCount(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == "meshrev_injection_duration_seconds" {
			require.Len(t, f.GetMetric(), 1)
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// logLine is one line logged through a funcr logger.
type logLine struct {
	msg string
	kv  map[string]any
	err bool
}

// captureLog returns a logger that records what is logged.
func captureLog() (logr.Logger, func() []logLine) {
	var mu sync.Mutex
	var lines []logLine
	sink := &recordingSink{record: func(l logLine) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, l)
	}}
	return logr.New(sink), func() []logLine {
		mu.Lock()
		defer mu.Unlock()
		return append([]logLine(nil), lines...)
	}
}

type recordingSink struct {
	values []any
	record func(logLine)
}

func (s *recordingSink) kv(extra []any) map[string]any {
	m := map[string]any{}
	all := append(append([]any(nil), s.values...), extra...)
	for i := 0; i+1 < len(all); i += 2 {
		m[all[i].(string)] = all[i+1]
	}
	return m
}

func (s *recordingSink) Init(logr.RuntimeInfo) {}

func (s *recordingSink) Enabled(int) bool { return true }

func (s *recordingSink) Info(_ int, msg string, kv ...any) {
	s.record(logLine{msg: msg, kv: s.kv(kv)})
}

func (s *recordingSink) Error(err error, msg string, kv ...any) {
	m := s.kv(kv)
	m["error"] = err
	s.record(logLine{msg: msg, kv: m, err: true})
}

func (s *recordingSink) WithValues(kv ...any) logr.LogSink {
	return &recordingSink{values: append(append([]any(nil), s.values...), kv...), record: s.record}
}

func (s *recordingSink) WithName(string) logr.LogSink { return s }

// templateErrorLines returns the logged template errors.
func templateErrorLines(lines []logLine) []logLine {
	var out []logLine
	for _, l := range lines {
		if l.err && strings.Contains(l.msg, "templates of a revision do not render") {
			out = append(out, l)
		}
	}
	return out
}

func TestInjectKeepsTheLastGoodTemplatesWhenAConfigMapBreaks(t *testing.T) {
	def := DefaultTemplates()
	marked := strings.Replace(def.Sidecar, "\nlabels:\n", "\nannotations:\n  test.meshrev.io/template: \"v1\"\nlabels:\n", 1)
	require.NotEqual(t, def.Sidecar, marked, "the default sidecar template has no labels block to put an annotations block beside")
	const own, cmName = "meshrev-system", "tmpl-1-23-6"
	broken := "containers:\n- name: {{ .Revision.Name "
	tests := map[string]struct {
		// edit changes the ConfigMap after the first, good admission; nil
		// means the ConfigMap is broken from the start.
		edit      func(t *testing.T, c client.Client)
		initial   string
		neverGood bool
		wantError string
	}{
		"an edit that does not parse keeps injecting the last good render, with a warning": {
			initial: marked,
			edit: func(t *testing.T, c client.Client) {
				setTemplatesConfigMap(t, c, own, cmName, broken)
			},
			wantError: "parse sidecar template",
		},
		"a deleted ConfigMap keeps injecting the last good render, with a warning": {
			initial: marked,
			edit: func(t *testing.T, c client.Client) {
				require.NoError(t, c.Delete(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: own, Name: cmName}}))
			},
			wantError: "ConfigMap meshrev-system/tmpl-1-23-6 not found",
		},
		"a ConfigMap that never rendered (a restart after it broke) injects the built-in templates, with a warning": {
			initial: broken, neverGood: true, wantError: "parse sidecar template",
		},
		"a ConfigMap deleted before the manager ever read it injects the built-in templates, with a warning": {
			neverGood: true, wantError: "ConfigMap meshrev-system/tmpl-1-23-6 not found",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			require.NoError(t, corev1.AddToScheme(scheme))
			b := fake.NewClientBuilder().WithScheme(scheme)
			if tc.initial != "" {
				b = b.WithObjects(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: own, Name: cmName}, Data: map[string]string{"sidecar": tc.initial}})
			}
			c := b.Build()
			spec := stableCanary()
			spec.Revisions[1].Templates = cmName
			state := &fixedState{mesh: meshOf(spec), namespaces: map[string]map[string]string{"shop": {"istio.io/rev": "canary"}}}
			log, logged := captureLog()
			inj := newTestInjector(t, state, func(o *InjectorOptions) {
				o.Templates = NewConfigMapTemplateSource(ConfigMapTemplatesOptions{Reader: c, Namespace: own})
				o.Log = log
			})
			body := reviewFor(t, "shop", []byte(plainPod))
			errors := inj.metrics.templateErrors.WithLabelValues("1-23-6")

			if tc.neverGood {
				// The same pod through the built-in templates alone.
				plain := newTestInjector(t, &fixedState{mesh: meshOf(stableCanary()), namespaces: state.namespaces})
				_, _, want := serve(t, plain, body)
				require.True(t, want.Response.Allowed)
				for range 3 {
					_, _, review := serve(t, inj, body)
					resp := review.Response
					require.True(t, resp.Allowed, "the built-in templates are the floor: %+v", resp.Result)
					assert.JSONEq(t, string(want.Response.Patch), string(resp.Patch), "injected exactly as with the built-in templates")
					require.Len(t, resp.Warnings, 1)
					assert.Contains(t, resp.Warnings[0], "revision 1-23-6 (ConfigMap meshrev-system/tmpl-1-23-6)")
					assert.Contains(t, resp.Warnings[0], tc.wantError)
					assert.Contains(t, resp.Warnings[0], "built-in templates")
				}
				assert.InDelta(t, 3, testutil.ToFloat64(errors), 0)
				assert.InDelta(t, 1, testutil.ToFloat64(inj.metrics.templatesDegraded.WithLabelValues("1-23-6")), 0, "the condition is visible as a metric")
				lines := templateErrorLines(logged())
				require.Len(t, lines, 1, "a broken template is logged once per distinct error, not per pod")
				assert.Equal(t, "1-23-6", lines[0].kv["revision"])
				assert.Equal(t, "ConfigMap meshrev-system/tmpl-1-23-6", lines[0].kv["configmap"])
				return
			}

			_, _, review := serve(t, inj, body)
			require.True(t, review.Response.Allowed)
			assert.Empty(t, review.Response.Warnings)
			goodPod := mustPod(t, applyPatch(t, []byte(plainPod), review.Response.Patch))
			assert.Equal(t, "v1", goodPod.Annotations["test.meshrev.io/template"])

			tc.edit(t, c)
			for range 3 {
				_, _, review = serve(t, inj, body)
				resp := review.Response
				require.True(t, resp.Allowed, "a broken edit must not refuse the revision's pods: %+v", resp.Result)
				pod := mustPod(t, applyPatch(t, []byte(plainPod), resp.Patch))
				assert.Equal(t, goodPod.Spec, pod.Spec, "the last good render is injected")
				assert.Equal(t, "v1", pod.Annotations["test.meshrev.io/template"])
				require.Len(t, resp.Warnings, 1)
				assert.Contains(t, resp.Warnings[0], "ConfigMap meshrev-system/tmpl-1-23-6")
				assert.Contains(t, resp.Warnings[0], tc.wantError)
				assert.Contains(t, resp.Warnings[0], "last good render")
			}
			assert.InDelta(t, 3, testutil.ToFloat64(errors), 0)
			lines := templateErrorLines(logged())
			require.Len(t, lines, 1, "a broken template is logged once per distinct error, not per pod")
			assert.Equal(t, "1-23-6", lines[0].kv["revision"])
			assert.Equal(t, "ConfigMap meshrev-system/tmpl-1-23-6", lines[0].kv["configmap"])
			assert.ErrorContains(t, lines[0].kv["error"].(error), tc.wantError)

			// Repaired, the ConfigMap's new text is used again, without warning.
			setTemplatesConfigMap(t, c, own, cmName, strings.Replace(marked, `"v1"`, `"v2"`, 1))
			_, _, review = serve(t, inj, body)
			require.True(t, review.Response.Allowed)
			assert.Empty(t, review.Response.Warnings)
			assert.Equal(t, "v2", mustPod(t, applyPatch(t, []byte(plainPod), review.Response.Patch)).Annotations["test.meshrev.io/template"])
			assert.InDelta(t, 3, testutil.ToFloat64(errors), 0)
		})
	}
}

func TestLastGoodTemplatesFollowTheRevisionsOwnFields(t *testing.T) {
	text := DefaultTemplates()
	broken := false
	spec := stableCanary()
	state := &fixedState{mesh: meshOf(spec), namespaces: map[string]map[string]string{"shop": {"istio-injection": "enabled"}}}
	inj := newTestInjector(t, state, func(o *InjectorOptions) {
		o.Templates = TemplateSourceFunc(func(context.Context, *v1alpha1.Revision) (Templates, error) {
			if broken {
				return Templates{Sidecar: "containers: [{{ .Nope }}]", Gateway: text.Gateway}, nil
			}
			return text, nil
		})
	})
	ctx := context.Background()
	_, warn, err := inj.revisionTemplates(ctx, logr.Discard(), state.mesh, &spec.Revisions[0])
	require.NoError(t, err)
	require.Empty(t, warn)

	broken = true
	spec.Revisions[0].ProxyImage = "registry.example.com/proxyv2:1.22.6-patched"
	rt, warn, err := inj.revisionTemplates(ctx, logr.Discard(), state.mesh, &spec.Revisions[0])
	require.NoError(t, err)
	assert.Contains(t, warn, "last good render")
	assert.Equal(t, "registry.example.com/proxyv2:1.22.6-patched", rt.sidecar.frag.Containers[0].Image,
		"the fallback renders the last good text with the revision's current fields, never a stale image")
}

// setTemplatesConfigMap creates or updates the templates ConfigMap.
func setTemplatesConfigMap(t *testing.T, c client.Client, ns, name, sidecar string) {
	t.Helper()
	var cm corev1.ConfigMap
	err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cm)
	if apierrors.IsNotFound(err) {
		cm = corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{"sidecar": sidecar}}
		require.NoError(t, c.Create(context.Background(), &cm))
		return
	}
	require.NoError(t, err)
	cm.Data = map[string]string{"sidecar": sidecar}
	require.NoError(t, c.Update(context.Background(), &cm))
}

func TestInjectorGatewayRuleIsTheSharedOne(t *testing.T) {
	tests := map[string]struct {
		labels, annotations map[string]string
		wantWarning         string
	}{
		"a pod labelled istio: ingressgateway without the annotation gets the sidecar template, as in Istio": {labels: map[string]string{"istio": "ingressgateway"}},
		"a pod naming only the gateway template is a gateway":                                                {annotations: map[string]string{"inject.istio.io/templates": "gateway"}},
		"a pod listing sidecar and gateway with spaces is a gateway":                                         {annotations: map[string]string{"inject.istio.io/templates": "sidecar, gateway"}},
		"a pod listing gateway and an unknown template is a gateway and is warned about the unknown one": {
			annotations: map[string]string{"inject.istio.io/templates": "gateway,custom"}, wantWarning: "(custom)",
		},
		"a pod naming only an unknown template is not a gateway and is warned": {
			annotations: map[string]string{"inject.istio.io/templates": "custom"}, wantWarning: "(custom)",
		},
		"a plain pod is not a gateway and gets no warning": {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := &podIn{Metadata: &podMeta{Labels: tc.labels, Annotations: tc.annotations}}
			got, warning := isGateway(p)
			assert.Equal(t, revisions.UsesGatewayTemplate(tc.annotations), got, "the injector must use the one rule of revisions")
			if tc.wantWarning == "" {
				assert.Empty(t, warning)
			} else {
				assert.Contains(t, warning, tc.wantWarning)
			}
		})
	}
}

func TestCacheStateReadsANamespaceTheCacheDoesNotHoldYetLive(t *testing.T) {
	scheme := runtime.NewScheme()
	require.NoError(t, corev1.AddToScheme(scheme))
	fresh := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fresh", Labels: map[string]string{"istio-injection": "enabled"}}}
	tests := map[string]struct {
		live      client.Reader
		wantFound bool
	}{
		"a namespace created a moment ago is read live": {
			live: fake.NewClientBuilder().WithScheme(scheme).WithObjects(fresh).Build(), wantFound: true,
		},
		"without a live reader the namespace is absent": {},
		"a namespace that exists nowhere is absent": {
			live: fake.NewClientBuilder().WithScheme(scheme).Build(),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &CacheState{reader: fake.NewClientBuilder().WithScheme(scheme).Build(), live: tc.live}
			labels, found, err := s.NamespaceLabels(context.Background(), "fresh")
			require.NoError(t, err)
			assert.Equal(t, tc.wantFound, found)
			if tc.wantFound {
				assert.Equal(t, "enabled", labels["istio-injection"])
			}
		})
	}
}
