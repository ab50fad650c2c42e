//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/devcluster"
	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
	"github.com/meshrev/meshrev/webhook"
)

// TestInjectorThroughTheAPIServer runs the Injector alone (no manager) on a
// real informer cache, registers it with a MutatingWebhookConfiguration
// limited to this test's namespaces, and lets the API server and the
// ReplicaSet controller send it real pods: the patches must pass the API
// server's validation, the cache-backed State must follow Mesh and namespace
// changes, and a revision's own templates ConfigMap must be used.
func TestInjectorThroughTheAPIServer(t *testing.T) {
	ctx := t.Context()
	c := ctrlClient(t)
	ensureMeshCRD(t, c)
	const own = "meshrev-system"
	ensureNamespace(t, c, own)
	token := rand.String(8)

	// A revision with its own templates: the default sidecar plus a marker.
	def := webhook.DefaultTemplates()
	tmplCM := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: own, Name: "inject-e2e-" + token},
		Data: map[string]string{
			revisions.TemplateSidecar: strings.Replace(def.Sidecar, "\nlabels:\n", "\nannotations:\n  e2e.meshrev.io/template: \"{{ .Revision.Name }}\"\nlabels:\n", 1),
		},
	}
	require.NoError(t, c.Create(ctx, tmplCM))
	t.Cleanup(func() { deleteIfExists(t, c, tmplCM) })

	spec := v1alpha1.MeshSpec{
		Revisions: []v1alpha1.Revision{
			{Name: "1-22-6", Version: "1.22.6"},
			{Name: "1-23-6", Version: "1.23.6", Templates: tmplCM.Name},
		},
		Stable: "1-22-6", Canary: "1-23-6", UnknownRevisionPolicy: v1alpha1.UnknownRevisionAllow,
	}
	injSetMesh(t, c, spec)
	t.Cleanup(func() { require.NoError(t, forceDeleteMesh(context.Background(), c)) })

	// The injector on a real cache, served over TLS on 127.0.0.1.
	scheme, err := readmodel.Scheme()
	require.NoError(t, err)
	// Every request the injector's cache makes goes through a counter, so
	// that the test can prove admissions make none.
	calls := &countingTransport{}
	cfg := rest.CopyConfig(Env().Config)
	cfg.Wrap(calls.wrap)
	informers, err := cache.New(cfg, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{own: {}}},
	}})
	require.NoError(t, err)
	cctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	state, err := webhook.NewCacheState(cctx, informers, nil)
	require.NoError(t, err)
	_, err = informers.GetInformer(cctx, &corev1.ConfigMap{})
	require.NoError(t, err)
	go func() { _ = informers.Start(cctx) }()
	require.True(t, informers.WaitForCacheSync(cctx), "cache never synced")

	reg := prometheus.NewRegistry()
	inj, err := webhook.NewInjector(webhook.InjectorOptions{
		OwnNamespace: own,
		State:        state,
		Templates:    webhook.NewConfigMapTemplateSource(webhook.ConfigMapTemplatesOptions{Reader: informers, Namespace: own}),
		Registerer:   reg,
	})
	require.NoError(t, err)
	srv, err := devcluster.StartWebhookServer(inj)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })

	// ValidateRevision reads the revision's ConfigMap from the same cache.
	require.NoError(t, inj.ValidateRevision(ctx, nil, spec.Revisions[1]))
	require.ErrorContains(t, inj.ValidateRevision(ctx, nil, v1alpha1.Revision{Name: "1-23-7", Version: "1.23.7", Templates: "missing-" + token}), "not found")

	injRegister(t, c, srv, token)

	enabled := NewNamespace(t, "inj-enabled", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled, "e2e.meshrev.io/inject": token})
	canary := NewNamespace(t, "inj-canary", map[string]string{revisions.LabelRev: revisions.TagCanary, "e2e.meshrev.io/inject": token})
	pinned := NewNamespace(t, "inj-pinned", map[string]string{revisions.LabelRev: "1-99-0", "e2e.meshrev.io/inject": token})

	t.Run("a Deployment's pods are injected with the stable revision and become Ready", func(t *testing.T) {
		d := applyDeployment(t, enabled, simpleDeployment("reviews-v2", 2, map[string]string{"version": "v2"}))
		pods := injWaitPods(t, enabled, "app=reviews-v2", 2)
		for _, p := range pods {
			assert.Equal(t, "1-22-6", p.Labels[revisions.LabelRevision])
			// sidecarMode Auto on the 1.36 nodes: a native sidecar.
			assert.Equal(t, []string{"app"}, containerNames(p.Spec.Containers))
			assert.Equal(t, []string{"istio-init", "istio-proxy"}, containerNames(p.Spec.InitContainers))
			assert.Equal(t, "docker.io/istio/proxyv2:1.22.6", p.Spec.InitContainers[1].Image)
			assert.Contains(t, injEnvValue(p.Spec.InitContainers[1], "ISTIO_META_WORKLOAD_NAME"), d.Name)
		}
		injWaitPodsReady(t, enabled, "app=reviews-v2", 2)
	})

	t.Run("a namespace on the canary tag gets the canary with the revision's own template", func(t *testing.T) {
		p, warnings, err := createPod(t, canary, testPod("canary-probe", nil))
		require.NoError(t, err)
		assert.Empty(t, warnings)
		assert.Equal(t, "1-23-6", p.Labels[revisions.LabelRevision])
		assert.Equal(t, "1-23-6", p.Annotations["e2e.meshrev.io/template"])
		require.NotNil(t, sidecarOf(p))
		assert.Equal(t, "docker.io/istio/proxyv2:1.23.6", sidecarOf(p).Image)
	})

	t.Run("a gateway keeps its container and gets the proxy image", func(t *testing.T) {
		gw := testPod("ingressgateway", map[string]string{revisions.LabelIstio: "ingressgateway"})
		// Istio's gateway chart: the annotation chooses the gateway template.
		gw.Annotations = map[string]string{revisions.AnnotationTemplates: revisions.TemplateGateway}
		gw.Spec.Containers[0].Name, gw.Spec.Containers[0].Image = "istio-proxy", "auto"
		p, _, err := createPod(t, enabled, gw)
		require.NoError(t, err)
		require.Len(t, p.Spec.Containers, 1)
		assert.Equal(t, "docker.io/istio/proxyv2:1.22.6", p.Spec.Containers[0].Image)
		assert.Empty(t, p.Spec.InitContainers)
	})

	t.Run("an unpublished revision warns, then is refused once the Mesh says Deny", func(t *testing.T) {
		p, warnings, err := createPod(t, pinned, testPod("pinned-allow", nil))
		require.NoError(t, err)
		assert.NotContains(t, p.Labels, revisions.LabelRevision)
		require.Len(t, warnings, 1)
		assert.Contains(t, warnings[0], `names revision "1-99-0", which is not published (published: 1-22-6 (stable), 1-23-6 (canary))`)

		spec.UnknownRevisionPolicy = v1alpha1.UnknownRevisionDeny
		injSetMesh(t, c, spec)
		var last error
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, _, last = dryRunPodCtx(ctx, pinned, testPod("pinned-deny", nil))
			return last != nil, nil
		})
		require.NoError(t, err, "the Deny policy never reached the injector's cache")
		assert.True(t, apierrors.IsForbidden(last), "want Forbidden, got %v", last)
		assert.Contains(t, last.Error(), "unknownRevisionPolicy: Deny")
	})

	t.Run("the API server calls the injector once per pod, even when a later webhook changes it", func(t *testing.T) {
		// A second webhook, ordered after ours, adds a label, and the
		// ServiceAccount admission mounts the token into the injected
		// containers: with reinvocationPolicy Never (the chart's, Istio's)
		// neither sends the pod back to the injector.
		labeler, err := devcluster.StartWebhookServer(http.HandlerFunc(addLabelWebhook))
		require.NoError(t, err)
		t.Cleanup(func() { _ = labeler.Close() })
		injRegisterLabeler(t, c, labeler, token)
		before := injectedCount(t, reg, "1-22-6")
		p, _, err := createPod(t, enabled, testPod("reinvoked", nil))
		require.NoError(t, err)
		assert.InDelta(t, 1, injectedCount(t, reg, "1-22-6")-before, 0, "the injector must have been called exactly once for the pod")
		assert.Equal(t, "true", p.Labels["e2e.meshrev.io/touched"], "the second webhook did not run")
		assert.Equal(t, []string{"app"}, containerNames(p.Spec.Containers))
		assert.Equal(t, []string{"istio-init", "istio-proxy"}, containerNames(p.Spec.InitContainers))
		names := map[string]int{}
		for _, v := range p.Spec.Volumes {
			names[v.Name]++
		}
		for n, k := range names {
			assert.Equal(t, 1, k, "volume %s", n)
		}
	})

	t.Run("admissions after the cache synced make no API call", func(t *testing.T) {
		// Warm up: both revisions (the canary with its own templates
		// ConfigMap) and every namespace are read once, and the cache has
		// caught up with the Deny policy set above.
		for _, ns := range []string{enabled, canary} {
			_, _, err := dryRunPod(t, ns, testPod("warm-up", nil))
			require.NoError(t, err)
		}
		const n = 40
		synced, _ := calls.snapshot()
		require.NotEmpty(t, synced, "the counter must have seen the cache's initial lists, or it counts nothing")
		before := injectedCount(t, reg, "1-22-6") + injectedCount(t, reg, "1-23-6")
		calls.reset()
		for k := range n {
			ns := []string{enabled, canary}[k%2]
			p, _, err := dryRunPod(t, ns, testPod(fmt.Sprintf("no-api-call-%d", k), nil))
			require.NoError(t, err)
			require.NotEmpty(t, p.Labels[revisions.LabelRevision], "pod %d in %s not injected", k, ns)
		}
		got := injectedCount(t, reg, "1-22-6") + injectedCount(t, reg, "1-23-6") - before
		// One call per pod, although the labeler registered above changes
		// each pod after the injector (reinvocationPolicy Never).
		require.InDelta(t, n, got, 0, "the injector must have injected every pod, once")
		reqs, watches := calls.snapshot()
		assert.Empty(t, reqs, "the injector's client made API calls during %d admissions", n)
		t.Logf("%d admissions through the API server: %d API requests by the injector's client (%d watch re-establishments, not counted)", n, len(reqs), watches)
	})

	t.Run("the cache-backed State answers from memory", func(t *testing.T) {
		// The figures behind NewCacheState's choice of shared (not deep-copied)
		// cache reads; logged, not asserted.
		lookup := func() {
			if m, err := state.Mesh(ctx); err != nil || m == nil {
				t.Fatalf("Mesh missing from the cache (error %v)", err)
			}
			if _, ok, err := state.NamespaceLabels(ctx, enabled); err != nil || !ok {
				t.Fatalf("namespace missing from the cache (error %v)", err)
			}
		}
		deepCopy := func() {
			var m v1alpha1.Mesh
			var ns corev1.Namespace
			require.NoError(t, informers.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &m))
			require.NoError(t, informers.Get(ctx, client.ObjectKey{Name: enabled}, &ns))
		}
		for name, f := range map[string]func(){"shared (NewCacheState)": lookup, "deep-copied (cache default)": deepCopy} {
			allocs := testing.AllocsPerRun(2000, f)
			start := time.Now()
			for range 20000 {
				f()
			}
			t.Logf("State lookup, Mesh + namespace, %s: %v/op, %.0f allocs/op", name, time.Since(start)/20000, allocs)
		}
	})

	t.Run("a namespace switched to canary gets the canary for its next pods", func(t *testing.T) {
		var ns corev1.Namespace
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: enabled}, &ns))
		delete(ns.Labels, revisions.LabelInjection)
		ns.Labels[revisions.LabelRev] = revisions.TagCanary
		require.NoError(t, c.Update(ctx, &ns))
		waitResolves(t, enabled, testPod("switched", nil), "1-23-6")
	})
}

// countingTransport records the requests of a client (rest.Config.Wrap).
// Watch requests are counted apart: an informer re-establishes its watch now
// and then, which is not a call made for an admission.
type countingTransport struct {
	mu      sync.Mutex
	reqs    []string
	watches int
}

func (c *countingTransport) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		c.mu.Lock()
		if r.URL.Query().Get("watch") == "true" {
			c.watches++
		} else {
			c.reqs = append(c.reqs, r.Method+" "+r.URL.RequestURI())
		}
		c.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

func (c *countingTransport) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs, c.watches = nil, 0
}

// snapshot returns the requests (method and URI) other than watches, and
// the number of watches, since the last reset.
func (c *countingTransport) snapshot() ([]string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.reqs...), c.watches
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func injSetMesh(t *testing.T, c client.Client, spec v1alpha1.MeshSpec) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var m v1alpha1.Mesh
		err := c.Get(t.Context(), client.ObjectKey{Name: v1alpha1.MeshName}, &m)
		if apierrors.IsNotFound(err) {
			return c.Create(t.Context(), &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}, Spec: spec})
		}
		if err != nil {
			return err
		}
		m.Spec = spec
		return c.Update(t.Context(), &m)
	})
	require.NoError(t, err, "apply Mesh %s", v1alpha1.MeshName)
}

// injRegister points a MutatingWebhookConfiguration at srv for the
// namespaces labelled e2e.meshrev.io/inject=token only.
func injRegister(t *testing.T, c client.Client, srv *devcluster.WebhookServer, token string) {
	t.Helper()
	url := srv.URL + webhook.PathInject
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	timeout := int32(10)
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "meshrev-e2e-inject-" + token},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.e2e.meshrev.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: srv.CABundle},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.meshrev.io/inject": token}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			ReinvocationPolicy:      &never,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	require.NoError(t, c.Create(t.Context(), cfg))
	t.Cleanup(func() { deleteIfExists(t, c, cfg) })
}

func injWaitPods(t *testing.T, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := Client(t).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		pods = list.Items
		return len(pods) == n, nil
	})
	require.NoError(t, err, "want %d pods %s in %s, have %d", n, selector, ns, len(pods))
	return pods
}

func injWaitPodsReady(t *testing.T, ns, selector string, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := Client(t).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, p := range list.Items {
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == n, nil
	})
	require.NoError(t, err, "pods %s in %s never all Ready", selector, ns)
}

func injEnvValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return fmt.Sprintf("<no env %s>", name)
}

// addLabelWebhook is a second mutating webhook: it labels every pod
// e2e.meshrev.io/touched=true once.
func addLabelWebhook(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	var pod corev1.Pod
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err == nil && pod.Labels["e2e.meshrev.io/touched"] == "" {
		op := `{"op":"add","path":"/metadata/labels/e2e.meshrev.io~1touched","value":"true"}`
		if pod.Labels == nil {
			op = `{"op":"add","path":"/metadata/labels","value":{"e2e.meshrev.io/touched":"true"}}`
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = []byte("["+op+"]"), &pt
	}
	review.Response, review.Request = resp, nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}

// injRegisterLabeler registers addLabelWebhook after the injector (webhooks
// run in the order of their configurations' names).
func injRegisterLabeler(t *testing.T, c client.Client, srv *devcluster.WebhookServer, token string) {
	t.Helper()
	url := srv.URL + "/label"
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "meshrev-e2e-inject-" + token + "-zz-labeler"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "label.e2e.meshrev.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: srv.CABundle},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.meshrev.io/inject": token}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	require.NoError(t, c.Create(t.Context(), cfg))
	t.Cleanup(func() { deleteIfExists(t, c, cfg) })
}

// injectedCount sums meshrev_injections_total{revision=rev,result="injected"}
// over the decision's reasons.
func injectedCount(t *testing.T, reg *prometheus.Registry, rev string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, f := range families {
		if f.GetName() != "meshrev_injections_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["revision"] == rev && labels["result"] == "injected" {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
