package devcluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// bootRun is one start of the components on the data of the cluster directory.
type bootRun struct {
	c      *Cluster
	l      Layout
	st     *state
	log    io.Writer
	detach bool
	// Set once kube-apiserver is ready.
	cs     kubernetes.Interface
	readyz *http.Client // admin TLS client for the health endpoints
}

// boot stops whatever runs in the directory, prepares its data (see
// prepareData) and starts every component on it: etcd, then kube-apiserver,
// then the controller manager, scheduler and kwok together. It returns once
// the cluster is usable and its state is recorded.
func (c *Cluster) boot(ctx context.Context, opts Options, newPorts bool) error {
	l := c.Layout
	if n, err := stopAll(l); err != nil {
		return fmt.Errorf("stopping the previous cluster in %s: %w", l.Root, err)
	} else if n > 0 {
		fmt.Fprintf(opts.Log, "stopped %d processes of a previous cluster in %s\n", n, l.Root)
	}
	st, err := c.prepareData(opts.Log, opts.Wipe, newPorts)
	if err != nil {
		return err
	}
	b := &bootRun{c: c, l: l, st: st, log: opts.Log, detach: opts.Detach}
	steps := []func(context.Context) error{
		b.startEtcd,
		b.startAPIServer,
		b.startControllerManager,
		b.startScheduler,
		b.startKwok,
		func(ctx context.Context) error { return b.createNodes(ctx, opts.Nodes) },
		func(ctx context.Context) error { return b.waitUsable(ctx, opts.Nodes) },
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	// The ports file goes last: it marks data a restart can use.
	if err := writeJSON(l.StateFile(), st); err != nil {
		return err
	}
	return writeJSON(l.PortsFile(), st.Ports)
}

// start starts one component and records its pid.
func (b *bootRun) start(name, bin string, args []string, env ...string) error {
	p, err := startProcess(b.l, name, bin, args, env, b.detach)
	if err != nil {
		return err
	}
	b.c.procs = append(b.c.procs, p)
	b.st.PIDs[name] = p.cmd.Process.Pid
	return nil
}

// wait polls check until it succeeds; it fails as soon as a component started
// so far exits, or after timeout (see waitForAll).
func (b *bootRun) wait(ctx context.Context, logName, failure string, timeout time.Duration, check func(context.Context) error) error {
	return waitForAll(ctx, b.l, b.c.procs, logName, failure, timeout, check)
}

func (b *bootRun) etcdURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", b.st.Ports[portEtcdClient])
}

// startEtcd starts etcd on the data directory (initialising it the first
// time) and waits until it is healthy.
func (b *bootRun) startEtcd(ctx context.Context) error {
	etcdURL := b.etcdURL()
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", b.st.Ports[portEtcdPeer])
	if err := b.start("etcd", b.c.Binaries.Etcd, []string{
		"--name=meshrev",
		"--data-dir=" + b.l.etcdDir(),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		// Ignored once the data directory is initialised.
		"--initial-cluster=meshrev=" + peerURL,
		"--initial-cluster-state=new",
		// A local cluster: its data survives a crash of the processes, which
		// is what a restart needs, not one of the machine. Speed matters more.
		"--unsafe-no-fsync=true",
		"--snapshot-count=10000",
		"--quota-backend-bytes=4294967296",
		"--log-level=warn",
	}); err != nil {
		return err
	}
	httpc := &http.Client{Timeout: 2 * time.Second}
	if err := b.wait(ctx, "etcd", "etcd did not become healthy", 30*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, httpc, etcdURL+"/health")
	}); err != nil {
		return err
	}
	fmt.Fprintf(b.log, "  etcd healthy (%s)\n", etcdURL)
	return nil
}

// startAPIServer starts kube-apiserver, waits until it is ready and makes
// the admin client.
func (b *bootRun) startAPIServer(ctx context.Context) error {
	pki := b.l.pki
	if err := b.start("kube-apiserver", b.c.Binaries.KubeAPIServer, []string{
		"--etcd-servers=" + b.etcdURL(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(b.st.Ports[portAPIServer]),
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
	}); err != nil {
		return err
	}
	admin, err := b.c.adminConfig()
	if err != nil {
		return err
	}
	if b.readyz, err = tlsHTTPClient(admin); err != nil {
		return err
	}
	if err := b.wait(ctx, "kube-apiserver", "kube-apiserver did not become ready", 90*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, b.readyz, b.st.APIServer+"/readyz")
	}); err != nil {
		return err
	}
	fmt.Fprintf(b.log, "  kube-apiserver ready (%s)\n", b.st.APIServer)
	b.c.Config = admin
	if b.cs, err = kubernetes.NewForConfig(admin); err != nil {
		return fmt.Errorf("creating the admin client: %w", err)
	}
	return nil
}

// startControllerManager starts kube-controller-manager; waitUsable waits
// for its work.
func (b *bootRun) startControllerManager(context.Context) error {
	pki := b.l.pki
	return b.start("kube-controller-manager", b.c.Binaries.KubeControllerManager, append(b.componentFlags("kube-controller-manager", portControllerManager),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+pki("sa.key"),
		"--root-ca-file="+pki("ca.crt"),
		"--cluster-signing-cert-file="+pki("ca.crt"),
		"--cluster-signing-key-file="+pki("ca.key"),
		"--service-cluster-ip-range="+ServiceClusterIPRange,
		"--node-monitor-period=2s",
	))
}

// startScheduler starts kube-scheduler; waitUsable waits for its health.
func (b *bootRun) startScheduler(context.Context) error {
	return b.start("kube-scheduler", b.c.Binaries.KubeScheduler, b.componentFlags("kube-scheduler", portScheduler))
}

// componentFlags are the flags kube-controller-manager and kube-scheduler
// share: their kubeconfig (also for delegated authentication and
// authorization), a serving certificate for their health endpoint on
// 127.0.0.1, no leader election (one replica) and client rate limits for a
// busy test cluster.
func (b *bootRun) componentFlags(name, port string) []string {
	kubeconfig := b.l.pki(name + ".kubeconfig")
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(b.st.Ports[port]),
		"--tls-cert-file=" + b.l.pki(name+"-serving.crt"),
		"--tls-private-key-file=" + b.l.pki(name+"-serving.key"),
		"--leader-elect=false",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--v=1",
	}
}

// startKwok writes kwok's configuration (with the stages of the pinned
// build) and starts it managing every node.
func (b *bootRun) startKwok(context.Context) error {
	home := filepath.Join(b.l.StateDir(), "kwok-home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", home, err)
	}
	kwokConfig := filepath.Join(b.l.StateDir(), "kwok.yaml")
	if err := writeKwokConfig(kwokConfig, b.c.Binaries.KwokStages); err != nil {
		return err
	}
	return b.start("kwok", b.c.Binaries.Kwok, []string{
		"--kubeconfig=" + b.l.pki("kwok.kubeconfig"),
		"--config=" + kwokConfig,
		"--manage-all-nodes=true",
	}, "HOME="+home)
}

// createNodes creates the fake nodes kwok-node-0..n-1 (kept when they exist).
// They report the API server's version as their kubelet's, as the nodes of
// a real cluster do (kwok would report kwok-vX, which is no kubelet version:
// Istio and meshrev read it to decide on native sidecars).
func (b *bootRun) createNodes(ctx context.Context, n int) error {
	sv, err := b.cs.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("reading the API server's version: %w", err)
	}
	b.c.NodeNames = nil
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("kwok-node-%d", i)
		if err := createNode(ctx, b.cs, name, sv.GitVersion); err != nil {
			return err
		}
		b.c.NodeNames = append(b.c.NodeNames, name)
	}
	b.st.Nodes = b.c.NodeNames
	return nil
}

// waitUsable waits for what the controller manager, scheduler and kwok do:
// the scheduler is healthy, n nodes are Ready and schedulable, and namespace
// default has its ServiceAccount and kube-root-ca.crt.
func (b *bootRun) waitUsable(ctx context.Context, n int) error {
	if err := b.wait(ctx, "kube-scheduler", "kube-scheduler did not become healthy", 60*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, b.readyz, fmt.Sprintf("https://127.0.0.1:%d/healthz", b.st.Ports[portScheduler]))
	}); err != nil {
		return err
	}
	if err := b.wait(ctx, "kwok", "the kwok nodes did not become Ready and schedulable", 60*time.Second, func(ctx context.Context) error {
		ready, err := readyNodes(ctx, b.cs)
		if err != nil {
			return err
		}
		if ready < n {
			return fmt.Errorf("%d of %d nodes Ready and untainted", ready, n)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("%w\n(kube-controller-manager removes the not-ready taint; see also %s)", err, b.l.LogFile("kube-controller-manager"))
	}
	fmt.Fprintf(b.log, "  %d kwok nodes Ready\n", n)
	return b.wait(ctx, "kube-controller-manager", "kube-controller-manager did not create the default ServiceAccount and kube-root-ca.crt", 60*time.Second, func(ctx context.Context) error {
		if _, err := b.cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("serviceaccount default/default: %w", err)
		}
		if _, err := b.cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("configmap default/kube-root-ca.crt: %w", err)
		}
		return nil
	})
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

func createNode(ctx context.Context, cs kubernetes.Interface, name, kubeletVersion string) error {
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
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity,
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: kubeletVersion}},
	}
	_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// A node kept from an older start reports the kubelet of this one.
		patch := fmt.Sprintf(`{"status":{"nodeInfo":{"kubeletVersion":%q}}}`, kubeletVersion)
		_, err = cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	}
	if err != nil {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	return nil
}
