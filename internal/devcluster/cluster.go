package devcluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Defaults of [Options].
const (
	DefaultNodes        = 3
	DefaultStartTimeout = 3 * time.Minute
	// ServiceClusterIPRange is the service CIDR of the local cluster.
	ServiceClusterIPRange = "10.96.0.0/16"
	// PodCIDR is the range kwok assigns pod IPs from.
	PodCIDR = "10.244.0.0/16"
	// NodeLabel marks the fake nodes: type=kwok.
	NodeLabel = "type"
	// NodeLabelValue is the value of [NodeLabel] on fake nodes.
	NodeLabelValue = "kwok"
	// AdminUser is the user of the admin kubeconfig (group system:masters).
	AdminUser = "meshrev-admin"
)

// Options configures [Start].
type Options struct {
	// Dir is the cluster directory. Empty means a new temporary directory that
	// Stop removes (unless Keep was called).
	Dir string
	// RepoRoot and CacheDir locate the build modules and the binary cache; see [BuildOptions].
	RepoRoot string
	CacheDir string
	// Nodes is the number of kwok nodes (default 3).
	Nodes int
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Reuse returns the cluster already running healthy in Dir instead of
	// restarting it. Without it (or when it is not healthy) any processes of a
	// previous cluster in Dir are stopped and its data wiped.
	Reuse bool
	// Detach lets the processes outlive the caller (for `hack/cluster up`).
	// Otherwise they are killed if the caller dies without calling Stop.
	Detach bool
	// StartTimeout bounds the start once the binaries are built (default 3m).
	StartTimeout time.Duration
}

// Cluster is a running local cluster (or an external one, see [Connect]).
type Cluster struct {
	// Layout names the files of the cluster directory (empty for an external cluster).
	Layout Layout
	// KubeconfigPath is the admin kubeconfig (cluster-admin via system:masters).
	KubeconfigPath string
	// Config is the admin REST config.
	Config *rest.Config
	// CAPEM is the PEM of the cluster CA (the apiserver's serving CA).
	CAPEM []byte
	// Binaries are the cached binaries (nil for an external cluster).
	Binaries *Binaries
	// NodeNames are the fake nodes (empty for an external cluster).
	NodeNames []string
	// Reused is true when Start found the cluster already running.
	Reused bool
	// External is true for a cluster given by kubeconfig: Stop leaves it alone.
	External bool

	tempDir bool
	keep    bool
	procs   []*process
	stopped bool
}

// state is what cluster/state.json records about a running cluster.
type state struct {
	APIServer string         `json:"apiServer"`
	Ports     map[string]int `json:"ports"`
	PIDs      map[string]int `json:"pids"`
	Nodes     []string       `json:"nodes"`
	Started   time.Time      `json:"started"`
}

// Start builds what is missing, then starts a fresh cluster in opts.Dir (or
// reuses a healthy one with opts.Reuse) and waits until it is usable: the
// apiserver is ready, every node is Ready and schedulable, and the default
// ServiceAccount and kube-root-ca.crt exist in namespace default.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	if opts.Nodes <= 0 {
		opts.Nodes = DefaultNodes
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	c := &Cluster{}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "meshrev-cluster-")
		if err != nil {
			return nil, fmt.Errorf("creating a temporary cluster directory: %w", err)
		}
		opts.Dir = dir
		c.tempDir = true
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("cluster directory %q: %w", opts.Dir, err)
	}
	c.Layout = Layout{Root: dir}
	c.KubeconfigPath = c.Layout.Kubeconfig()

	bins, err := Build(ctx, BuildOptions{RepoRoot: opts.RepoRoot, CacheDir: opts.CacheDir, Log: logw})
	if err != nil {
		if c.tempDir {
			_ = os.RemoveAll(dir)
		}
		return nil, fmt.Errorf("building the local cluster binaries: %w", err)
	}
	c.Binaries = bins
	for _, d := range []string{c.Layout.Root, c.Layout.BinDir(), c.Layout.LogDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if err := c.linkBinaries(); err != nil {
		return nil, err
	}

	if opts.Reuse {
		if st, err := healthy(ctx, c.Layout, opts.Nodes); err == nil {
			if err := c.load(st); err != nil {
				return nil, err
			}
			c.Reused = true
			fmt.Fprintf(logw, "local cluster already running and healthy at %s (started %s); reusing it\n", st.APIServer, st.Started.Format(time.RFC3339))
			return c, nil
		} else if _, statErr := os.Stat(c.Layout.StateFile()); statErr == nil {
			fmt.Fprintf(logw, "existing cluster in %s is not healthy (%v); starting a fresh one\n", dir, err)
		}
	}

	started := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	err = c.startFresh(ctx, logw, opts)
	for attempt := 2; err != nil && attempt <= 3 && portClash(c.Layout); attempt++ {
		// Free ports are picked before the components bind them; another
		// process may take one in between. Try again with new ports.
		fmt.Fprintf(logw, "a port was taken by another process meanwhile; retrying with new ports (attempt %d)\n", attempt)
		c.procs, c.NodeNames = nil, nil
		err = c.startFresh(ctx, logw, opts)
	}
	if err != nil {
		// Leave nothing running; keep logs for the diagnosis.
		c.keep = true
		_ = c.Stop()
		return nil, err
	}
	fmt.Fprintf(logw, "local cluster ready in %s: %d nodes, kubeconfig %s\n", time.Since(started).Round(100*time.Millisecond), len(c.NodeNames), c.KubeconfigPath)
	return c, nil
}

// Connect returns an external cluster from a kubeconfig; Stop leaves it alone.
func Connect(kubeconfigPath string) (*Cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfigPath, err)
	}
	tuneConfig(cfg)
	caPEM := cfg.CAData
	if len(caPEM) == 0 && cfg.CAFile != "" {
		if caPEM, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("reading CA of kubeconfig %s: %w", kubeconfigPath, err)
		}
	}
	return &Cluster{KubeconfigPath: kubeconfigPath, Config: cfg, CAPEM: caPEM, External: true}, nil
}

// Clientset returns a typed client with the admin credentials.
func (c *Cluster) Clientset() (*kubernetes.Clientset, error) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("creating a client for %s: %w", c.Config.Host, err)
	}
	return cs, nil
}

// Keep makes Stop leave the cluster directory (logs, PKI, kubeconfig) in place,
// e.g. after a test failed.
func (c *Cluster) Keep() { c.keep = true }

// Stop stops the processes this cluster started (verified by pid and marker)
// and, for a temporary directory not kept, removes it. It is a no-op for an
// external cluster; stopping twice is harmless.
func (c *Cluster) Stop() error {
	if c == nil || c.External || c.stopped {
		return nil
	}
	c.stopped = true
	_, err := stopAll(c.Layout)
	for _, p := range c.procs {
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
		}
	}
	if err != nil {
		return fmt.Errorf("stopping the local cluster in %s: %w", c.Layout.Root, err)
	}
	_ = os.Remove(c.Layout.StateFile())
	if c.tempDir {
		// A kept temporary directory is for its logs: drop the 64 MB of etcd data.
		remove := filepath.Join(c.Layout.StateDir(), "etcd")
		if !c.keep {
			remove = c.Layout.Root
		}
		if err := os.RemoveAll(remove); err != nil {
			return fmt.Errorf("removing %s: %w", remove, err)
		}
	}
	return nil
}

// Down stops the cluster running in dir (whatever started it), leaving its
// logs. It reports how many processes it stopped.
func Down(dir string) (int, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, fmt.Errorf("cluster directory %q: %w", dir, err)
	}
	l := Layout{Root: abs}
	n, err := stopAll(l)
	if err != nil {
		return n, fmt.Errorf("stopping the local cluster in %s: %w", abs, err)
	}
	if err := os.Remove(l.StateFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return n, fmt.Errorf("removing %s: %w", l.StateFile(), err)
	}
	return n, nil
}

// Status describes the cluster in dir: nil when it is running and healthy,
// otherwise why not.
func Status(ctx context.Context, dir string, nodes int) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("cluster directory %q: %w", dir, err)
	}
	if nodes <= 0 {
		nodes = DefaultNodes
	}
	_, err = healthy(ctx, Layout{Root: abs}, nodes)
	return err
}

func (c *Cluster) linkBinaries() error {
	for name, target := range map[string]string{"kubectl": c.Binaries.Kubectl, "helm": c.Binaries.Helm} {
		link := filepath.Join(c.Layout.BinDir(), name)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("linking %s to %s: %w", link, target, err)
		}
	}
	return nil
}

// load fills c from the kubeconfig of a running cluster.
func (c *Cluster) load(st *state) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath)
	if err != nil {
		return fmt.Errorf("loading %s: %w", c.KubeconfigPath, err)
	}
	tuneConfig(cfg)
	c.Config = cfg
	c.CAPEM = cfg.CAData
	c.NodeNames = st.Nodes
	return nil
}

func tuneConfig(cfg *rest.Config) {
	cfg.QPS = 100
	cfg.Burst = 200
}

// healthy checks that the cluster recorded in l is running: every pid is ours
// and alive, the apiserver is ready and all nodes are Ready.
func healthy(ctx context.Context, l Layout, nodes int) (*state, error) {
	data, err := os.ReadFile(l.StateFile())
	if err != nil {
		return nil, errors.New("no cluster state (not started)")
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("corrupt %s: %w", l.StateFile(), err)
	}
	for _, name := range componentOrder {
		pid := readPID(l.PIDFile(name))
		if pid == 0 || pid != st.PIDs[name] || !isOurs(pid, l.Root) {
			return nil, fmt.Errorf("%s is not running", name)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", l.Kubeconfig(), err)
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		return nil, fmt.Errorf("apiserver not ready: %w: %s", err, body)
	}
	ready, err := readyNodes(ctx, cs)
	if err != nil {
		return nil, err
	}
	if ready < nodes {
		return nil, fmt.Errorf("%d of %d nodes Ready", ready, nodes)
	}
	return &st, nil
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port on 127.0.0.1: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startFresh stops whatever ran in the directory before, wipes it and starts every component.
func (c *Cluster) startFresh(ctx context.Context, logw io.Writer, opts Options) error {
	l := c.Layout
	if n, err := stopAll(l); err != nil {
		return fmt.Errorf("stopping the previous cluster in %s: %w", l.Root, err)
	} else if n > 0 {
		fmt.Fprintf(logw, "stopped %d processes of a previous cluster in %s\n", n, l.Root)
	}
	if err := os.RemoveAll(l.StateDir()); err != nil {
		return fmt.Errorf("wiping stale cluster data %s: %w", l.StateDir(), err)
	}
	_ = os.Remove(l.Kubeconfig())
	for _, d := range []string{l.StateDir(), l.PKIDir(), filepath.Join(l.StateDir(), "kwok-home")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}

	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	st := &state{
		Ports: map[string]int{
			"etcd-client": ports[0], "etcd-peer": ports[1], "kube-apiserver": ports[2],
			"kube-controller-manager": ports[3], "kube-scheduler": ports[4],
		},
		PIDs:    map[string]int{},
		Started: time.Now().UTC(),
	}
	st.APIServer = fmt.Sprintf("https://127.0.0.1:%d", st.Ports["kube-apiserver"])

	fmt.Fprintf(logw, "starting local cluster in %s (apiserver %s)\n", l.Root, st.APIServer)
	if err := c.writePKI(st); err != nil {
		return err
	}
	detach := opts.Detach
	start := func(name, bin string, args []string, env ...string) (*process, error) {
		p, err := startProcess(l, name, bin, args, env, detach)
		if err != nil {
			return nil, err
		}
		c.procs = append(c.procs, p)
		st.PIDs[name] = p.cmd.Process.Pid
		return p, nil
	}

	// etcd
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", st.Ports["etcd-client"])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", st.Ports["etcd-peer"])
	etcd, err := start("etcd", c.Binaries.Etcd, []string{
		"--name=meshrev",
		"--data-dir=" + filepath.Join(l.StateDir(), "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=meshrev=" + peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync=true", // a throw-away test cluster: durability is not needed, speed is
		"--snapshot-count=10000",
		"--quota-backend-bytes=4294967296",
		"--log-level=warn",
	})
	if err != nil {
		return err
	}
	httpc := &http.Client{Timeout: 2 * time.Second}
	if err := waitForAll(ctx, l, []*process{etcd}, "etcd", "etcd did not become healthy", 30*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, httpc, etcdURL+"/health")
	}); err != nil {
		return err
	}
	fmt.Fprintf(logw, "  etcd healthy (%s)\n", etcdURL)

	// kube-apiserver
	pki := l.pki
	apiserver, err := start("kube-apiserver", c.Binaries.KubeAPIServer, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(st.Ports["kube-apiserver"]),
		"--tls-cert-file=" + pki("apiserver.crt"),
		"--tls-private-key-file=" + pki("apiserver.key"),
		"--client-ca-file=" + pki("ca.crt"),
		// Front proxy: aggregated APIs work, and the components' delegated
		// authentication finds its request-header CA.
		"--requestheader-client-ca-file=" + pki("front-proxy-ca.crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + pki("front-proxy-client.crt"),
		"--proxy-client-key-file=" + pki("front-proxy-client.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki("sa.pub"),
		"--service-account-signing-key-file=" + pki("sa.key"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		"--allow-privileged=true",
		// No real node or pod network: nothing can reach 127.0.0.1 through the
		// kubernetes Service, and loopback endpoints are invalid.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--event-ttl=1h",
		"--v=1",
	})
	if err != nil {
		return err
	}
	admin, err := c.adminConfig()
	if err != nil {
		return err
	}
	readyzClient, err := tlsHTTPClient(admin)
	if err != nil {
		return err
	}
	if err := waitForAll(ctx, l, []*process{etcd, apiserver}, "kube-apiserver", "kube-apiserver did not become ready", 90*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, readyzClient, st.APIServer+"/readyz")
	}); err != nil {
		return err
	}
	fmt.Fprintf(logw, "  kube-apiserver ready (%s)\n", st.APIServer)
	c.Config = admin
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return fmt.Errorf("creating the admin client: %w", err)
	}

	// Controllers, scheduler and kwok start together.
	kcm, err := start("kube-controller-manager", c.Binaries.KubeControllerManager, []string{
		"--kubeconfig=" + pki("kube-controller-manager.kubeconfig"),
		"--authentication-kubeconfig=" + pki("kube-controller-manager.kubeconfig"),
		"--authorization-kubeconfig=" + pki("kube-controller-manager.kubeconfig"),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(st.Ports["kube-controller-manager"]),
		"--tls-cert-file=" + pki("kube-controller-manager-serving.crt"),
		"--tls-private-key-file=" + pki("kube-controller-manager-serving.key"),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + pki("sa.key"),
		"--root-ca-file=" + pki("ca.crt"),
		"--cluster-signing-cert-file=" + pki("ca.crt"),
		"--cluster-signing-key-file=" + pki("ca.key"),
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		"--node-monitor-period=2s",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--v=1",
	})
	if err != nil {
		return err
	}
	sched, err := start("kube-scheduler", c.Binaries.KubeScheduler, []string{
		"--kubeconfig=" + pki("kube-scheduler.kubeconfig"),
		"--authentication-kubeconfig=" + pki("kube-scheduler.kubeconfig"),
		"--authorization-kubeconfig=" + pki("kube-scheduler.kubeconfig"),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(st.Ports["kube-scheduler"]),
		"--tls-cert-file=" + pki("kube-scheduler-serving.crt"),
		"--tls-private-key-file=" + pki("kube-scheduler-serving.key"),
		"--leader-elect=false",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--v=1",
	})
	if err != nil {
		return err
	}
	kwokConfig := filepath.Join(l.StateDir(), "kwok.yaml")
	if err := writeKwokConfig(kwokConfig, c.Binaries.KwokStages); err != nil {
		return err
	}
	kwok, err := start("kwok", c.Binaries.Kwok, []string{
		"--kubeconfig=" + pki("kwok.kubeconfig"),
		"--config=" + kwokConfig,
		"--manage-all-nodes=true",
	}, "HOME="+filepath.Join(l.StateDir(), "kwok-home"))
	if err != nil {
		return err
	}

	for i := 0; i < opts.Nodes; i++ {
		name := fmt.Sprintf("kwok-node-%d", i)
		if err := createNode(ctx, cs, name); err != nil {
			return err
		}
		c.NodeNames = append(c.NodeNames, name)
	}
	st.Nodes = c.NodeNames

	all := []*process{etcd, apiserver, kcm, sched, kwok}
	if err := waitForAll(ctx, l, all, "kube-scheduler", "kube-scheduler did not become healthy", 60*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, readyzClient, fmt.Sprintf("https://127.0.0.1:%d/healthz", st.Ports["kube-scheduler"]))
	}); err != nil {
		return err
	}
	if err := waitForAll(ctx, l, all, "kwok", "the kwok nodes did not become Ready and schedulable", 60*time.Second, func(ctx context.Context) error {
		ready, err := readyNodes(ctx, cs)
		if err != nil {
			return err
		}
		if ready < opts.Nodes {
			return fmt.Errorf("%d of %d nodes Ready and untainted", ready, opts.Nodes)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("%w\n(kube-controller-manager removes the not-ready taint; see also %s)", err, l.LogFile("kube-controller-manager"))
	}
	fmt.Fprintf(logw, "  %d kwok nodes Ready\n", opts.Nodes)
	if err := waitForAll(ctx, l, all, "kube-controller-manager", "kube-controller-manager did not create the default ServiceAccount and kube-root-ca.crt", 60*time.Second, func(ctx context.Context) error {
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("serviceaccount default/default: %w", err)
		}
		if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("configmap default/kube-root-ca.crt: %w", err)
		}
		return nil
	}); err != nil {
		return err
	}

	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding cluster state: %w", err)
	}
	if err := os.WriteFile(l.StateFile(), data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", l.StateFile(), err)
	}
	return nil
}

// writePKI creates the cluster CA, serving and client certificates, the
// service-account key and the kubeconfigs.
func (c *Cluster) writePKI(st *state) error {
	l := c.Layout
	ca, err := NewCA("meshrev-local-cluster-ca")
	if err != nil {
		return err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := writeFile(l.pki("ca.crt"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	if err := writeFile(l.pki("ca.key"), caKey, 0o600); err != nil {
		return err
	}
	c.CAPEM = ca.CertPEM

	apiserver, err := ca.Issue(CertOptions{
		CommonName: "kube-apiserver",
		Server:     true,
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	})
	if err != nil {
		return err
	}
	if err := apiserver.WriteFiles(l.pki("apiserver.crt"), l.pki("apiserver.key")); err != nil {
		return err
	}
	frontCA, err := NewCA("meshrev-local-front-proxy-ca")
	if err != nil {
		return err
	}
	if err := writeFile(l.pki("front-proxy-ca.crt"), frontCA.CertPEM, 0o644); err != nil {
		return err
	}
	frontClient, err := frontCA.ClientCert("front-proxy-client")
	if err != nil {
		return err
	}
	if err := frontClient.WriteFiles(l.pki("front-proxy-client.crt"), l.pki("front-proxy-client.key")); err != nil {
		return err
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		kp, err := ca.ServingCert("127.0.0.1", "localhost")
		if err != nil {
			return err
		}
		if err := kp.WriteFiles(l.pki(name+"-serving.crt"), l.pki(name+"-serving.key")); err != nil {
			return err
		}
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating the service-account signing key: %w", err)
	}
	saDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return fmt.Errorf("encoding the service-account key: %w", err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return fmt.Errorf("encoding the service-account public key: %w", err)
	}
	if err := writeFile(l.pki("sa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saDER}), 0o600); err != nil {
		return err
	}
	if err := writeFile(l.pki("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}), 0o644); err != nil {
		return err
	}

	users := []struct {
		file, user string
		groups     []string
	}{
		{l.Kubeconfig(), AdminUser, []string{"system:masters"}},
		{l.pki("kube-controller-manager.kubeconfig"), "system:kube-controller-manager", nil},
		{l.pki("kube-scheduler.kubeconfig"), "system:kube-scheduler", nil},
		{l.pki("kwok.kubeconfig"), "kwok", []string{"system:masters"}},
	}
	for _, u := range users {
		kp, err := ca.ClientCert(u.user, u.groups...)
		if err != nil {
			return err
		}
		if err := writeKubeconfig(u.file, st.APIServer, ca.CertPEM, u.user, kp); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) adminConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Layout.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", c.Layout.Kubeconfig(), err)
	}
	tuneConfig(cfg)
	return cfg, nil
}

func writeKubeconfig(path, server string, caPEM []byte, user string, kp *KeyPair) error {
	const name = "meshrev-local"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.CertPEM, ClientKeyData: kp.KeyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encoding kubeconfig %s: %w", path, err)
	}
	return writeFile(path, data, 0o600)
}

func writeKwokConfig(path, stagesFile string) error {
	stages, err := os.ReadFile(stagesFile)
	if err != nil {
		return fmt.Errorf("reading kwok stages %s (run `go run ./hack/cluster build`): %w", stagesFile, err)
	}
	cfg := "apiVersion: config.kwok.x-k8s.io/v1alpha1\n" +
		"kind: KwokConfiguration\n" +
		"options:\n" +
		"  manageAllNodes: true\n" +
		"  cidr: " + PodCIDR + "\n" +
		"  nodeIP: 127.0.0.1\n" +
		"  nodeLeaseDurationSeconds: 40\n" +
		// kwok applies its defaults to flags, not to a config file: spell them out.
		"  nodeLeaseParallelism: 4\n" +
		"  podPlayStageParallelism: 4\n" +
		"  nodePlayStageParallelism: 4\n" +
		"  podsOnNodeSyncParallelism: 1\n" +
		"  enablePodsOnNodeSyncListPager: true\n" +
		"  enablePodsOnNodeSyncStreamWatch: false\n" +
		"  enableDebuggingHandlers: false\n" +
		"  enableProfilingHandler: false\n"
	return writeFile(path, append([]byte(cfg), stages...), 0o644)
}

func createNode(ctx context.Context, cs kubernetes.Interface, name string) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				NodeLabel:                NodeLabelValue,
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
			Annotations: map[string]string{
				"kwok.x-k8s.io/node":           "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	return nil
}

// readyNodes counts nodes that are Ready and carry no not-ready/unreachable taint.
func readyNodes(ctx context.Context, cs kubernetes.Interface) (int, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("listing nodes: %w", err)
	}
	n := 0
	for _, node := range list.Items {
		if nodeSchedulable(&node) {
			n++
		}
	}
	return n, nil
}

func nodeSchedulable(node *corev1.Node) bool {
	if node.Spec.Unschedulable {
		return false
	}
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
			return false
		}
	}
	return ready
}

// waitForAll polls check until it succeeds. It fails as soon as any of procs
// exits (quoting that process's log), or after timeout with failure — e.g.
// "etcd did not become healthy" — quoting the log of component logName.
func waitForAll(ctx context.Context, l Layout, procs []*process, logName, failure string, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		for _, p := range procs {
			if err := p.exitError(); err != nil {
				return fmt.Errorf("%w; see %s:\n%s", err, l.LogFile(p.name), logTail(l.LogFile(p.name), 25))
			}
		}
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s in %s (last check: %v); see %s:\n%s",
				failure, timeout, last, l.LogFile(logName), logTail(l.LogFile(logName), 25))
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// portClash reports whether a component failed because its port was taken.
func portClash(l Layout) bool {
	for _, name := range componentOrder {
		data, err := os.ReadFile(l.LogFile(name))
		if err == nil && strings.Contains(string(data), "address already in use") {
			return true
		}
	}
	return false
}

func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return tail(string(data), n)
}

func httpOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func tlsHTTPClient(cfg *rest.Config) (*http.Client, error) {
	cert, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData)
	if err != nil {
		return nil, fmt.Errorf("admin client certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.CAData) {
		return nil, errors.New("admin kubeconfig has no CA data")
	}
	return &http.Client{
		Timeout: 3 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			RootCAs:      pool,
			Certificates: []tls.Certificate{cert},
		}},
	}, nil
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
