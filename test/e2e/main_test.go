//go:build e2e

// Package e2e holds meshrev's end-to-end tests. They run against the local
// cluster of package internal/devcluster (real etcd, kube-apiserver, controller
// manager and scheduler; kwok fake nodes), started once per `go test` run by
// TestMain:
//
//	go test -tags e2e ./test/e2e/... -count=1 -timeout 40m   (make test-e2e)
//
// Environment:
//
//	MESHREV_E2E_KUBECONFIG   use this running cluster instead of starting one, e.g.
//	                         .dev/kubeconfig after `make cluster-up` (fast iteration)
//	MESHREV_E2E_CLUSTER_DIR  start a fresh cluster in this directory (wiped first,
//	                         kept afterwards) instead of a temporary one
//
// A cluster that cannot start fails the run with the reason; tests never skip.
package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"

	"github.com/meshrev/meshrev/internal/devcluster"
)

// Environment variables read by TestMain.
const (
	// KubeconfigEnv names a kubeconfig of an already running cluster to test against.
	KubeconfigEnv = "MESHREV_E2E_KUBECONFIG"
	// ClusterDirEnv names a directory to start the cluster in (kept after the run).
	ClusterDirEnv = "MESHREV_E2E_CLUSTER_DIR"
)

var shared *devcluster.Cluster

// Env returns the cluster shared by all tests of the package.
func Env() *devcluster.Cluster { return shared }

// Client returns an admin clientset for the shared cluster.
func Client(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cs, err := Env().Clientset()
	require.NoError(t, err)
	return cs
}

// NewNamespace creates a namespace named prefix-<random> with labels and
// deletes it when the test ends. It returns the name.
func NewNamespace(t testing.TB, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   strings.ToLower(prefix) + "-" + rand.String(6),
		Labels: labels,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Client(t).CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	require.NoError(t, err, "creating namespace %s", ns.Name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := Client(t).CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Logf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// TestMain starts (or connects to) the cluster, runs the tests and stops it.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if kubeconfig := os.Getenv(KubeconfigEnv); kubeconfig != "" {
		c, err := devcluster.Connect(kubeconfig)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: FAIL: %s=%s: %v\n", KubeconfigEnv, kubeconfig, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "e2e: using the running cluster of %s (%s)\n", kubeconfig, c.Config.Host)
		shared = c
		return m.Run()
	}

	// A cold build of the binaries takes about ten minutes on two cores.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// A test run wants a fresh cluster, also in a directory of its own choice.
	opts := devcluster.Options{Dir: os.Getenv(ClusterDirEnv), Wipe: true, Log: prefixWriter{}}
	c, err := devcluster.Start(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the local cluster did not start: %v\n", err)
		return 1
	}
	shared = c
	if opts.Dir != "" {
		c.Keep()
	}
	code := m.Run()
	if code != 0 {
		c.Keep()
		fmt.Fprintf(os.Stderr, "e2e: tests failed; component logs kept in %s\n", c.Layout.LogDir())
	}
	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: %v\n", err)
		return 1
	}
	return code
}

// prefixWriter writes cluster progress lines to stderr, prefixed.
type prefixWriter struct{}

func (prefixWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		fmt.Fprintf(os.Stderr, "e2e: %s\n", line)
	}
	return len(p), nil
}
