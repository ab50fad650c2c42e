//go:build e2e

package e2e

// The e2e harness: it runs meshrev's manager in-process (manager.Run) against
// the shared local cluster, points meshrev's webhook configurations at it by
// URL, and offers small helpers for workloads, namespaces and the Mesh. This
// file runs the manager; harness_webhooks_test.go wires the API server to it,
// harness_kube_test.go holds the cluster helpers, harness_io_test.go ports,
// HTTP, log files and metrics.
//
// A test that needs meshrev calls startManager(t). Only one manager owns the
// cluster-scoped webhook configurations at a time (startManager serializes on
// managerMu), so such tests need not avoid t.Parallel but gain nothing from
// it. Pods do not really run in the local cluster, so meshrev's manager runs
// here and the API server calls it at https://127.0.0.1:<port>/<path>.

import (
	"bufio"
	"context"
	"fmt"
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
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"go.uber.org/zap/zapcore"

	"github.com/meshrev/meshrev/internal/manager"
	"github.com/meshrev/meshrev/internal/pki"
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
	s := newManagerSetup(t, opts)
	h := &managerHandle{Options: s.opts, replica: s.replica, URL: "https://127.0.0.1:" + strconv.Itoa(s.opts.WebhookPort)}
	if !h.replica {
		ownWebhookConfigs(t)
	}
	h.openLog(t)

	c := ctrlClient(t)
	ensureMeshCRD(t, c)
	for _, ns := range []string{meshrevNamespace, controlPlaneNamespace, probeNamespace} {
		ensureNamespace(t, c, ns)
	}
	h.prepareCerts(t, c)
	if !h.replica {
		h.installWebhookConfigs(t, c)
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
		require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: meshrevNamespace, Name: h.secretName()}, &sec))
		h.CABundle = sec.Data["ca.crt"]
	}
	return h
}

// newManagerSetup is the harness's defaults (free local ports, a temporary
// cert dir, the shared cluster's admin config) edited by opts.
func newManagerSetup(t *testing.T, opts []managerOption) *managerSetup {
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
	return s
}

// ownWebhookConfigs makes t the owner of the webhook configurations until
// its cleanup, waiting for the current owner's test to end. A test owns them
// once: more managers of its own are replicas (asReplica) or restarts.
func ownWebhookConfigs(t *testing.T) {
	t.Helper()
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
