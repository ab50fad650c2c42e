package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

const plainPod = `{"metadata":{"generateName":"web-7c9d-","labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx"}]}}`

func TestInjectResponses(t *testing.T) {
	deny := stableCanary()
	deny.UnknownRevisionPolicy = v1alpha1.UnknownRevisionDeny
	tests := map[string]struct {
		mesh      *v1alpha1.MeshSpec
		nsLabels  map[string]string
		body      func(t *testing.T) []byte
		method    string
		ctype     string
		wantHTTP  int
		httpMsg   string
		allowed   bool
		code      int32
		msgHas    []string
		warnHas   []string
		wantPatch bool
	}{
		"a pod in a namespace labelled istio-injection=enabled is injected without warnings": {
			mesh: stableCanary(), nsLabels: map[string]string{"istio-injection": "enabled"},
			body:     func(t *testing.T) []byte { return reviewFor(t, "shop", []byte(plainPod)) },
			wantHTTP: 200, allowed: true, wantPatch: true,
		},
		"an unpublished revision under Deny is refused with a message naming the label and the published revisions": {
			mesh: deny, nsLabels: map[string]string{"istio.io/rev": "1-24-0"},
			body:     func(t *testing.T) []byte { return reviewFor(t, "shop", []byte(plainPod)) },
			wantHTTP: 200, allowed: false, code: 403,
			msgHas: []string{"namespace istio.io/rev=1-24-0", `"1-24-0"`, "1-22-6 (stable)", "1-23-6 (canary)", "unknownRevisionPolicy: Deny"},
		},
		"an unpublished revision under Allow is admitted with a warning and no patch": {
			mesh: stableCanary(), nsLabels: map[string]string{"istio.io/rev": "1-24-0"},
			body:     func(t *testing.T) []byte { return reviewFor(t, "shop", []byte(plainPod)) },
			wantHTTP: 200, allowed: true,
			warnHas: []string{"namespace istio.io/rev=1-24-0", "1-22-6 (stable), 1-23-6 (canary)", "the pod gets no sidecar"},
		},
		"a namespace still on the canary tag without a canary gets stable and a warning": {
			mesh:     &v1alpha1.MeshSpec{Revisions: []v1alpha1.Revision{{Name: "1-23-6", Version: "1.23.6"}}, Stable: "1-23-6"},
			nsLabels: map[string]string{"istio.io/rev": "canary"},
			body:     func(t *testing.T) []byte { return reviewFor(t, "shop", []byte(plainPod)) },
			wantHTTP: 200, allowed: true, wantPatch: true,
			warnHas: []string{"no canary is published", "stable revision 1-23-6"},
		},
		"a body that is not JSON gets HTTP 400 with the reason": {
			body:     func(*testing.T) []byte { return []byte(`{"apiVersion":`) },
			wantHTTP: 400, httpMsg: "malformed AdmissionReview",
		},
		"an AdmissionReview of another API version gets HTTP 400 naming the version to use": {
			body: func(*testing.T) []byte {
				return []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`)
			},
			wantHTTP: 400, httpMsg: "admissionReviewVersions: [v1]",
		},
		"an AdmissionReview without a request gets HTTP 400": {
			body: func(*testing.T) []byte {
				return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`)
			},
			wantHTTP: 400, httpMsg: "no request",
		},
		"a GET gets HTTP 405": {
			method: http.MethodGet, body: func(*testing.T) []byte { return nil },
			wantHTTP: 405,
		},
		"a YAML body gets HTTP 415": {
			ctype: "application/yaml", body: func(t *testing.T) []byte { return reviewFor(t, "shop", []byte(plainPod)) },
			wantHTTP: 415, httpMsg: "application/json",
		},
		"a review of a Service is refused, pointing at the webhook rules": {
			mesh: stableCanary(), nsLabels: map[string]string{"istio-injection": "enabled"},
			body: func(t *testing.T) []byte {
				b := reviewFor(t, "shop", []byte(`{"metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}}`))
				b = bytes.Replace(b, []byte(`"kind":"Pod"`), []byte(`"kind":"Service"`), 1)
				return bytes.Replace(b, []byte(`"resource":"pods"`), []byte(`"resource":"services"`), 1)
			},
			wantHTTP: 200, allowed: false, code: 400, msgHas: []string{"only admits pods", "Service", "MutatingWebhookConfiguration rules"},
		},
		"a pod that does not decode is refused, not half injected": {
			mesh: stableCanary(), nsLabels: map[string]string{"istio-injection": "enabled"},
			body:     func(t *testing.T) []byte { return reviewFor(t, "shop", []byte(`{"metadata":{"labels":{"app":7}}}`)) },
			wantHTTP: 200, allowed: false, code: 400, msgHas: []string{"cannot decode the pod"},
		},
		"an UPDATE passes untouched": {
			mesh: stableCanary(), nsLabels: map[string]string{"istio-injection": "enabled"},
			body: func(t *testing.T) []byte {
				return bytes.Replace(reviewFor(t, "shop", []byte(plainPod)), []byte(`"CREATE"`), []byte(`"UPDATE"`), 1)
			},
			wantHTTP: 200, allowed: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			state := &fixedState{mesh: meshOf(tc.mesh), namespaces: map[string]map[string]string{"shop": tc.nsLabels}}
			inj := newTestInjector(t, state)
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
			require.Equal(t, tc.wantHTTP, w.Code, "body: %s", w.Body.String())
			if tc.wantHTTP != 200 {
				assert.Contains(t, w.Body.String(), tc.httpMsg)
				return
			}
			assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
			_, _, review := serve(t, inj, tc.body(t))
			require.NotNil(t, review.Response)
			resp := review.Response
			assert.Equal(t, "admission.k8s.io/v1", review.APIVersion)
			assert.Equal(t, "AdmissionReview", review.Kind)
			assert.Equal(t, tc.allowed, resp.Allowed)
			if !tc.allowed {
				require.NotNil(t, resp.Result)
				assert.Equal(t, tc.code, resp.Result.Code)
				assert.Equal(t, metav1.StatusFailure, resp.Result.Status)
				for _, s := range tc.msgHas {
					assert.Contains(t, resp.Result.Message, s)
				}
			}
			assert.Equal(t, len(tc.warnHas) > 0, len(resp.Warnings) > 0, "warnings: %q", resp.Warnings)
			for _, s := range tc.warnHas {
				assert.Contains(t, strings.Join(resp.Warnings, "\n"), s)
			}
			assert.Equal(t, tc.wantPatch, len(resp.Patch) > 0)
		})
	}
}

func TestInjectMetricsCountEveryResult(t *testing.T) {
	reg := prometheus.NewRegistry()
	deny := stableCanary()
	state := &fixedState{mesh: meshOf(deny), namespaces: map[string]map[string]string{
		"on": {"istio-injection": "enabled"}, "off": {}, "pinned": {"istio.io/rev": "9-9-9"},
	}}
	inj := newTestInjector(t, state, func(o *InjectorOptions) { o.Registerer = reg })
	serve(t, inj, reviewFor(t, "on", []byte(plainPod)))
	serve(t, inj, reviewFor(t, "on", []byte(plainPod)))
	serve(t, inj, reviewFor(t, "off", []byte(plainPod)))
	serve(t, inj, reviewFor(t, "pinned", []byte(plainPod)))
	state.mesh.Spec.UnknownRevisionPolicy = v1alpha1.UnknownRevisionDeny
	serve(t, inj, reviewFor(t, "pinned", []byte(plainPod)))

	c := inj.metrics.injections
	assert.Equal(t, 4, testutil.CollectAndCount(c), "one series per revision, result and reason seen")
	assert.InDelta(t, 2, testutil.ToFloat64(c.WithLabelValues("1-22-6", resultInjected, string(revisions.ReasonNamespaceInjectionEnabled))), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(c.WithLabelValues("", resultSkipped, string(revisions.ReasonNotSelected))), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(c.WithLabelValues("", resultSkipped, string(revisions.ReasonUnknownRevision))), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(c.WithLabelValues("", resultDenied, string(revisions.ReasonUnknownRevision))), 0)
	n, err := testutil.GatherAndCount(reg, "meshrev_injection_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	// A second injector on the same registry shares the collectors.
	again := newTestInjector(t, state, func(o *InjectorOptions) { o.Registerer = reg })
	assert.Same(t, inj.metrics.injections, again.metrics.injections)
}

func TestTemplatesRenderOncePerRevision(t *testing.T) {
	mesh := stableCanary()
	state := &fixedState{mesh: meshOf(mesh), namespaces: map[string]map[string]string{"on": {"istio-injection": "enabled"}}}
	calls := 0
	inj := newTestInjector(t, state, func(o *InjectorOptions) {
		o.Templates = TemplateSourceFunc(func(ctx context.Context, rev *v1alpha1.Revision) (Templates, error) {
			calls++
			return DefaultTemplates(), nil
		})
	})
	ctx := context.Background()
	first, _, err := inj.revisionTemplates(ctx, logr.Discard(), state.mesh, &mesh.Revisions[0])
	require.NoError(t, err)
	second, _, err := inj.revisionTemplates(ctx, logr.Discard(), state.mesh, &mesh.Revisions[0])
	require.NoError(t, err)
	assert.Same(t, first, second, "the same revision must not be rendered twice")
	assert.Equal(t, 2, calls, "template text is looked up per request (from a cache), rendering is not")

	mesh.Revisions[0].ProxyImage = "registry.example.com/proxyv2:1.22.6-patched"
	third, _, err := inj.revisionTemplates(ctx, logr.Discard(), state.mesh, &mesh.Revisions[0])
	require.NoError(t, err)
	assert.NotSame(t, first, third, "a changed revision must be rendered again")
	assert.Equal(t, "registry.example.com/proxyv2:1.22.6-patched", third.sidecar.frag.Containers[0].Image)

	// Revisions no longer published are forgotten on the next render.
	mesh.Revisions = mesh.Revisions[:1]
	mesh.Canary = ""
	mesh.Revisions[0].ProxyImage = ""
	_, _, err = inj.revisionTemplates(ctx, logr.Discard(), state.mesh, &mesh.Revisions[0])
	require.NoError(t, err)
	assert.NotContains(t, inj.cache.entries, "1-23-6")
}

func TestValidateRevisionRendersAgainWhenItsTemplatesChange(t *testing.T) {
	good := DefaultTemplates()
	current := good
	inj := newTestInjector(t, &fixedState{}, func(o *InjectorOptions) {
		o.Templates = TemplateSourceFunc(func(context.Context, *v1alpha1.Revision) (Templates, error) { return current, nil })
	})
	mesh := meshOf(stableCanary())
	rev := mesh.Spec.Revisions[1]
	ctx := context.Background()
	require.NoError(t, inj.ValidateRevision(ctx, mesh, rev))
	require.NoError(t, inj.ValidateRevision(ctx, mesh, rev), "the same inputs check the same")

	current = Templates{Sidecar: "containers:\n- name: {{ .Revision.Name ", Gateway: good.Gateway}
	require.ErrorContains(t, inj.ValidateRevision(ctx, mesh, rev), "parse sidecar template", "a changed text is rendered again")

	current = good
	require.NoError(t, inj.ValidateRevision(ctx, mesh, rev), "fixed templates check good again")
}

func TestValidateRevision(t *testing.T) {
	good := DefaultTemplates()
	tests := map[string]struct {
		templates Templates
		wantErr   []string
	}{
		"the default templates render": {templates: good},
		"a template that does not parse is refused": {
			templates: Templates{Sidecar: "containers:\n- name: {{ .Revision.Name ", Gateway: good.Gateway},
			wantErr:   []string{"revision 1-23-6", "parse sidecar template"},
		},
		"a template that names a missing value is refused": {
			templates: Templates{Sidecar: good.Sidecar, Gateway: strings.Replace(good.Gateway, ".Values.meshID", ".Values.meshName", 1)},
			wantErr:   []string{"render gateway template", "meshName"},
		},
		"a template that renders something other than a fragment is refused": {
			templates: Templates{Sidecar: "containers:\n- name: istio-proxy\n  image: x\n  colour: blue\n", Gateway: good.Gateway},
			wantErr:   []string{"sidecar template does not render", "colour"},
		},
		"a sidecar template without a container is refused": {
			templates: Templates{Sidecar: "volumes: [{name: a, emptyDir: {}}]\n", Gateway: good.Gateway},
			wantErr:   []string{"adds no container"},
		},
		"a gateway template without a container is refused": {
			templates: Templates{Sidecar: good.Sidecar, Gateway: "volumes: [{name: v, emptyDir: {}}]\n"},
			wantErr:   []string{"the gateway template adds no container"},
		},
		"a template that sets meshrev's own label or duplicates a volume is refused": {
			templates: Templates{Sidecar: "labels: {meshrev.io/revision: x}\ncontainers: [{name: p, image: x}]\nvolumes: [{name: v, emptyDir: {}}, {name: v, emptyDir: {}}]\n", Gateway: good.Gateway},
			wantErr:   []string{`label "meshrev.io/revision" is set by meshrev`, `volume "v" appears twice`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			inj := newTestInjector(t, &fixedState{}, func(o *InjectorOptions) { o.Templates = StaticTemplates(tc.templates) })
			mesh := meshOf(stableCanary())
			err := inj.ValidateRevision(context.Background(), mesh, mesh.Spec.Revisions[1])
			if len(tc.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, s := range tc.wantErr {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestConfigMapTemplateSource(t *testing.T) {
	def := DefaultTemplates()
	scheme := runtime.NewScheme()
	require.NoError(t, corev1.AddToScheme(scheme))
	cm := func(name string, data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "meshrev-system", Name: name}, Data: data}
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		cm("meshrev-templates", map[string]string{"sidecar": "S-defaults", "gateway": "G-defaults"}),
		cm("rev-1-23-6", map[string]string{"sidecar": "S-rev"}),
	).Build()
	tests := map[string]struct {
		defaults string
		rev      v1alpha1.Revision
		want     Templates
		wantErr  string
	}{
		"without ConfigMaps the embedded templates are used": {
			rev: v1alpha1.Revision{Name: "1-22-6"}, want: def,
		},
		"the --templates-configmap ConfigMap replaces the embedded templates": {
			defaults: "meshrev-templates", rev: v1alpha1.Revision{Name: "1-22-6"}, want: Templates{Sidecar: "S-defaults", Gateway: "G-defaults"},
		},
		"a revision's ConfigMap overrides the keys it has": {
			defaults: "meshrev-templates", rev: v1alpha1.Revision{Name: "1-23-6", Templates: "rev-1-23-6"}, want: Templates{Sidecar: "S-rev", Gateway: "G-defaults"},
		},
		"a revision's missing ConfigMap is an error that says what to create": {
			rev: v1alpha1.Revision{Name: "1-23-6", Templates: "nope"}, wantErr: `templates of revision 1-23-6: ConfigMap meshrev-system/nope not found: create it with the keys "sidecar" and "gateway"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			src := NewConfigMapTemplateSource(ConfigMapTemplatesOptions{Reader: reader, Namespace: "meshrev-system", DefaultsConfigMap: tc.defaults})
			got, err := src.Templates(context.Background(), &tc.rev)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestStaticTemplatesRefuseRevisionConfigMaps(t *testing.T) {
	_, err := StaticTemplates(DefaultTemplates()).Templates(context.Background(), &v1alpha1.Revision{Name: "1-23-6", Templates: "mine"})
	require.ErrorContains(t, err, `revision 1-23-6 names templates ConfigMap "mine"`)
}

func TestNewInjectorNeedsStateAndNamespace(t *testing.T) {
	_, err := NewInjector(InjectorOptions{OwnNamespace: "meshrev-system"})
	require.ErrorContains(t, err, "State is required")
	_, err = NewInjector(InjectorOptions{State: &fixedState{}})
	require.ErrorContains(t, err, "OwnNamespace is required")
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	tests := map[string]struct{ in string }{
		"plain text stays as is":             {in: "meshrev.io/revision"},
		"quotes and backslashes are escaped": {in: `say "hi" \ bye`},
		"control characters are escaped":     {in: "a\nb\tc\r\x00\x1f"},
		"multi-byte UTF-8 passes through":    {in: "ünïcödé ✓ 日本"},
		"invalid UTF-8 becomes U+FFFD":       {in: "bad\xffbyte\xc3"},
		"JSON-pointer characters are kept":   {in: "a~b/c"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.in
			var back string
			require.NoError(t, json.Unmarshal(appendJSONString(nil, s), &back))
			var want string
			b, err := json.Marshal(s)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &want))
			assert.Equal(t, want, back)
		})
	}
}

func TestPodDeployMeta(t *testing.T) {
	tests := map[string]struct {
		pod  string
		want deployMeta
	}{
		"a ReplicaSet's pod is named after the Deployment": {
			pod:  `{"metadata":{"generateName":"reviews-v2-5b64d7f9c8-","labels":{"pod-template-hash":"5b64d7f9c8"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"reviews-v2-5b64d7f9c8","controller":true}]}}`,
			want: deployMeta{name: "reviews-v2", kind: "Deployment", apiVersion: "apps/v1"},
		},
		"a StatefulSet's pod is named after the StatefulSet": {
			pod:  `{"metadata":{"name":"db-0","generateName":"db-","ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"db","controller":true}]}}`,
			want: deployMeta{name: "db", kind: "StatefulSet", apiVersion: "apps/v1"},
		},
		"a CronJob's Job is walked up to the CronJob": {
			pod:  `{"metadata":{"generateName":"backup-28765430-","ownerReferences":[{"apiVersion":"batch/v1","kind":"Job","name":"backup-28765430","controller":true}]}}`,
			want: deployMeta{name: "backup", kind: "CronJob", apiVersion: "batch/v1"},
		},
		"an owner that is not the controller is not the workload": {
			pod:  `{"metadata":{"name":"x","generateName":"x-","ownerReferences":[{"apiVersion":"v1","kind":"Node","name":"n"}]}}`,
			want: deployMeta{name: "x", kind: "Pod", apiVersion: "v1"},
		},
		"a bare pod is its own workload": {
			pod:  `{"metadata":{"name":"debug"}}`,
			want: deployMeta{name: "debug", kind: "Pod", apiVersion: "v1"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var p podIn
			require.NoError(t, json.Unmarshal([]byte(tc.pod), &p))
			assert.Equal(t, tc.want, podDeployMeta(p.Metadata))
		})
	}
}

func TestInjectRefusesOversizedBodies(t *testing.T) {
	tests := map[string]struct {
		contentLength bool
	}{
		"a body announced larger than the limit gets HTTP 413": {contentLength: true},
		"a body streamed past the limit gets HTTP 413 as well": {contentLength: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			inj := newTestInjector(t, &fixedState{}, func(o *InjectorOptions) { o.MaxRequestBytes = 64 })
			body := reviewFor(t, "shop", []byte(plainPod))
			r := httptest.NewRequest(http.MethodPost, PathInject, bytes.NewReader(body))
			if !tc.contentLength {
				r.ContentLength = -1
			}
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			inj.ServeHTTP(w, r)
			assert.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
			assert.Contains(t, w.Body.String(), "exceeds 64 bytes")
		})
	}
}
