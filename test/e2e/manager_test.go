//go:build e2e

package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/charts"
	"github.com/meshrev/meshrev/internal/manager"
	"github.com/meshrev/meshrev/internal/pki"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// stableOnly is a Mesh with one published revision.
func stableOnly() v1alpha1.MeshSpec {
	return v1alpha1.MeshSpec{
		Revisions: []v1alpha1.Revision{{Name: "1-22-6", Version: "1.22.6"}},
		Stable:    "1-22-6",
	}
}

func containerNames(cs []corev1.Container) []string {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block, "PEM in %s", path)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}

func TestManagerServesWebhooksOverTLSFromCertDir(t *testing.T) {
	h := startManager(t)

	served, err := h.servingCert(t.Context())
	require.NoError(t, err, "the webhook server's certificate verifies against the CA for 127.0.0.1")
	assert.True(t, served.Equal(readCert(t, filepath.Join(h.Options.CertDir, "tls.crt"))), "it serves the certificate of --cert-dir")

	assert.Equal(t, "ok", h.get(t, "/healthz"))
	ready := h.get(t, "/readyz?verbose")
	for _, check := range []string{"webhook", "informers"} {
		assert.Contains(t, ready, "[+]"+check+" ok", "readyz checks %s", check)
	}

	createMesh(t, stableOnly())
	ns := NewNamespace(t, "tls", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	waitResolves(t, ns, testPod("probe", nil), "1-22-6")

	injected := map[string]string{"revision": "1-22-6", "result": "injected"}
	before := max(metricValue(h.get(t, "/metrics"), "meshrev_injections_total", injected), 0)
	pod, _, err := createPod(t, ns, testPod("web", nil))
	require.NoError(t, err)
	assert.Equal(t, "1-22-6", pod.Labels[revisions.LabelRevision], "the stored pod carries the revision label")
	assert.NotNil(t, sidecarOf(pod), "istio-proxy")
	assert.Contains(t, containerNames(pod.Spec.InitContainers), "istio-init")

	// The two validating endpoints answer through the API server too.
	_, _, err = updateMesh(t, func(m *v1alpha1.Mesh) {
		m.Spec.Revisions = append(m.Spec.Revisions, v1alpha1.Revision{Name: "1-24-0", Version: "1.24.0"})
		m.Spec.Canary = "1-24-0"
	})
	require.Error(t, err, "skipping a minor version is refused")
	assert.Contains(t, err.Error(), `admission webhook "mesh.meshrev.io" denied the request`)
	warnings := labelNamespace(t, ns, map[string]*string{revisions.LabelRev: new(revisions.TagCanary)})
	assert.NotEmpty(t, warnings, "labelling a namespace with both istio-injection and istio.io/rev is warned about")

	metrics := h.get(t, "/metrics")
	// One webhook call per pod (reinvocationPolicy Never): the API server's
	// ServiceAccount admission, which mounts the token into the injected
	// containers, does not send the pod back.
	after := metricValue(metrics, "meshrev_injections_total", injected)
	assert.Equal(t, before+1, after, "the API server called the injector once for the pod")
	assert.Positive(t, metricValue(metrics, "controller_runtime_webhook_requests_total", map[string]string{"webhook": "/inject", "code": "200"}),
		"controller-runtime's webhook metrics see /inject")
}

func TestSelfManagedCertificatesAreTrustedAndRotateWithoutDroppingRequests(t *testing.T) {
	// Renewal at two thirds of the lifetime: a new serving certificate about
	// every 11s.
	const lifetime = 15 * time.Second
	h := startManager(t, withManageCerts(lifetime))
	c := ctrlClient(t)
	ctx := t.Context()

	var sec corev1.Secret
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &sec))
	assert.Equal(t, corev1.SecretTypeTLS, sec.Type)
	for _, key := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		assert.NotEmpty(t, sec.Data[key], "secret key %s", key)
	}
	caBundle := sec.Data["ca.crt"]
	assertCABundles := func(t *testing.T) {
		var m admissionregistrationv1.MutatingWebhookConfiguration
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: webhookConfigName}, &m))
		for _, w := range m.Webhooks {
			assert.Equal(t, string(caBundle), string(w.ClientConfig.CABundle), "caBundle of mutating webhook %s", w.Name)
		}
		var v admissionregistrationv1.ValidatingWebhookConfiguration
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: webhookConfigName}, &v))
		for _, w := range v.Webhooks {
			assert.Equal(t, string(caBundle), string(w.ClientConfig.CABundle), "caBundle of validating webhook %s", w.Name)
		}
	}
	assertCABundles(t)

	first, err := h.servingCert(ctx)
	require.NoError(t, err, "the served certificate verifies against the Secret's CA for 127.0.0.1")
	for _, host := range []string{"meshrev-webhook.meshrev-system.svc", "meshrev-webhook.meshrev-system.svc.cluster.local", "localhost"} {
		assert.NoError(t, first.VerifyHostname(host), "the serving certificate covers %s", host)
	}

	// The API server trusts the self-managed certificate: pods are injected.
	createMesh(t, stableOnly())
	ns := NewNamespace(t, "certs", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	waitResolves(t, ns, testPod("probe", nil), "1-22-6")
	pod, _, err := createPod(t, ns, testPod("before-rotation", nil))
	require.NoError(t, err)
	require.Equal(t, "1-22-6", pod.Labels[revisions.LabelRevision])

	// Admission requests in a loop across two rotations: none may fail.
	served := admissionLoop(t, h, ns, 4*lifetime, func(certs []*x509.Certificate) bool { return len(certs) >= 3 })
	require.GreaterOrEqual(t, len(served), 3, "the serving certificate rotated twice within %s", 4*lifetime)

	// The CA stayed: the caBundle the API server holds is still the first one.
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &sec))
	assert.Equal(t, string(caBundle), string(sec.Data["ca.crt"]), "serving-certificate rotations keep the CA")
	assertCABundles(t)

	// A restarted manager opens new connections with the rotated certificate
	// from the Secret, which the API server trusts too.
	h.restart(t)
	pod, _, err = createPod(t, ns, testPod("after-restart", nil))
	require.NoError(t, err)
	assert.Equal(t, "1-22-6", pod.Labels[revisions.LabelRevision])
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &sec))
	assert.Equal(t, string(caBundle), string(sec.Data["ca.crt"]), "a restart reuses the CA of the Secret")
}

func TestSelfManagedCARotationSwitchesOnlyAfterTheNewCAIsPublished(t *testing.T) {
	// The CA is renewed after about 15s; the serving certificate switches to
	// the new CA 3s after the bundle with both CAs is published.
	const caLifetime, propagation = 24 * time.Second, 3 * time.Second
	h := startManager(t, withManageCerts(12*time.Second), withCALifetime(caLifetime, propagation))
	c := ctrlClient(t)
	ctx := t.Context()
	createMesh(t, stableOnly())
	ns := NewNamespace(t, "ca", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	waitResolves(t, ns, testPod("probe", nil), "1-22-6")

	var sec corev1.Secret
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &sec))
	firstCA := sec.Data["ca.crt"]

	issuedByNewCA := func(certs []*x509.Certificate) bool { return !issuedBy(certs[len(certs)-1], firstCA) }
	served := admissionLoop(t, h, ns, 3*caLifetime, issuedByNewCA)
	require.True(t, issuedByNewCA(served), "the serving certificate switched to a new CA within %s", 3*caLifetime)

	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &sec))
	assert.NotEmpty(t, sec.Annotations["meshrev.io/ca-since"], "the Secret records when its CA was created")
	bundle := sec.Data["ca.crt"]
	assert.True(t, bytes.HasSuffix(bytes.TrimSpace(bundle), bytes.TrimSpace(firstCA)), "the old CA stays trusted after the new one while it is valid")
	var m admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: webhookConfigName}, &m))
	for _, w := range m.Webhooks {
		assert.Equal(t, string(bundle), string(w.ClientConfig.CABundle), "caBundle of %s trusts both CAs", w.Name)
	}
	for _, cert := range served {
		assert.True(t, issuedBy(cert, bundle), "every certificate served (serial %s) verifies against the published bundle", cert.SerialNumber.Text(16))
	}

	// New connections (a restart) with the new CA's certificate work.
	h.restart(t)
	pod, _, err := createPod(t, ns, testPod("after-ca-rotation", nil))
	require.NoError(t, err)
	assert.Equal(t, "1-22-6", pod.Labels[revisions.LabelRevision])
}

func TestCertificateSecretRaceBetweenReplicasHasOneWinner(t *testing.T) {
	c := ctrlClient(t)
	ensureNamespace(t, c, meshrevNamespace)
	name := "meshrev-e2e-race-" + strings.ToLower(rand.String(5))
	t.Cleanup(func() {
		deleteIfExists(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: name}})
	})
	var offset atomic.Int64 // the replicas' shared clock, moved to force a renewal
	const replicas = 5
	rotators := make([]*pki.Rotator, replicas)
	certDirs := make([]string, replicas)
	for i := range rotators {
		certDirs[i] = t.TempDir()
		r, err := pki.NewRotator(c, pki.Options{
			Namespace: meshrevNamespace, SecretName: name, CertDir: certDirs[i],
			ExtraHosts:                   []string{"127.0.0.1"},
			MutatingWebhookConfiguration: "-", ValidatingWebhookConfiguration: "-",
			CALifetime: time.Hour, CertLifetime: 30 * time.Minute,
			Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
		})
		require.NoError(t, err)
		rotators[i] = r
	}
	// syncAll runs every replica's Sync at once and returns the serial and CA
	// each ended up with.
	syncAll := func() (serials, cas []string) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, replicas)
		for i, r := range rotators {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = r.Sync(t.Context())
			}()
		}
		close(start)
		wg.Wait()
		for i, r := range rotators {
			require.NoError(t, errs[i], "replica %d", i)
			serials = append(serials, r.Current().Cert().SerialNumber.Text(16))
			cas = append(cas, r.Current().CA().SerialNumber.Text(16))
		}
		return serials, cas
	}
	same := func(t *testing.T, what string, values []string) {
		t.Helper()
		for i, v := range values {
			assert.Equal(t, values[0], v, "replica %d ends with the winner's %s", i, what)
		}
	}

	serials, cas := syncAll()
	same(t, "serving certificate", serials)
	same(t, "CA", cas)
	var sec corev1.Secret
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: meshrevNamespace, Name: name}, &sec))
	for i := range rotators {
		onDisk, err := os.ReadFile(filepath.Join(certDirs[i], "tls.crt"))
		require.NoError(t, err)
		assert.Equal(t, string(sec.Data["tls.crt"]), string(onDisk), "replica %d serves the Secret's certificate", i)
	}

	// Past two thirds of the lifetime every replica wants to renew at once:
	// one update wins, the others read it.
	offset.Store(int64(21 * time.Minute))
	renewed, renewedCAs := syncAll()
	same(t, "renewed serving certificate", renewed)
	same(t, "CA", renewedCAs)
	assert.NotEqual(t, serials[0], renewed[0], "the serving certificate was renewed")
	assert.Equal(t, cas[0], renewedCAs[0], "the CA was kept")
}

// admissionLoop dry-runs pod creations in ns every 100ms until done(the
// distinct serving certificates seen so far) or max elapsed; every request
// must be admitted and injected with 1-22-6. It returns the certificates the
// webhook server presented, in order.
func admissionLoop(t *testing.T, h *managerHandle, ns string, max time.Duration, done func([]*x509.Certificate) bool) []*x509.Certificate {
	t.Helper()
	ctx := t.Context()
	first, err := h.servingCert(ctx)
	require.NoError(t, err)
	served := []*x509.Certificate{first}
	var requests int
	var failures []string
	deadline := time.Now().Add(max)
	for i := 0; !done(served) && time.Now().Before(deadline); i++ {
		got, _, err := dryRunPod(t, ns, testPod(fmt.Sprintf("loop-%d", i), nil))
		requests++
		switch {
		case err != nil:
			failures = append(failures, fmt.Sprintf("request %d: %v", i, err))
		case got.Labels[revisions.LabelRevision] != "1-22-6":
			failures = append(failures, fmt.Sprintf("request %d: not injected", i))
		}
		// The webhook server keeps a certificate that verifies against the
		// bundle the manager published.
		var sec corev1.Secret
		require.NoError(t, ctrlClient(t).Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &sec))
		h.CABundle = sec.Data["ca.crt"]
		cert, err := h.servingCert(ctx)
		require.NoError(t, err, "request %d: the served certificate verifies against the published CA bundle", i)
		if !cert.Equal(served[len(served)-1]) {
			served = append(served, cert)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d admission requests across %d serving certificates, %d failed", requests, len(served), len(failures))
	assert.Empty(t, failures, "no admission request fails during rotation")
	return served
}

// issuedBy reports whether cert verifies against the CAs of bundle (PEM),
// in the middle of its validity (short-lived test certificates expire
// during a test).
func issuedBy(cert *x509.Certificate, bundle []byte) bool {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		return false
	}
	mid := cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2)
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: mid})
	return err == nil
}

func TestLeaderElectionRunsOneControllerWhileEveryReplicaServesWebhooks(t *testing.T) {
	first := startManager(t, withLeaderElection())
	second := startManager(t, withLeaderElection(), asReplica())
	ctx := t.Context()
	c := ctrlClient(t)
	reconciling := regexp.MustCompile(`Starting workers.*"controller": "mesh"`)

	holder := func() string {
		var lease coordinationv1.Lease
		if err := c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: leaseName}, &lease); err != nil || lease.Spec.HolderIdentity == nil {
			return ""
		}
		return *lease.Spec.HolderIdentity
	}
	require.Eventually(t, func() bool { return first.logContains(reconciling) }, 30*time.Second, 100*time.Millisecond, "the first manager is elected and starts the controller")
	leader := holder()
	require.NotEmpty(t, leader, "the Lease %s/%s names its holder", meshrevNamespace, leaseName)

	// Several retry periods later the second replica still only stands by.
	time.Sleep(3 * time.Second)
	assert.False(t, second.logContains(reconciling), "the standby does not run the controller")
	assert.Equal(t, leader, holder(), "the leader keeps the Lease")

	// Both replicas answer admission requests.
	for _, h := range []*managerHandle{first, second} {
		resp := postPodReview(t, h, testPod("direct", map[string]string{revisions.LabelSidecarInject: "true"}), probeNamespace)
		// No Mesh here: the answer is the no-Mesh refusal (--no-mesh-policy Deny).
		require.NotNil(t, resp.Result, "manager %s answers", h.Name)
		assert.Contains(t, resp.Result.Message, "no Mesh", "manager %s decides the pod", h.Name)
		assert.NotEmpty(t, resp.UID)
	}

	// The leader steps down on shutdown (it releases the Lease): the standby
	// takes over without waiting for the Lease to expire.
	stopped := time.Now()
	first.stop(t)
	require.Eventually(t, func() bool { return second.logContains(reconciling) }, 30*time.Second, 100*time.Millisecond, "the standby starts the controller")
	t.Logf("standby took over %s after the leader stopped", time.Since(stopped).Round(10*time.Millisecond))
	assert.Eventually(t, func() bool { h := holder(); return h != "" && h != leader }, 10*time.Second, 100*time.Millisecond, "the Lease names the new leader")
}

// postPodReview sends an AdmissionReview for creating pod in ns straight to
// the manager's /inject (TLS verified against its CA bundle) and returns the
// response.
func postPodReview(t *testing.T, h *managerHandle, pod *corev1.Pod, ns string) *admissionv1.AdmissionResponse {
	t.Helper()
	pod = pod.DeepCopy()
	pod.Namespace = ns
	raw, err := json.Marshal(pod)
	require.NoError(t, err)
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(fmt.Sprintf("e2e-%d", time.Now().UnixNano())),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:      pod.Name,
			Namespace: ns,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.URL+"/inject", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.httpClient(t).Do(req)
	require.NoError(t, err, "POST %s/inject", h.URL)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "response %s", out)
	var got admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(out, &got))
	require.NotNil(t, got.Response)
	assert.Equal(t, review.Request.UID, got.Response.UID)
	return got.Response
}

func TestInjectedDeploymentRollsOutAndRestarts(t *testing.T) {
	startManager(t)
	createMesh(t, stableOnly())
	ns := NewNamespace(t, "rollout", map[string]string{revisions.LabelRev: revisions.TagStable})
	waitResolves(t, ns, testPod("probe", nil), "1-22-6")

	applyDeployment(t, ns, simpleDeployment("web", 2, nil))
	pods := waitRollout(t, ns, "web")
	before := podRevisions(t, ns, "app=web")
	require.Len(t, before, 2)
	for name, rev := range before {
		assert.Equal(t, "1-22-6", rev, "pod %s", name)
	}
	for _, p := range pods {
		assert.NotNil(t, sidecarOf(&p), "pod %s has istio-proxy", p.Name)
	}

	rolloutRestart(t, ns, "web")
	require.Eventually(t, func() bool {
		waitRollout(t, ns, "web")
		after := podRevisions(t, ns, "app=web")
		for name := range after {
			if _, old := before[name]; old {
				return false
			}
		}
		return len(after) == 2
	}, 2*time.Minute, 500*time.Millisecond, "the restart replaces every pod")
	for name, rev := range podRevisions(t, ns, "app=web") {
		assert.Equal(t, "1-22-6", rev, "restarted pod %s is injected", name)
	}
}

// TestWebhookSelectorsSendEveryCandidatePod checks the chart's selectors
// end to end: for every combination of namespace and pod labels, the pod
// the API server admits carries exactly the revision revisions.Resolve
// decides, so no candidate of the decision table is filtered out before it
// reaches the injector; and pods in kube-system and meshrev's own namespace
// never reach it (the injection counter does not move).
func TestWebhookSelectorsSendEveryCandidatePod(t *testing.T) {
	h := startManager(t)
	spec := v1alpha1.MeshSpec{
		Revisions: []v1alpha1.Revision{{Name: "1-22-6", Version: "1.22.6"}, {Name: "1-23-6", Version: "1.23.6"}},
		Stable:    "1-22-6",
		Canary:    "1-23-6",
	}
	createMesh(t, spec)

	nsCases := map[string]map[string]string{
		"plain":        nil,
		"enabled":      {revisions.LabelInjection: revisions.InjectionEnabled},
		"disabled":     {revisions.LabelInjection: revisions.InjectionDisabled},
		"rev-stable":   {revisions.LabelRev: revisions.TagStable},
		"rev-canary":   {revisions.LabelRev: revisions.TagCanary},
		"rev-name":     {revisions.LabelRev: "1-23-6"},
		"rev-unknown":  {revisions.LabelRev: "1-99-0"},
		"enabled-rev":  {revisions.LabelInjection: revisions.InjectionEnabled, revisions.LabelRev: revisions.TagCanary},
		"disabled-rev": {revisions.LabelInjection: revisions.InjectionDisabled, revisions.LabelRev: revisions.TagCanary},
	}
	podCases := map[string]struct {
		labels, annotations map[string]string
	}{
		"plain":            {},
		"rev-stable":       {labels: map[string]string{revisions.LabelRev: revisions.TagStable}},
		"rev-canary":       {labels: map[string]string{revisions.LabelRev: revisions.TagCanary}},
		"rev-name":         {labels: map[string]string{revisions.LabelRev: "1-22-6"}},
		"inject-true":      {labels: map[string]string{revisions.LabelSidecarInject: "true"}},
		"inject-false":     {labels: map[string]string{revisions.LabelSidecarInject: "false"}},
		"inject-false-ann": {annotations: map[string]string{revisions.LabelSidecarInject: "false"}, labels: map[string]string{revisions.LabelRev: revisions.TagCanary}},
		"rev-and-false":    {labels: map[string]string{revisions.LabelRev: revisions.TagCanary, revisions.LabelSidecarInject: "false"}},
	}

	namespaces := map[string]string{}
	for name, labels := range nsCases {
		namespaces[name] = NewNamespace(t, "sel-"+name, labels)
	}
	injectedCases := 0
	for nsName, nsLabels := range nsCases {
		ns := namespaces[nsName]
		for podName, pc := range podCases {
			pod := testPod("p-"+podName, pc.labels)
			pod.Annotations = pc.annotations
			d := revisions.Resolve(&spec, meshrevNamespace, revisions.Subject{
				Namespace: ns, NamespaceLabels: nsLabels, Labels: pod.Labels, Annotations: pod.Annotations,
			})
			want := d.RevisionName()
			if d.Inject {
				injectedCases++
			}
			// waitResolves also rides out the injector's namespace cache catching up.
			t.Run(fmt.Sprintf("namespace %s, pod %s: %s", nsName, podName, d.Reason), func(t *testing.T) {
				waitResolves(t, ns, pod, want)
			})
		}
	}
	require.Positive(t, injectedCases, "the matrix holds injected cases")

	// Never sent: the counter of every request the injector handles stays put.
	total := func() float64 { return max(metricValue(h.get(t, "/metrics"), "meshrev_injections_total", nil), 0) }
	before := total()
	for _, ns := range []string{"kube-system", meshrevNamespace} {
		for _, labels := range []map[string]string{
			{revisions.LabelSidecarInject: "true"},
			{revisions.LabelRev: revisions.TagStable},
		} {
			got, _, err := dryRunPod(t, ns, testPod("never", labels))
			require.NoError(t, err)
			assert.Empty(t, got.Labels[revisions.LabelRevision], "a pod in %s is never injected", ns)
		}
	}
	// One request that is sent, so that the counter demonstrably moves. It
	// names an unpublished revision, so it is admitted unchanged and not
	// re-invoked: it counts exactly once.
	_, warnings, err := dryRunPod(t, namespaces["rev-unknown"], testPod("sent", nil))
	require.NoError(t, err)
	require.NotEmpty(t, warnings, "the unknown revision is warned about")
	assert.Equal(t, before+1, total(), "only the pod outside kube-system and %s reached the injector", meshrevNamespace)
}

// Guard the helpers other tests rely on against silent breakage.
func TestHarnessHelpers(t *testing.T) {
	t.Run("metricValue sums matching samples and says when there are none", func(t *testing.T) {
		text := strings.Join([]string{
			`# HELP meshrev_injections_total x`,
			`meshrev_injections_total{reason="NamespaceInjectionEnabled",result="injected",revision="1-22-6"} 3`,
			`meshrev_injections_total{reason="PodRevisionLabel",result="injected",revision="1-23-6"} 2`,
			`meshrev_injections_total{reason="NotSelected",result="skipped",revision=""} 7`,
		}, "\n")
		assert.Equal(t, 5.0, metricValue(text, "meshrev_injections_total", map[string]string{"result": "injected"}))
		assert.Equal(t, 12.0, metricValue(text, "meshrev_injections_total", nil))
		assert.Equal(t, -1.0, metricValue(text, "meshrev_other", nil))
	})
	t.Run("the chart's webhook configurations point at the URL on every path", func(t *testing.T) {
		m, v := renderWebhookConfigs(t, "https://127.0.0.1:1234")
		for _, w := range m.Webhooks {
			require.NotNil(t, w.ClientConfig.URL)
			assert.Equal(t, "https://127.0.0.1:1234/inject", *w.ClientConfig.URL, "webhook %s", w.Name)
			assert.Nil(t, w.ClientConfig.Service)
			assert.Equal(t, admissionregistrationv1.Fail, *w.FailurePolicy, "webhook %s", w.Name)
			assert.Equal(t, admissionregistrationv1.SideEffectClassNone, *w.SideEffects, "webhook %s", w.Name)
			assert.Equal(t, admissionregistrationv1.NeverReinvocationPolicy, *w.ReinvocationPolicy, "webhook %s", w.Name)
			assert.Equal(t, int32(10), *w.TimeoutSeconds, "webhook %s", w.Name)
			require.NotNil(t, w.NamespaceSelector)
			excluded := false
			for _, e := range w.NamespaceSelector.MatchExpressions {
				if e.Key == "kubernetes.io/metadata.name" && e.Operator == metav1.LabelSelectorOpNotIn {
					excluded = slices.Contains(e.Values, "kube-system") && slices.Contains(e.Values, meshrevNamespace)
				}
			}
			assert.True(t, excluded, "webhook %s never selects kube-system or %s", w.Name, meshrevNamespace)
		}
		var paths []string
		for _, w := range v.Webhooks {
			require.NotNil(t, w.ClientConfig.URL)
			paths = append(paths, strings.TrimPrefix(*w.ClientConfig.URL, "https://127.0.0.1:1234"))
		}
		slices.Sort(paths)
		assert.Equal(t, []string{"/validate-mesh", "/validate-namespace", "/validate-templates"}, paths)
	})
	t.Run("podRevisions lists live pods with their revision", func(t *testing.T) {
		ns := NewNamespace(t, "helpers", nil)
		_, _, err := createPod(t, ns, testPod("bare", nil))
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"bare": ""}, podRevisions(t, ns, ""))
	})
}

// TestTemplatesComeFromConfigMapsInTheCache runs the manager with
// --templates-configmap: the cluster's default templates come from that
// ConfigMap, a revision's own templates ConfigMap overrides them, and an
// edit of the ConfigMap applies to the next pod without a restart.
func TestTemplatesComeFromConfigMapsInTheCache(t *testing.T) {
	c := ctrlClient(t)
	ctx := t.Context()
	ensureNamespace(t, c, meshrevNamespace)
	sidecar, gateway := charts.DefaultTemplates()
	// withLabel adds a label to what the sidecar template sets on the pod.
	withLabel := func(value string) string {
		out := strings.Replace(sidecar, "\nlabels:\n", "\nlabels:\n  e2e.meshrev.io/template: "+value+"\n", 1)
		require.NotEqual(t, sidecar, out, "the default sidecar template has a labels: section")
		return out
	}
	configMap := func(name, value string) *corev1.ConfigMap {
		return &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: name},
			Data:       map[string]string{revisions.TemplateSidecar: withLabel(value), revisions.TemplateGateway: gateway},
		}
	}
	defaults, own := configMap("meshrev-e2e-templates", "cluster-default"), configMap("meshrev-e2e-templates-1-23-6", "revision-own")
	for _, cm := range []*corev1.ConfigMap{defaults, own} {
		deleteIfExists(t, c, cm.DeepCopy())
		require.NoError(t, c.Create(ctx, cm))
		t.Cleanup(func() { deleteIfExists(t, c, &corev1.ConfigMap{ObjectMeta: cm.ObjectMeta}) })
	}

	startManager(t, withManagerOptions(func(o *manager.Options) { o.TemplatesConfigMap = defaults.Name }))
	createMesh(t, v1alpha1.MeshSpec{
		Revisions: []v1alpha1.Revision{
			{Name: "1-22-6", Version: "1.22.6"},
			{Name: "1-23-6", Version: "1.23.6", Templates: own.Name},
		},
		Stable: "1-22-6",
		Canary: "1-23-6",
	})
	ns := NewNamespace(t, "templates", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})

	pod, _ := waitResolves(t, ns, testPod("stable", nil), "1-22-6")
	assert.Equal(t, "cluster-default", pod.Labels["e2e.meshrev.io/template"], "stable uses the --templates-configmap templates")
	pod, _ = waitResolves(t, ns, testPod("canary", map[string]string{revisions.LabelRev: revisions.TagCanary}), "1-23-6")
	assert.Equal(t, "revision-own", pod.Labels["e2e.meshrev.io/template"], "the canary uses its own templates ConfigMap")

	// Edit the default ConfigMap: the next pod gets the new template, read
	// from the manager's cache, without a restart.
	require.NoError(t, c.Update(ctx, configMap(defaults.Name, "edited")))
	require.Eventually(t, func() bool {
		got, _, err := dryRunPod(t, ns, testPod("stable-edited", nil))
		return err == nil && got.Labels["e2e.meshrev.io/template"] == "edited"
	}, 30*time.Second, 100*time.Millisecond, "the edited template applies to new pods")
}
