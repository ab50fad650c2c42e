//go:build e2e

package e2e

// The e2e harness: it runs meshrev's manager in-process (manager.Run) against
// the shared local cluster, points meshrev's webhook configurations at it by
// URL, and offers small helpers for workloads, namespaces and the Mesh.
//
// A test that needs meshrev calls startManager(t). Only one manager owns the
// cluster-scoped webhook configurations at a time (startManager serializes on
// managerMu), so such tests need not avoid t.Parallel but gain nothing from
// it. Pods do not really run in the local cluster, so meshrev's manager runs
// here and the API server calls it at https://127.0.0.1:<port>/<path>.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"go.uber.org/zap/zapcore"

	"github.com/meshrev/meshrev/internal/devcluster"
	"github.com/meshrev/meshrev/internal/manager"
	"github.com/meshrev/meshrev/internal/pki"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Names fixed by the shared contract.
const (
	// meshrevNamespace is meshrev's own namespace (never injected; Lease,
	// certificate Secret, templates ConfigMaps).
	meshrevNamespace = "meshrev-system"
	// controlPlaneNamespace is the mesh namespace of the control planes.
	controlPlaneNamespace = "istio-system"
	// webhookConfigName names both webhook configurations.
	webhookConfigName = "meshrev"
	// leaseName is the manager's leader-election Lease in meshrevNamespace.
	leaseName = manager.DefaultLeaderElectionID
	// probeNamespace is an unlabelled namespace where the harness dry-runs a
	// pod labelled sidecar.istio.io/inject=true (row 8 of the table) to see
	// that the API server reaches the webhook. It is unlabelled on purpose:
	// it never shows up in the Mesh status.
	probeNamespace = "meshrev-e2e-probe"
	// managerReadyTimeout bounds a manager's start (readyz, then a webhook round trip).
	managerReadyTimeout = 90 * time.Second
)

// managerMu is held by the manager that owns the webhook configurations,
// from startManager until its test's cleanup; managerOwner names that test.
var (
	managerMu    sync.Mutex
	managerOwner struct {
		sync.Mutex
		test string
	}
)

// managerSetup is what the managerOptions of startManager configure.
type managerSetup struct {
	opts manager.Options
	// replica: run another replica next to the test's first manager: no
	// webhook configurations of its own, no lock.
	replica bool
}

// managerOption configures startManager.
type managerOption func(*managerSetup)

// withManageCerts runs the manager with self-managed certificates
// (--manage-certs, --webhook-url): it creates its CA and serving certificate
// in the Secret meshrev-webhook-tls and patches caBundle into the webhook
// configurations, which the harness creates without one. certLifetime, when
// not zero, shortens the serving certificate's lifetime to force rotations
// (renewal at two thirds), checked every second.
func withManageCerts(certLifetime time.Duration) managerOption {
	return func(s *managerSetup) {
		s.opts.Certs.Manage = true
		if certLifetime > 0 {
			s.opts.Certs.CertLifetime = certLifetime
			s.opts.Certs.ResyncInterval = time.Second
		}
	}
}

// withCALifetime shortens the self-managed CA's lifetime (with
// withManageCerts) to force a CA rotation, with the new CA published for
// propagation before the serving certificate switches to it.
func withCALifetime(lifetime, propagation time.Duration) managerOption {
	return func(s *managerSetup) {
		s.opts.Certs.CALifetime = lifetime
		s.opts.Certs.CAPropagation = propagation
	}
}

// withLeaderElection turns on leader election with short timings (lease 4s,
// renew deadline 3s, retry 500ms), so that a standby takes over quickly.
func withLeaderElection() managerOption {
	return func(s *managerSetup) {
		s.opts.LeaderElection = true
		s.opts.LeaseDuration = 4 * time.Second
		s.opts.RenewDeadline = 3 * time.Second
		s.opts.RetryPeriod = 500 * time.Millisecond
	}
}

// withManagerOptions edits the manager options after the harness's defaults
// (e.g. TemplatesConfigMap, AfterRelabel).
func withManagerOptions(edit func(*manager.Options)) managerOption {
	return func(s *managerSetup) { edit(&s.opts) }
}

// asReplica starts an additional replica beside the test's first manager: it
// serves webhooks on its own port, but the webhook configurations keep
// pointing at the first one.
func asReplica() managerOption {
	return func(s *managerSetup) { s.replica = true }
}

// managerHandle is a manager running in-process.
type managerHandle struct {
	// Name identifies the manager in logs (test name + a counter).
	Name string
	// Options are the options Run gets (ports, cert dir, ... filled in).
	Options manager.Options
	// URL is the webhook server's base URL, https://127.0.0.1:<port>.
	URL string
	// CABundle verifies the webhook server's certificate (with
	// withManageCerts: the CA bundle the manager created, read after start).
	CABundle []byte
	// LogPath is the manager's log file (also printed on failure).
	LogPath string

	replica bool
	logger  logr.Logger
	logFile *os.File

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

var managerCount struct {
	sync.Mutex
	n int
}

// startManager runs meshrev's manager in-process against the shared cluster
// and returns once it is usable: (1) the Mesh CRD is applied and Established,
// (2) the webhook server has a certificate (a fresh test CA, or
// self-managed with withManageCerts), (3) manager.Run runs on free ports
// (webhook, metrics, probes), (4) the MutatingWebhookConfiguration and
// ValidatingWebhookConfiguration "meshrev" are the chart's own (its
// selectors), pointed at the manager by URL with the CA bundle, (5) readyz
// answers OK and a dry-run pod proves the API server reaches the injector.
// The test's cleanup stops the manager and deletes the configurations.
func startManager(t *testing.T, opts ...managerOption) *managerHandle {
	t.Helper()
	ports := freeLocalPorts(t, 3)
	s := &managerSetup{opts: manager.Options{
		RestConfig:              Env().Config,
		OwnNamespace:            meshrevNamespace,
		MeshNamespace:           controlPlaneNamespace,
		WebhookHost:             "127.0.0.1",
		WebhookPort:             ports[0],
		MetricsAddr:             "127.0.0.1:" + strconv.Itoa(ports[1]),
		ProbeAddr:               "127.0.0.1:" + strconv.Itoa(ports[2]),
		CertDir:                 t.TempDir(),
		GracefulShutdownTimeout: 15 * time.Second,
	}}
	for _, o := range opts {
		o(s)
	}
	h := &managerHandle{Options: s.opts, replica: s.replica, URL: "https://127.0.0.1:" + strconv.Itoa(s.opts.WebhookPort)}
	if !s.replica {
		managerOwner.Lock()
		owner := managerOwner.test
		managerOwner.Unlock()
		if owner != "" && (t.Name() == owner || strings.HasPrefix(t.Name(), owner+"/")) {
			require.FailNow(t, "a second owning manager", "test %s already runs a manager that owns the webhook configurations: start more replicas with asReplica(), or use restart()", owner)
		}
		managerMu.Lock()
		managerOwner.Lock()
		managerOwner.test = t.Name()
		managerOwner.Unlock()
		t.Cleanup(func() { // registered first: runs last
			managerOwner.Lock()
			managerOwner.test = ""
			managerOwner.Unlock()
			managerMu.Unlock()
		})
	}
	h.openLog(t)

	ctx := t.Context()
	c := ctrlClient(t)
	ensureMeshCRD(t, c)
	for _, ns := range []string{meshrevNamespace, controlPlaneNamespace, probeNamespace} {
		ensureNamespace(t, c, ns)
	}

	if h.Options.Certs.Manage {
		h.Options.Certs.WebhookURL = h.URL
		if !s.replica {
			// A fresh CA per test: nothing carries over from an earlier one.
			deleteIfExists(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: h.secretName()}})
			t.Cleanup(func() {
				deleteIfExists(t, c, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: h.secretName()}})
			})
		}
	} else {
		ca, err := devcluster.NewCA("meshrev-e2e-webhook-ca")
		require.NoError(t, err)
		kp, err := ca.ServingCert("127.0.0.1", "localhost")
		require.NoError(t, err)
		require.NoError(t, kp.WriteFiles(filepath.Join(h.Options.CertDir, "tls.crt"), filepath.Join(h.Options.CertDir, "tls.key")))
		h.CABundle = ca.CertPEM
	}

	if !s.replica {
		mutating, validating := renderWebhookConfigs(t, h.URL)
		if !h.Options.Certs.Manage {
			for i := range mutating.Webhooks {
				mutating.Webhooks[i].ClientConfig.CABundle = h.CABundle
			}
			for i := range validating.Webhooks {
				validating.Webhooks[i].ClientConfig.CABundle = h.CABundle
			}
		}
		for _, obj := range []client.Object{mutating, validating} {
			deleteIfExists(t, c, obj.DeepCopyObject().(client.Object))
			require.NoError(t, c.Create(ctx, obj), "create %T %s", obj, obj.GetName())
		}
		t.Cleanup(func() {
			deleteIfExists(t, c, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName}})
			deleteIfExists(t, c, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName}})
		})
	}

	t.Cleanup(func() {
		h.stop(t)
		if t.Failed() {
			t.Logf("manager %s log (%s), last lines:\n%s", h.Name, h.LogPath, tailFile(h.LogPath, 80))
		}
		h.logFile.Close()
	})
	h.start(t)
	if h.Options.Certs.Manage {
		var sec corev1.Secret
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: h.secretName()}, &sec))
		h.CABundle = sec.Data["ca.crt"]
	}
	return h
}

func (h *managerHandle) secretName() string {
	if h.Options.Certs.SecretName != "" {
		return h.Options.Certs.SecretName
	}
	return pki.DefaultSecretName
}

// openLog opens the manager's log file: in the cluster's log directory when
// there is one (kept when tests fail), else in the test's temp dir.
func (h *managerHandle) openLog(t *testing.T) {
	managerCount.Lock()
	managerCount.n++
	n := managerCount.n
	managerCount.Unlock()
	h.Name = fmt.Sprintf("%s-%d", regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_"), n)
	dir := t.TempDir()
	if Env().Layout.Root != "" {
		dir = Env().Layout.LogDir()
	}
	h.LogPath = filepath.Join(dir, "manager-"+h.Name+".log")
	f, err := os.Create(h.LogPath)
	require.NoError(t, err)
	h.logFile = f
	h.logger = zap.New(zap.WriteTo(f), zap.ConsoleEncoder(), zap.Level(zapcore.DebugLevel)).WithValues("manager", h.Name)
	setGlobalLogger()
}

var globalLoggerOnce sync.Once

// setGlobalLogger routes controller-runtime's global logger (used by a few
// of its internals) to a file next to the managers' logs.
func setGlobalLogger() {
	globalLoggerOnce.Do(func() {
		dir := os.TempDir()
		if Env().Layout.Root != "" {
			dir = Env().Layout.LogDir()
		}
		f, err := os.Create(filepath.Join(dir, "controller-runtime.log"))
		if err != nil {
			ctrl.SetLogger(logr.Discard())
			return
		}
		ctrl.SetLogger(zap.New(zap.WriteTo(f), zap.ConsoleEncoder()))
	})
}

// start runs manager.Run in a goroutine and waits until the manager is usable.
func (h *managerHandle) start(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	require.Nil(t, h.cancel, "manager %s is already running", h.Name)
	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), h.logger))
	done := make(chan error, 1)
	h.cancel, h.done = cancel, done
	h.mu.Unlock()
	started := time.Now()
	go func() { done <- manager.Run(ctx, h.Options) }()
	h.waitReady(t, done)
	t.Logf("manager %s ready in %s (webhooks %s, log %s)", h.Name, time.Since(started).Round(time.Millisecond), h.URL, h.LogPath)
}

// stop cancels the manager and waits until Run returned; Run must return
// nil (a clean shutdown). Stopping a stopped manager does nothing.
func (h *managerHandle) stop(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.cancel, h.done = nil, nil
	h.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "manager %s did not shut down cleanly; log %s:\n%s", h.Name, h.LogPath, tailFile(h.LogPath, 40))
	case <-time.After(60 * time.Second):
		require.FailNow(t, "manager did not stop", "manager %s still running 60s after cancel; log %s:\n%s", h.Name, h.LogPath, tailFile(h.LogPath, 40))
	}
}

// restart stops the manager and starts it again with the same options
// (same ports and cert dir), as after a crash or a rolling update.
func (h *managerHandle) restart(t *testing.T) {
	t.Helper()
	h.stop(t)
	h.start(t)
}

// running reports whether the manager runs.
func (h *managerHandle) running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cancel != nil
}

// waitReady waits for readyz and, for the manager that owns the webhook
// configurations, for a dry-run pod that the API server sends to it.
func (h *managerHandle) waitReady(t *testing.T, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), managerReadyTimeout)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-done:
			return false, fmt.Errorf("manager.Run returned during start: %v", err)
		default:
		}
		if last = h.probe(ctx, "/readyz"); last != nil {
			return false, nil
		}
		if h.replica {
			return true, nil
		}
		last = webhookReached(ctx)
		return last == nil, nil
	})
	if err != nil {
		h.mu.Lock()
		h.cancel, h.done = nil, nil
		h.mu.Unlock()
		cancel()
		require.FailNow(t, "manager not ready", "manager %s: %v (last check: %v); log %s:\n%s", h.Name, err, last, h.LogPath, tailFile(h.LogPath, 60))
	}
}

// webhookReached dry-runs a pod labelled sidecar.istio.io/inject=true in the
// unlabelled probe namespace. The injector answers it either by injecting
// (a Mesh exists) or with the warning that no Mesh is installed; without
// the webhook in the path the pod comes back untouched and silent.
func webhookReached(ctx context.Context) error {
	pod := probePod("reach")
	got, warnings, err := dryRunPodCtx(ctx, probeNamespace, pod)
	if err != nil {
		return fmt.Errorf("dry-run pod: %w", err)
	}
	if got.Labels[revisions.LabelRevision] != "" {
		return nil
	}
	for _, w := range warnings {
		if strings.Contains(w, "no Mesh") {
			return nil
		}
	}
	return fmt.Errorf("dry-run pod in %s was neither injected nor warned about (warnings %q): the API server does not reach the injector yet", probeNamespace, warnings)
}

// probe GETs a probe endpoint (/readyz, /healthz) and fails unless it is 200.
func (h *managerHandle) probe(ctx context.Context, path string) error {
	_, err := httpGet(ctx, "http://"+h.Options.ProbeAddr+path)
	return err
}

// get GETs path on the manager's probe (/readyz, /healthz) or metrics
// (/metrics) address and returns the body; it fails the test unless 200.
func (h *managerHandle) get(t *testing.T, path string) string {
	t.Helper()
	addr := h.Options.ProbeAddr
	if strings.HasPrefix(path, "/metrics") {
		addr = h.Options.MetricsAddr
	}
	body, err := httpGet(t.Context(), "http://"+addr+path)
	require.NoError(t, err)
	return body
}

// servingCert returns the certificate the webhook server presents, verified
// against h.CABundle for 127.0.0.1 (as the API server does).
func (h *managerHandle) servingCert(ctx context.Context) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(h.CABundle) {
		return nil, errors.New("no CA bundle to verify the webhook server")
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(h.URL, "https://"))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// httpClient returns a client that trusts the webhook server's CA bundle.
func (h *managerHandle) httpClient(t *testing.T) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(h.CABundle), "CA bundle of manager %s", h.Name)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// renderWebhookConfigs renders the chart's two webhook configurations with
// webhook.url pointing at url, so that the tests exercise the selectors that
// ship.
func renderWebhookConfigs(t *testing.T, url string) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	root, err := devcluster.RepoRoot()
	require.NoError(t, err)
	chrt, err := loader.LoadDir(filepath.Join(root, "charts", "meshrev"))
	require.NoError(t, err, "load the chart")
	vals, err := chartutil.ToRenderValues(chrt, map[string]any{
		"manager": map[string]any{"enabled": false},
		"webhook": map[string]any{"url": url},
	}, chartutil.ReleaseOptions{Name: "meshrev", Namespace: meshrevNamespace, IsInstall: true}, nil)
	require.NoError(t, err, "chart values")
	files, err := engine.Render(chrt, vals)
	require.NoError(t, err, "render the chart")
	var m admissionregistrationv1.MutatingWebhookConfiguration
	var v admissionregistrationv1.ValidatingWebhookConfiguration
	for name, obj := range map[string]any{"mutatingwebhookconfiguration.yaml": &m, "validatingwebhookconfiguration.yaml": &v} {
		text, ok := files["meshrev/templates/"+name]
		require.True(t, ok, "the chart has templates/%s", name)
		require.NoError(t, yaml.UnmarshalStrict([]byte(text), obj), "decode templates/%s", name)
	}
	require.Equal(t, webhookConfigName, m.Name)
	require.Equal(t, webhookConfigName, v.Name)
	require.NotEmpty(t, m.Webhooks)
	require.NotEmpty(t, v.Webhooks)
	return &m, &v
}

// ensureMeshCRD applies the Mesh CRD from charts/meshrev/crds and waits until
// it is Established.
func ensureMeshCRD(t *testing.T, c client.Client) {
	t.Helper()
	root, err := devcluster.RepoRoot()
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(root, "charts", "meshrev", "crds", "meshrev.io_meshes.yaml"))
	require.NoError(t, err)
	var want apiextensionsv1.CustomResourceDefinition
	require.NoError(t, yaml.Unmarshal(data, &want))
	ctx := t.Context()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var have apiextensionsv1.CustomResourceDefinition
		err := c.Get(ctx, client.ObjectKey{Name: want.Name}, &have)
		if apierrors.IsNotFound(err) {
			return c.Create(ctx, want.DeepCopy())
		}
		if err != nil {
			return err
		}
		have.Spec = want.Spec
		return c.Update(ctx, &have)
	})
	require.NoError(t, err, "apply CRD %s", want.Name)
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var have apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, client.ObjectKey{Name: want.Name}, &have); err != nil {
			return false, err
		}
		for _, cond := range have.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "CRD %s Established", want.Name)
}

// ensureNamespace creates a namespace unless it exists (kept: shared by tests).
func ensureNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err, "create namespace %s", name)
	}
}

// deleteIfExists deletes obj (by kind, namespace and name), ignoring NotFound.
func deleteIfExists(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		require.NoError(t, err, "delete %T %s", obj, obj.GetName())
	}
}

// freeLocalPorts reserves n distinct free TCP ports on 127.0.0.1.
func freeLocalPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logContains reports whether the manager's log has a line matching re.
func (h *managerHandle) logContains(re *regexp.Regexp) bool {
	f, err := os.Open(h.LogPath)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if re.Match(sc.Bytes()) {
			return true
		}
	}
	return false
}

// ---- clients ----

// ctrlClient returns a controller-runtime client that knows the Mesh and
// the CRD types, with the admin credentials.
func ctrlClient(t testing.TB) client.Client {
	t.Helper()
	scheme, err := manager.Scheme()
	require.NoError(t, err)
	require.NoError(t, apiextensionsv1.AddToScheme(scheme))
	c, err := client.New(Env().Config, client.Options{Scheme: scheme})
	require.NoError(t, err)
	return c
}

// warningRecorder collects the API server's warnings (admission warnings among them).
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

// HandleWarningHeader records a warning.
func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

// take returns the warnings recorded so far and forgets them.
func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	return out
}

// clientWithWarnings returns a clientset whose requests record warnings in
// the returned recorder (one recorder per clientset: use one per request
// sequence, not concurrently).
func clientWithWarnings() (*kubernetes.Clientset, *warningRecorder, error) {
	cfg := rest.CopyConfig(Env().Config)
	rec := &warningRecorder{}
	cfg.WarningHandler = rec
	cs, err := kubernetes.NewForConfig(cfg)
	return cs, rec, err
}

// ---- pods ----

// testPod is a minimal pod (one pause container) with labels.
func testPod(name string, labels map[string]string) *corev1.Pod {
	all := map[string]string{"app": name}
	for k, v := range labels {
		all[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: all},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
}

// probePod is a minimal pod labelled sidecar.istio.io/inject=true.
func probePod(name string) *corev1.Pod {
	return testPod(name, map[string]string{revisions.LabelSidecarInject: "true"})
}

// waitResolves waits until a dry-run of pod in ns is admitted with revision
// want ("" for no sidecar): the injector's caches have caught up with the
// Mesh and the namespace labels the test just changed. It returns the
// admitted pod and its warnings.
func waitResolves(t *testing.T, ns string, pod *corev1.Pod, want string) (*corev1.Pod, []string) {
	t.Helper()
	var got *corev1.Pod
	var warnings []string
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		got, warnings, err = dryRunPodCtx(ctx, ns, pod)
		switch {
		case err != nil:
			last = err
		case got.Labels[revisions.LabelRevision] != want:
			last = fmt.Errorf("admitted with revision %q (warnings %q)", got.Labels[revisions.LabelRevision], warnings)
		default:
			return true, nil
		}
		return false, nil
	})
	require.NoError(t, err, "pod %s in %s never resolved to revision %q: %v", pod.Name, ns, want, last)
	return got, warnings
}

// dryRunPod creates pod in ns with dryRun=All (admission runs, nothing is
// stored) and returns the pod as admitted, the warnings, and the error.
func dryRunPod(t *testing.T, ns string, pod *corev1.Pod) (*corev1.Pod, []string, error) {
	t.Helper()
	return dryRunPodCtx(t.Context(), ns, pod)
}

func dryRunPodCtx(ctx context.Context, ns string, pod *corev1.Pod) (*corev1.Pod, []string, error) {
	cs, rec, err := clientWithWarnings()
	if err != nil {
		return nil, nil, err
	}
	got, err := cs.CoreV1().Pods(ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return got, rec.take(), err
}

// createPod creates pod in ns for real and returns it as stored, the
// warnings, and the error (an admission refusal is an error to inspect).
// The pod is deleted when the test ends.
func createPod(t *testing.T, ns string, pod *corev1.Pod) (*corev1.Pod, []string, error) {
	t.Helper()
	cs, rec, err := clientWithWarnings()
	require.NoError(t, err)
	got, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod.DeepCopy(), metav1.CreateOptions{})
	if err == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = Client(t).CoreV1().Pods(ns).Delete(ctx, got.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		})
	}
	return got, rec.take(), err
}

// podRevisions lists the pods of ns matching selector (a label selector,
// "" for all) that are not terminating, by name, with their
// meshrev.io/revision label ("" for pods without a sidecar).
func podRevisions(t *testing.T, ns, selector string) map[string]string {
	t.Helper()
	list, err := Client(t).CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	require.NoError(t, err)
	out := map[string]string{}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out[p.Name] = p.Labels[revisions.LabelRevision]
		}
	}
	return out
}

// ---- workloads ----

// simpleDeployment is a Deployment of pause containers with label app=name.
func simpleDeployment(name string, replicas int32, podLabels map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	tmplLabels := map[string]string{"app": name}
	for k, v := range podLabels {
		tmplLabels[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: tmplLabels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
}

// applyDeployment creates d in ns, or replaces the spec of the existing one.
func applyDeployment(t *testing.T, ns string, d *appsv1.Deployment) *appsv1.Deployment {
	t.Helper()
	cs := Client(t)
	d = d.DeepCopy()
	d.Namespace = ns
	var out *appsv1.Deployment
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		have, err := cs.AppsV1().Deployments(ns).Get(t.Context(), d.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out, err = cs.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		have.Labels, have.Spec = d.Labels, d.Spec
		out, err = cs.AppsV1().Deployments(ns).Update(t.Context(), have, metav1.UpdateOptions{})
		return err
	})
	require.NoError(t, err, "apply deployment %s/%s", ns, d.Name)
	return out
}

// waitRollout waits until deployment ns/name has rolled out its current
// template (every replica updated, ready and available, no old pods left)
// and returns its pods.
func waitRollout(t *testing.T, ns, name string) []corev1.Pod {
	t.Helper()
	cs := Client(t)
	var pods []corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want, s := *d.Spec.Replicas, d.Status
		last = fmt.Sprintf("generation %d observed %d, replicas %d updated %d ready %d available %d (want %d)",
			d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, want)
		if s.ObservedGeneration < d.Generation || s.Replicas != want || s.UpdatedReplicas != want || s.ReadyReplicas != want || s.AvailableReplicas != want {
			return false, nil
		}
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
		if err != nil {
			return false, err
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil {
				pods = append(pods, p)
			}
		}
		last += fmt.Sprintf(", %d live pods", len(pods))
		return int32(len(pods)) == want, nil
	})
	require.NoError(t, err, "rollout of deployment %s/%s: %s", ns, name, last)
	return pods
}

// rolloutRestart restarts deployment ns/name as `kubectl rollout restart`
// does: it sets the pod-template annotation kubectl.kubernetes.io/restartedAt.
func rolloutRestart(t *testing.T, ns, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, revisions.AnnotationRestartedAt, time.Now().Format(time.RFC3339Nano))
	_, err := Client(t).AppsV1().Deployments(ns).Patch(t.Context(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err, "rollout restart %s/%s", ns, name)
}

// ---- namespaces and the Mesh ----

// labelNamespace sets (value) or removes (nil) labels of namespace ns.
func labelNamespace(t *testing.T, ns string, labels map[string]*string) []string {
	t.Helper()
	body := map[string]any{"metadata": map[string]any{"labels": labels}}
	data, err := json.Marshal(body)
	require.NoError(t, err)
	cs, rec, err := clientWithWarnings()
	require.NoError(t, err)
	_, err = cs.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, data, metav1.PatchOptions{})
	require.NoError(t, err, "label namespace %s", ns)
	return rec.take()
}

// createMesh creates the Mesh "default" with spec (through the validating
// webhook when a manager runs) and deletes it when the test ends, waiting
// until it is gone so that the next test starts without one.
func createMesh(t *testing.T, spec v1alpha1.MeshSpec) *v1alpha1.Mesh {
	t.Helper()
	c := ctrlClient(t)
	mesh := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}, Spec: spec}
	require.NoError(t, c.Create(t.Context(), mesh), "create Mesh %s", v1alpha1.MeshName)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := c.Delete(ctx, &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete Mesh: %v", err)
			return
		}
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &v1alpha1.Mesh{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("Mesh %s still exists after delete: %v", v1alpha1.MeshName, err)
		}
	})
	return mesh
}

// updateMesh applies edit to the current Mesh "default" and updates it,
// retrying on conflicts. It returns the API error (e.g. the validating
// webhook's refusal) instead of failing, and the warnings.
func updateMesh(t *testing.T, edit func(*v1alpha1.Mesh)) (*v1alpha1.Mesh, []string, error) {
	t.Helper()
	scheme, err := manager.Scheme()
	require.NoError(t, err)
	cfg := rest.CopyConfig(Env().Config)
	rec := &warningRecorder{}
	cfg.WarningHandler = rec
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	require.NoError(t, err)
	var mesh v1alpha1.Mesh
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(t.Context(), client.ObjectKey{Name: v1alpha1.MeshName}, &mesh); err != nil {
			return err
		}
		edit(&mesh)
		return c.Update(t.Context(), &mesh)
	})
	return &mesh, rec.take(), err
}

// ---- metrics ----

// metricValue sums the samples of metric name whose labels include all of
// want, from a Prometheus text exposition; -1 when there is none.
func metricValue(exposition, name string, want map[string]string) float64 {
	sum, found := 0.0, false
	sc := bufio.NewScanner(bytes.NewReader([]byte(exposition)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for k, v := range want {
			if !strings.Contains(line, fmt.Sprintf("%s=%q", k, v)) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			sum += v
			found = true
		}
	}
	if !found {
		return -1
	}
	return sum
}
