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
	"net"
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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
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
	return startProcReplicas(t, 1, extra...)[0]
}

// startProcReplicas starts n manager processes (leader election on) that
// share one serving certificate. With more than one, the webhook
// configurations point at a front in the test (frontProxy) that passes each
// connection to a replica that accepts it, as a Service sends traffic only
// to live endpoints; the first replica is started (and leads) first.
func startProcReplicas(t *testing.T, n int, extra ...string) []*procManager {
	t.Helper()
	ownWebhookConfigs(t)
	setGlobalLogger()
	c := ctrlClient(t)
	ensureMeshCRD(t, c)
	for _, ns := range []string{meshrevNamespace, controlPlaneNamespace, probeNamespace} {
		ensureNamespace(t, c, ns)
	}
	ports := freeLocalPorts(t, 1+3*n)
	front := ports[0]
	if n == 1 {
		front = ports[1]
	}
	h := &managerHandle{URL: "https://127.0.0.1:" + strconv.Itoa(front)}
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
	var out []*procManager
	var backends []string
	bin := managerBinary(t)
	for i := range n {
		webhookPort, metricsPort, probePort := ports[1+3*i], ports[2+3*i], ports[3+3*i]
		name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "_")
		if n > 1 {
			name += "-" + strconv.Itoa(i)
		}
		m := &procManager{
			t: t, bin: bin, url: "https://127.0.0.1:" + strconv.Itoa(webhookPort), caBundle: h.CABundle,
			probe:   "127.0.0.1:" + strconv.Itoa(probePort),
			logPath: filepath.Join(dir, "manager-"+name+".log"),
			args: append([]string{"--kubeconfig", kubeconfig, "--namespace", meshrevNamespace, "--mesh-namespace", controlPlaneNamespace,
				"--webhook-host", "127.0.0.1", "--webhook-port", strconv.Itoa(webhookPort), "--cert-dir", h.Options.CertDir,
				"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(metricsPort), "--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(probePort),
				"--leader-elect"}, extra...),
		}
		t.Cleanup(func() {
			m.stop()
			if t.Failed() {
				t.Logf("manager log %s, last lines:\n%s", m.logPath, tailFile(m.logPath, 60))
			}
		})
		backends = append(backends, "127.0.0.1:"+strconv.Itoa(webhookPort))
		out = append(out, m)
	}
	if n > 1 {
		frontProxy(t, front, backends)
	}
	for _, m := range out {
		m.start()
	}
	return out
}

// frontProxy listens on port and passes each connection, bytes unchanged
// (TLS end to end), to the first of backends, in turn, that accepts it.
func frontProxy(t *testing.T, port int, backends []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var next atomic.Int64
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				first := int(next.Add(1))
				for i := range backends {
					out, err := net.DialTimeout("tcp", backends[(first+i)%len(backends)], time.Second)
					if err != nil {
						continue
					}
					defer out.Close()
					go func() { _, _ = io.Copy(out, in); out.Close() }()
					_, _ = io.Copy(in, out)
					return
				}
			}()
		}
	}()
}

// leads says whether the manager's log shows it leading (its latest term).
func (m *procManager) leads() bool {
	raw, _ := os.ReadFile(m.logPath)
	return bytes.Contains(raw, []byte("leading: starting the controller"))
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

	// The same attack twice: with the connection bounds off (for
	// comparison, on the same machine at about the same time) and with the
	// defaults. manager_cpu is the manager's CPU seconds per second.
	slowClients := func(t *testing.T, name string, extra ...string) {
		e := newFaultEnv(t, extra...)
		pid := e.m.pid()
		cpu0, t0 := cpuSeconds(pid), time.Now()
		base := during(t, e.ns, 8*time.Second, func() {})
		baseCPU := (cpuSeconds(pid) - cpu0) / time.Since(t0).Seconds()
		_, before := memKB(pid)
		ctx, cancel := context.WithCancel(t.Context())
		var attackers sync.WaitGroup
		var closedByServer atomic.Int64
		addr := strings.TrimPrefix(e.m.url, "https://")
		// The attackers connect from another address than the API server
		// (127.0.0.2, loopback too), as a pod reaching the webhook port
		// would: the server's per-address bounds apply to them, not to the
		// API server's connections.
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
		attack := func(first int, trickle time.Duration) {
			defer attackers.Done()
			for ctx.Err() == nil {
				conn, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{RootCAs: x509Pool(e.m.caBundle)})
				if err != nil {
					time.Sleep(time.Second) // a bounded reconnect rate
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
		cpu1, t1 := cpuSeconds(pid), time.Now()
		l := during(t, e.ns, 25*time.Second, func() {})
		attackCPU := (cpuSeconds(pid) - cpu1) / time.Since(t1).Seconds()
		cancel()
		attackers.Wait()
		if _, p := memKB(pid); p > peak.Load() {
			peak.Store(p)
		}
		const boundKB = 256 << 10
		assert.Less(t, peak.Load(), int64(boundKB), "peak RSS under attack stays under 256 MiB")
		assert.True(t, alive(pid))
		assert.Positive(t, closedByServer.Load(), "the server closes slow clients")
		report(t, name, l, fmt.Sprintf("peak_rss_before=%dMiB peak_rss_under_attack=%dMiB connections_closed_by_server=%d baseline_p50=%s baseline_p99=%s manager_cpu_baseline=%.2f manager_cpu_under_attack=%.2f loadavg=%s",
			before>>10, peak.Load()>>10, closedByServer.Load(), base.p(0.5).Round(time.Millisecond), base.p(0.99).Round(time.Millisecond), baseCPU, attackCPU, loadAvg()))
	}
	t.Run("slow-body and slowloris clients, connection bounds off (for comparison)", func(t *testing.T) {
		slowClients(t, "slow-clients-connection-bounds-off", "--webhook-max-connections=1000000", "--webhook-max-pending-connections-per-ip=1000000",
			"--webhook-handshakes-per-second-per-ip=1000000", "--webhook-max-concurrent-handshakes=1000000")
	})
	t.Run("slow-body and slowloris clients: RSS bounded, admissions keep their latency", func(t *testing.T) {
		slowClients(t, "slow-clients")
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

// cpuSeconds is the CPU time (user and system) pid has used.
func cpuSeconds(pid int) float64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// loadAvg is the machine's 1-minute load average (/proc/loadavg), which the
// latency figures depend on.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(raw))[0]
}

// x509Pool is a pool of the PEM certificates in bundle.
func x509Pool(bundle []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	return pool
}

func runtimeRaw(b []byte) runtime.RawExtension { return runtime.RawExtension{Raw: b} }

// promoteFault is a Mesh with stable 1-22-6 and canary 1-23-6 (plain
// revisions) and promoteNamespaces namespaces labelled istio.io/rev=canary,
// which a promotion relabels one by one; pods are created in the first.
type promoteFault struct {
	t          *testing.T
	c          client.Client
	selector   string
	namespaces []string

	mu          sync.Mutex
	transitions map[string]int // istio.io/rev canary -> stable, per namespace
	firstDone   chan struct{}
	firstOnce   sync.Once
}

const promoteNamespaces = 30

func newPromoteFault(t *testing.T) *promoteFault {
	createMesh(t, stableOnly())
	_, _, err := updateMesh(t, func(m *v1alpha1.Mesh) {
		m.Spec.Revisions = append(m.Spec.Revisions, v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6"})
		m.Spec.Canary = "1-23-6"
	})
	require.NoError(t, err)
	p := &promoteFault{t: t, c: ctrlClient(t), transitions: map[string]int{}, firstDone: make(chan struct{})}
	p.waitMesh("canary deployed", func(m *v1alpha1.Mesh) bool { return m.Status.Phase == v1alpha1.PhaseCanaryDeployed })
	id := strings.ToLower(rand.String(6))
	p.selector = "meshrev-faults-promote=" + id
	for range promoteNamespaces {
		p.namespaces = append(p.namespaces, NewNamespace(t, "promote", map[string]string{revisions.LabelRev: revisions.TagCanary, "meshrev-faults-promote": id}))
	}
	(&faultEnv{ns: p.namespaces[0]}).waitInjects(t)
	p.watch()
	return p
}

// watch counts each namespace's relabels (canary -> stable) as the API
// server reports them, and closes firstDone at the first.
func (p *promoteFault) watch() {
	w, err := Client(p.t).CoreV1().Namespaces().Watch(p.t.Context(), metav1.ListOptions{LabelSelector: p.selector})
	require.NoError(p.t, err)
	p.t.Cleanup(w.Stop)
	last := map[string]string{}
	for _, ns := range p.namespaces {
		last[ns] = revisions.TagCanary
	}
	go func() {
		for ev := range w.ResultChan() {
			ns, ok := ev.Object.(*corev1.Namespace)
			if !ok {
				continue
			}
			now := ns.Labels[revisions.LabelRev]
			p.mu.Lock()
			if last[ns.Name] == revisions.TagCanary && now == revisions.TagStable {
				p.transitions[ns.Name]++
				p.firstOnce.Do(func() { close(p.firstDone) })
			}
			last[ns.Name] = now
			p.mu.Unlock()
		}
	}()
}

func (p *promoteFault) waitMesh(what string, cond func(*v1alpha1.Mesh) bool) *v1alpha1.Mesh {
	var m v1alpha1.Mesh
	require.NoError(p.t, wait.PollUntilContextTimeout(p.t.Context(), 100*time.Millisecond, faultReadyWait, true, func(ctx context.Context) (bool, error) {
		if err := p.c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &m); err != nil {
			return false, nil
		}
		return cond(&m), nil
	}), "Mesh: %s", what)
	return &m
}

// promote makes the canary stable and waits for the first relabel.
func (p *promoteFault) promote() {
	_, _, err := updateMesh(p.t, func(m *v1alpha1.Mesh) { m.Spec.Stable, m.Spec.Canary = "1-23-6", "" })
	require.NoError(p.t, err)
	select {
	case <-p.firstDone:
	case <-time.After(faultReadyWait):
		p.t.Fatal("the promotion never relabelled a namespace")
	}
}

// stillCanary counts the namespaces not yet relabelled.
func (p *promoteFault) stillCanary() int {
	n := 0
	for _, name := range p.namespaces {
		var ns corev1.Namespace
		if err := p.c.Get(p.t.Context(), client.ObjectKey{Name: name}, &ns); err == nil && ns.Labels[revisions.LabelRev] == revisions.TagCanary {
			n++
		}
	}
	return n
}

// waitRelabelled waits until every namespace is relabelled and the Mesh is
// Ready again.
func (p *promoteFault) waitRelabelled() {
	require.NoError(p.t, wait.PollUntilContextTimeout(p.t.Context(), 100*time.Millisecond, faultReadyWait, true, func(context.Context) (bool, error) {
		return p.stillCanary() == 0, nil
	}), "every namespace relabelled")
	p.waitMesh("Ready after the promotion", func(m *v1alpha1.Mesh) bool {
		return m.Status.Phase == v1alpha1.PhaseReadyToUnpublish && meta.IsStatusConditionTrue(m.Status.Conditions, "Ready")
	})
}

// check asserts one relabel per namespace (by the watch and by the
// controller's Relabelled events) and one Promote in the history; it
// returns the counts for the report.
func (p *promoteFault) check() string {
	var events corev1.EventList
	require.NoError(p.t, p.c.List(p.t.Context(), &events))
	relabelEvents := map[string]int{}
	for _, ev := range events.Items {
		if ev.InvolvedObject.Kind == "Namespace" && ev.Reason == "Relabelled" {
			n := 1
			if ev.Series != nil && ev.Series.Count > 1 {
				n = int(ev.Series.Count)
			}
			relabelEvents[ev.InvolvedObject.Name] += n
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	double := 0
	for _, ns := range p.namespaces {
		assert.Equal(p.t, 1, p.transitions[ns], "namespace %s relabelled once", ns)
		// An Event may be lost with the process killed right after its
		// relabel; never two.
		assert.LessOrEqual(p.t, relabelEvents[ns], 1, "namespace %s relabelled once (events)", ns)
		if p.transitions[ns] > 1 || relabelEvents[ns] > 1 {
			double++
		}
	}
	m := p.waitMesh("read", func(*v1alpha1.Mesh) bool { return true })
	promotes := 0
	for _, h := range m.Status.History {
		if h.Action == string(revisions.ActionPromote) {
			promotes++
		}
	}
	assert.Equal(p.t, 1, promotes, "the promotion is recorded once: %v", m.Status.History)
	return fmt.Sprintf("namespaces=%d relabelled_twice=%d promote_in_history=%d", len(p.namespaces), double, promotes)
}

func TestFaultsPromotion(t *testing.T) {
	t.Run("promote then kill -9 mid-relabel, restart: the relabel completes once", func(t *testing.T) {
		m := startProcManager(t)
		p := newPromoteFault(t)
		var killedAt, readyAt, doneAt time.Time
		var left int
		l := during(t, p.namespaces[0], 25*time.Second, func() {
			time.Sleep(3 * time.Second)
			p.promote()
			m.kill9()
			killedAt = time.Now()
			left = p.stillCanary()
			time.Sleep(time.Second) // a supervisor's backoff
			m.start()
			readyAt = time.Now()
			p.waitRelabelled()
			doneAt = time.Now()
		})
		report(t, "promote-then-kill", l, fmt.Sprintf("%s still_canary_at_kill=%d manager_back_in=%s relabel_done_after_kill=%s",
			p.check(), left, readyAt.Sub(killedAt).Round(100*time.Millisecond), doneAt.Sub(killedAt).Round(100*time.Millisecond)))
		assert.Positive(t, l.admitted)
	})

	t.Run("leader killed mid-relabel with a standby: the standby takes over and finishes", func(t *testing.T) {
		ms := startProcReplicas(t, 2)
		leader, standby := ms[0], ms[1]
		require.Eventually(t, leader.leads, faultReadyWait, 100*time.Millisecond, "the first replica leads")
		assert.False(t, standby.leads())
		p := newPromoteFault(t)
		var killedAt, tookOverAt, doneAt time.Time
		var left int
		l := during(t, p.namespaces[0], 40*time.Second, func() {
			time.Sleep(3 * time.Second)
			p.promote()
			leader.kill9()
			killedAt = time.Now()
			left = p.stillCanary()
			require.Eventually(t, standby.leads, faultReadyWait, 50*time.Millisecond, "the standby takes over")
			tookOverAt = time.Now()
			p.waitRelabelled()
			doneAt = time.Now()
		})
		report(t, "leader-killed-mid-relabel-standby", l, fmt.Sprintf("%s still_canary_at_kill=%d standby_leads_after=%s relabel_done_after_kill=%s",
			p.check(), left, tookOverAt.Sub(killedAt).Round(100*time.Millisecond), doneAt.Sub(killedAt).Round(100*time.Millisecond)))
		assert.Positive(t, l.admitted)
	})
}
