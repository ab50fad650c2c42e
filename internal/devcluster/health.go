package devcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

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
