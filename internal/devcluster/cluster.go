package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
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
	// previous cluster in Dir are stopped and the components restarted on its
	// data: etcd, PKI and kubeconfigs are kept, and so are its objects.
	Reuse bool
	// Wipe drops the data of a previous cluster in Dir and starts a fresh one.
	// Without it, data that a restart cannot use fails Start with an error
	// wrapping [ErrDataUnusable].
	Wipe bool
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
	// Restarted is true when Start restarted the components on the data of a
	// previous cluster (its objects are still there).
	Restarted bool
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

// Start builds what is missing, then starts a cluster in opts.Dir — on the
// data of a previous cluster there unless opts.Wipe, fresh otherwise — or
// reuses a healthy one with opts.Reuse, and waits until it is usable: the
// apiserver is ready, every node is Ready and schedulable, and the default
// ServiceAccount and kube-root-ca.crt exist in namespace default.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Nodes <= 0 {
		opts.Nodes = DefaultNodes
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	c, err := newCluster(ctx, opts)
	if err != nil {
		return nil, err
	}
	if opts.Reuse {
		reused, err := c.reuse(ctx, opts)
		if err != nil {
			return nil, err
		}
		if reused {
			return c, nil
		}
	}

	started := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	err = c.boot(ctx, opts, false)
	for attempt := 2; err != nil && attempt <= 3 && portClash(c.Layout); attempt++ {
		// Free ports are picked before the components bind them; another
		// process may take one in between. Try again with new ports (and
		// fresh data again when the first attempt was a fresh start).
		fmt.Fprintf(opts.Log, "a port was taken by another process meanwhile; retrying with new ports (attempt %d)\n", attempt)
		c.procs, c.NodeNames = nil, nil
		retry := opts
		retry.Wipe = opts.Wipe || !c.Restarted
		err = c.boot(ctx, retry, true)
	}
	if err != nil {
		// Leave nothing running; keep logs for the diagnosis.
		c.keep = true
		_ = c.Stop()
		return nil, err
	}
	fmt.Fprintf(opts.Log, "local cluster ready in %s: %d nodes, kubeconfig %s\n", time.Since(started).Round(100*time.Millisecond), len(c.NodeNames), c.KubeconfigPath)
	return c, nil
}

// newCluster prepares the cluster directory (a temporary one when opts.Dir
// is empty): the binaries built, bin/ linking kubectl and helm, logs/.
func newCluster(ctx context.Context, opts Options) (*Cluster, error) {
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

	bins, err := Build(ctx, BuildOptions{RepoRoot: opts.RepoRoot, CacheDir: opts.CacheDir, Log: opts.Log})
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
	return c, nil
}

// reuse loads the cluster running in the directory when it is healthy, and
// reports whether it did.
func (c *Cluster) reuse(ctx context.Context, opts Options) (bool, error) {
	st, err := healthy(ctx, c.Layout, opts.Nodes)
	if err != nil {
		if _, statErr := os.Stat(c.Layout.StateFile()); statErr == nil {
			fmt.Fprintf(opts.Log, "existing cluster in %s is not healthy (%v); restarting it\n", c.Layout.Root, err)
		}
		return false, nil
	}
	if err := c.load(st); err != nil {
		return false, err
	}
	c.Reused = true
	fmt.Fprintf(opts.Log, "local cluster already running and healthy at %s (started %s); reusing it\n", st.APIServer, st.Started.Format(time.RFC3339))
	return true, nil
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
		remove := c.Layout.etcdDir()
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
	cfg, err := c.adminConfig()
	if err != nil {
		return err
	}
	c.Config = cfg
	c.CAPEM = cfg.CAData
	c.NodeNames = st.Nodes
	return nil
}

// adminConfig loads the admin kubeconfig of the cluster directory.
func (c *Cluster) adminConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Layout.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", c.Layout.Kubeconfig(), err)
	}
	tuneConfig(cfg)
	return cfg, nil
}

func tuneConfig(cfg *rest.Config) {
	cfg.QPS = 100
	cfg.Burst = 200
}
