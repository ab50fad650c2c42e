//go:build e2e

package e2e

// The fault suite (make test-faults): meshrev's manager as a real process
// (the binary of cmd/meshrev-manager, so that kill -9 is a kill -9) against
// the local cluster, each fault under continuous pod creation at a bounded
// rate for a bounded time. Every case counts the pods admitted with their
// sidecar, refused, and ADMITTED WITHOUT A SIDECAR, which must be 0, and
// logs a line "FAULT <case> ..." with its figures (RELIABILITY.md).
//
// Pods are created with server-side dry run: the API server runs admission
// (the mutating webhooks included) exactly as for a real create, without
// filling the cluster with thousands of pods.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
	"github.com/meshrev/meshrev/webhook"
)

// Bounds of the suite: creation rate and the length of each load phase.
const (
	faultRate      = 10 // pod creations per second
	faultReadyWait = 90 * time.Second
)

// procManager is meshrev-manager running as its own process.
type procManager struct {
	t        *testing.T
	bin      string
	args     []string
	url      string
	probe    string
	caBundle []byte
	logPath  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// startProcManager builds the manager, gives it a serving certificate, points
// meshrev's webhook configurations at it and starts it with extra flags.
func startProcManager(t *testing.T, extra ...string) *procManager {
	t.Helper()
	ownWebhookConfigs(t)
	setGlobalLogger()
	c := ctrlClient(t)
	ensureMeshCRD(t, c)
	for _, ns := range []string{meshrevNamespace, controlPlaneNamespace, probeNamespace} {
		ensureNamespace(t, c, ns)
	}
	ports := freeLocalPorts(t, 3)
	h := &managerHandle{URL: "https://127.0.0.1:" + strconv.Itoa(ports[0])}
	h.Options.CertDir = t.TempDir()
	h.prepareCerts(t, c)
	h.installWebhookConfigs(t, c)

	kubeconfig := Env().KubeconfigPath
	if kubeconfig == "" {
		kubeconfig = os.Getenv(KubeconfigEnv)
	}
	dir := t.TempDir()
	if Env().Layout.Root != "" {
		dir = Env().Layout.LogDir()
	}
	m := &procManager{
		t: t, bin: managerBinary(t), url: h.URL, caBundle: h.CABundle,
		probe:   "127.0.0.1:" + strconv.Itoa(ports[2]),
		logPath: filepath.Join(dir, "manager-"+regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_")+".log"),
		args: append([]string{"--kubeconfig", kubeconfig, "--namespace", meshrevNamespace, "--mesh-namespace", controlPlaneNamespace,
			"--webhook-host", "127.0.0.1", "--webhook-port", strconv.Itoa(ports[0]), "--cert-dir", h.Options.CertDir,
			"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(ports[1]), "--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(ports[2]),
			"--leader-elect"}, extra...),
	}
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			t.Logf("manager log %s, last lines:\n%s", m.logPath, tailFile(m.logPath, 60))
		}
	})
	m.start()
	return m
}

// start runs the process and waits until the API server reaches it.
func (m *procManager) start() {
	m.t.Helper()
	f, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(m.t, err)
	defer f.Close()
	cmd := exec.Command(m.bin, m.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(m.t, cmd.Start())
	m.mu.Lock()
	m.cmd = cmd
	m.mu.Unlock()
	go func() { _ = cmd.Wait() }()
	ctx, cancel := context.WithTimeout(m.t.Context(), faultReadyWait)
	defer cancel()
	require.NoError(m.t, wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if _, err := httpGet(ctx, "http://"+m.probe+"/readyz"); err != nil {
			return false, nil
		}
		return webhookReached(ctx) == nil, nil
	}), "manager process ready; log %s:\n%s", m.logPath, tailFile(m.logPath, 30))
}

// pid of the running process.
func (m *procManager) pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd.Process.Pid
}

// kill9 kills the process with SIGKILL.
func (m *procManager) kill9() {
	require.NoError(m.t, syscall.Kill(m.pid(), syscall.SIGKILL))
	require.Eventually(m.t, func() bool { return !alive(m.pid()) }, 10*time.Second, 20*time.Millisecond)
}

// stop ends the process gracefully (SIGTERM), then kills it.
func (m *procManager) stop() {
	m.mu.Lock()
	cmd := m.cmd
	m.mu.Unlock()
	if cmd == nil || !alive(cmd.Process.Pid) {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	for range 150 {
		if !alive(cmd.Process.Pid) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
}

// alive says whether pid runs (and is not a zombie).
func alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// memKB reads VmRSS and VmHWM (peak RSS) of pid, in KiB.
func memKB(pid int) (rss, peak int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			peak = v
		}
	}
	return rss, peak
}

// tlsClient trusts the manager's serving certificate.
func (m *procManager) tlsClient(timeout time.Duration) *http.Client {
	pool := x509Pool(m.caBundle)
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64,
	}}
}

// review POSTs an AdmissionReview of a pod straight to the manager's
// injector and says whether it answered with an AdmissionReview.
func (m *procManager) review(ctx context.Context, hc *http.Client, ns string) (int, error) {
	raw, _ := json.Marshal(testPod("direct", nil))
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: ns, Operation: admissionv1.Create,
			Object: runtimeRaw(raw)},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.url+webhook.PathInject, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// load creates pods (server-side dry run) in ns at faultRate until ctx ends.
type load struct {
	mu          sync.Mutex
	admitted    int
	refused     int
	uninjected  []string
	refusals    []string
	latencies   []time.Duration
	lastRefusal time.Time
	firstRefuse time.Time
}

func runLoad(ctx context.Context, ns string) *load {
	l := &load{}
	tick := time.NewTicker(time.Second / faultRate)
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return l
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			start := time.Now()
			got, _, err := dryRunPodCtx(rctx, ns, testPod(fmt.Sprintf("load-%d", i), nil))
			took := time.Since(start)
			l.mu.Lock()
			defer l.mu.Unlock()
			if err != nil {
				l.refused++
				if l.firstRefuse.IsZero() {
					l.firstRefuse = start
				}
				l.lastRefusal = start.Add(took)
				if len(l.refusals) < 3 {
					l.refusals = append(l.refusals, err.Error())
				}
				return
			}
			l.latencies = append(l.latencies, took)
			if sidecarOf(got) == nil {
				l.uninjected = append(l.uninjected, got.Name)
				return
			}
			l.admitted++
		}()
	}
}

// p returns the q-quantile of the admitted requests' latency.
func (l *load) p(q float64) time.Duration {
	if len(l.latencies) == 0 {
		return 0
	}
	s := slices.Clone(l.latencies)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func (l *load) String() string {
	gap := time.Duration(0)
	if !l.firstRefuse.IsZero() {
		gap = l.lastRefusal.Sub(l.firstRefuse)
	}
	return fmt.Sprintf("created=%d refused=%d admitted_without_sidecar=%d refusal_window=%s p50=%s p99=%s",
		l.admitted+l.refused+len(l.uninjected), l.refused, len(l.uninjected), gap.Round(100*time.Millisecond),
		l.p(0.5).Round(time.Millisecond), l.p(0.99).Round(time.Millisecond))
}

// faultEnv is a manager process, a Mesh and an injected namespace.
type faultEnv struct {
	m  *procManager
	c  client.Client
	ns string
}

func newFaultEnv(t *testing.T, extra ...string) *faultEnv {
	m := startProcManager(t, extra...)
	createMesh(t, stableOnly())
	ns := NewNamespace(t, "faults", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	e := &faultEnv{m: m, c: ctrlClient(t), ns: ns}
	e.waitInjects(t)
	return e
}

// waitInjects waits until a pod of the namespace is injected.
func (e *faultEnv) waitInjects(t *testing.T) {
	require.Eventually(t, func() bool {
		got, _, err := dryRunPodCtx(t.Context(), e.ns, testPod("ready", nil))
		return err == nil && sidecarOf(got) != nil
	}, faultReadyWait, 200*time.Millisecond)
}

// during runs the load for d and calls fault at its start; it returns the load.
func during(t *testing.T, ns string, d time.Duration, fault func()) *load {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var l *load
	done := make(chan struct{})
	go func() { l = runLoad(ctx, ns); close(done) }()
	fault()
	<-done
	return l
}

func report(t *testing.T, name string, l *load, extra string) {
	t.Logf("FAULT %s: %s %s", name, l, extra)
	assert.Empty(t, l.uninjected, "pods admitted without their sidecar")
	if l.refused > 0 {
		t.Logf("FAULT %s: first refusals: %q", name, l.refusals)
	}
}

// clusterProcess is a component of the local cluster the suite stops.
func clusterProcess(t *testing.T, name string) int {
	require.NotEmpty(t, Env().Layout.Root, "the fault suite stops cluster components: it needs the local cluster, not %s", KubeconfigEnv)
	raw, err := os.ReadFile(Env().Layout.PIDFile(name))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	require.True(t, alive(pid), "%s (pid %d) runs", name, pid)
	return pid
}

// restartAPIServer kills kube-apiserver, waits down, and starts it again
// with the same command line and environment (the cluster's marker
// included, so that the cluster's Stop still finds it).
func restartAPIServer(t *testing.T, down time.Duration) {
	pid := clusterProcess(t, "kube-apiserver")
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	require.NoError(t, err)
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	require.NoError(t, err)
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	require.NoError(t, err)
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	// SIGKILL: an API server that crashed (a graceful stop drains for
	// long and would blur when the outage starts).
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return !alive(pid) }, 10*time.Second, 50*time.Millisecond)
	time.Sleep(down)
	logf, err := os.OpenFile(Env().Layout.LogFile("kube-apiserver"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00")
	cmd.Dir = cwd
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait() }()
	require.NoError(t, os.WriteFile(Env().Layout.PIDFile("kube-apiserver"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644))
	cs := Client(t)
	require.Eventually(t, func() bool {
		_, err := cs.Discovery().ServerVersion()
		return err == nil
	}, 60*time.Second, 200*time.Millisecond, "kube-apiserver back")
}

// directProbe POSTs reviews straight to the manager every 250ms until ctx
// ends, counting answers and failures: the webhook must keep answering
// while the API server or etcd is down.
func directProbe(ctx context.Context, m *procManager, ns string) (answered, failed *atomic.Int64) {
	answered, failed = &atomic.Int64{}, &atomic.Int64{}
	hc := m.tlsClient(3 * time.Second)
	go func() {
		for ctx.Err() == nil {
			if code, err := m.review(ctx, hc, ns); err == nil && code == http.StatusOK {
				answered.Add(1)
			} else if ctx.Err() == nil {
				failed.Add(1)
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return answered, failed
}

func TestFaults(t *testing.T) {
	t.Run("manager kill -9 and restart", func(t *testing.T) {
		e := newFaultEnv(t)
		var killedAt, readyAt time.Time
		l := during(t, e.ns, 25*time.Second, func() {
			time.Sleep(4 * time.Second)
			killedAt = time.Now()
			e.m.kill9()
			time.Sleep(time.Second) // a supervisor's backoff
			e.m.start()
			readyAt = time.Now()
		})
		report(t, "kill-9", l, fmt.Sprintf("back_in=%s", readyAt.Sub(killedAt).Round(100*time.Millisecond)))
		assert.Positive(t, l.admitted)
	})

	t.Run("API server down 20s: the webhook keeps answering, no process exits", func(t *testing.T) {
		e := newFaultEnv(t)
		pid := e.m.pid()
		var answered, failed *atomic.Int64
		var backAt, upAt time.Time
		l := during(t, e.ns, 45*time.Second, func() {
			time.Sleep(3 * time.Second)
			ctx, cancel := context.WithCancel(t.Context())
			answered, failed = directProbe(ctx, e.m, e.ns)
			restartAPIServer(t, 20*time.Second)
			upAt = time.Now()
			e.waitInjects(t)
			backAt = time.Now()
			cancel()
		})
		assert.True(t, alive(pid), "the manager never exits")
		assert.Zero(t, failed.Load(), "direct reviews failed during the outage")
		report(t, "apiserver-down-20s", l, fmt.Sprintf("direct_reviews_answered=%d failed=%d injecting_again_after_apiserver_up=%s", answered.Load(), failed.Load(), backAt.Sub(upAt).Round(100*time.Millisecond)))
	})

	t.Run("etcd frozen 15s: the webhook keeps answering, no process exits", func(t *testing.T) {
		e := newFaultEnv(t)
		pid := e.m.pid()
		etcd := clusterProcess(t, "etcd")
		var answered, failed *atomic.Int64
		var thawAt, backAt time.Time
		l := during(t, e.ns, 40*time.Second, func() {
			time.Sleep(3 * time.Second)
			ctx, cancel := context.WithCancel(t.Context())
			answered, failed = directProbe(ctx, e.m, e.ns)
			require.NoError(t, syscall.Kill(etcd, syscall.SIGSTOP))
			time.Sleep(15 * time.Second)
			require.NoError(t, syscall.Kill(etcd, syscall.SIGCONT))
			thawAt = time.Now()
			e.waitInjects(t)
			backAt = time.Now()
			cancel()
		})
		assert.True(t, alive(pid), "the manager never exits")
		assert.Zero(t, failed.Load(), "direct reviews failed while etcd was frozen")
		report(t, "etcd-frozen-15s", l, fmt.Sprintf("direct_reviews_answered=%d failed=%d injecting_again_after_thaw=%s lost_leadership_logged=%v",
			answered.Load(), failed.Load(), backAt.Sub(thawAt).Round(100*time.Millisecond),
			strings.Contains(tailFile(e.m.logPath, 400), "lost leadership")))
	})

	t.Run("Mesh delete refused while used; with no Mesh pods are refused", func(t *testing.T) {
		e := newFaultEnv(t)
		err := e.c.Delete(t.Context(), &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}})
		require.Error(t, err, "deleting a Mesh a namespace depends on is refused")
		assert.Contains(t, err.Error(), "cannot delete Mesh default")
		assert.Contains(t, err.Error(), e.ns)
		l := during(t, e.ns, 10*time.Second, func() {
			time.Sleep(2 * time.Second)
			require.NoError(t, forceDeleteMesh(t.Context(), e.c))
		})
		report(t, "mesh-delete", l, "")
		assert.Positive(t, l.refused, "with no Mesh the pods that ask for injection are refused")
		_, _, err = dryRunPodCtx(t.Context(), e.ns, testPod("after", nil))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no Mesh")
	})

	t.Run("templates ConfigMap deleted, then the manager restarted: pods still injected", func(t *testing.T) {
		c := ctrlClient(t)
		sidecar, gateway := webhook.DefaultTemplates().Sidecar, webhook.DefaultTemplates().Gateway
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "meshrev-templates"},
			Data: map[string]string{"sidecar": sidecar, "gateway": gateway}}
		ensureNamespace(t, c, meshrevNamespace)
		deleteIfExists(t, c, cm.DeepCopy())
		require.NoError(t, c.Create(t.Context(), cm))
		t.Cleanup(func() { deleteIfExists(t, c, cm.DeepCopy()) })
		e := newFaultEnv(t, "--templates-configmap", "meshrev-templates")
		require.NoError(t, c.Delete(t.Context(), cm.DeepCopy()), "the chart's templates ConfigMap may be deleted")
		l := during(t, e.ns, 20*time.Second, func() {
			time.Sleep(3 * time.Second)
			e.m.kill9()
			e.m.start()
		})
		report(t, "templates-deleted-restart", l, "")
		_, warnings, err := dryRunPodCtx(t.Context(), e.ns, testPod("after", nil))
		require.NoError(t, err, "the built-in templates are the floor")
		assert.True(t, slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "built-in templates") }), "warnings %q", warnings)
		require.Eventually(t, func() bool {
			var m v1alpha1.Mesh
			if err := e.c.Get(t.Context(), client.ObjectKey{Name: v1alpha1.MeshName}, &m); err != nil {
				return false
			}
			for _, cond := range m.Status.Conditions {
				if cond.Type == "TemplatesReady" && cond.Status == metav1.ConditionFalse {
					return true
				}
			}
			return false
		}, 60*time.Second, 500*time.Millisecond, "the Mesh reports TemplatesReady=False")
	})

	t.Run("slow-body and slowloris clients: RSS bounded, admissions keep their latency", func(t *testing.T) {
		e := newFaultEnv(t)
		pid := e.m.pid()
		base := during(t, e.ns, 8*time.Second, func() {})
		_, before := memKB(pid)
		ctx, cancel := context.WithCancel(t.Context())
		var attackers sync.WaitGroup
		var closedByServer atomic.Int64
		addr := strings.TrimPrefix(e.m.url, "https://")
		attack := func(first int, trickle time.Duration) {
			defer attackers.Done()
			for ctx.Err() == nil {
				conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: x509Pool(e.m.caBundle)})
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", webhook.PathInject, 8<<20)
				if err == nil && first > 0 {
					_, err = conn.Write(bytes.Repeat([]byte("x"), first))
				}
				for err == nil && ctx.Err() == nil {
					time.Sleep(trickle)
					_, err = conn.Write([]byte("x"))
				}
				if ctx.Err() == nil {
					closedByServer.Add(1)
				}
				conn.Close()
				time.Sleep(time.Second) // a bounded reconnect rate
			}
		}
		var peak atomic.Int64
		go func() {
			for ctx.Err() == nil {
				if _, p := memKB(pid); p > peak.Load() {
					peak.Store(p)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
		for range 60 { // partly sent 8 MiB bodies
			attackers.Add(1)
			go attack(4<<20, time.Second)
		}
		for range 200 { // slowloris: 8 MiB announced, a byte a second
			attackers.Add(1)
			go attack(0, time.Second)
		}
		l := during(t, e.ns, 25*time.Second, func() {})
		cancel()
		attackers.Wait()
		if _, p := memKB(pid); p > peak.Load() {
			peak.Store(p)
		}
		const boundKB = 256 << 10
		assert.Less(t, peak.Load(), int64(boundKB), "peak RSS under attack stays under 256 MiB")
		assert.True(t, alive(pid))
		assert.Positive(t, closedByServer.Load(), "the server closes slow clients")
		report(t, "slow-clients", l, fmt.Sprintf("peak_rss_before=%dMiB peak_rss_under_attack=%dMiB connections_closed_by_server=%d baseline_p50=%s baseline_p99=%s",
			before>>10, peak.Load()>>10, closedByServer.Load(), base.p(0.5).Round(time.Millisecond), base.p(0.99).Round(time.Millisecond)))
	})

	t.Run("500 concurrent reviews", func(t *testing.T) {
		e := newFaultEnv(t)
		pid := e.m.pid()
		hc := e.m.tlsClient(30 * time.Second)
		hc.Transport.(*http.Transport).MaxConnsPerHost = 0
		var ok, limited, failed atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range 500 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, err := e.m.review(t.Context(), hc, e.ns)
				switch {
				case err != nil:
					failed.Add(1)
				case code == http.StatusOK:
					ok.Add(1)
				case code == http.StatusTooManyRequests:
					limited.Add(1)
				default:
					failed.Add(1)
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		assert.True(t, alive(pid))
		assert.Zero(t, failed.Load())
		assert.Equal(t, int64(500), ok.Load()+limited.Load())
		_, peakKB := memKB(pid)
		t.Logf("FAULT concurrent-500: answered=%d limited_429=%d failed=%d in=%s peak_rss=%dMiB", ok.Load(), limited.Load(), failed.Load(), took.Round(time.Millisecond), peakKB>>10)
		e.waitInjects(t)
	})
}

// x509Pool is a pool of the PEM certificates in bundle.
func x509Pool(bundle []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	return pool
}

func runtimeRaw(b []byte) runtime.RawExtension { return runtime.RawExtension{Raw: b} }
