//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshrev/meshrev/internal/devcluster"
)

// components are the processes of a local cluster, in start order.
var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// TestClusterUpAfterACrashAndDown proves what `make cluster-up` promises on a
// second cluster of its own: up reuses a healthy cluster; up after a crash (the
// apiserver killed and etcd's pid file lost, or every component killed)
// restarts the components on the cluster's data, so an object created before
// the crash is still there; so does up after down; up -wipe starts a fresh
// cluster; and down leaves no process running.
func TestClusterUpAfterACrashAndDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	t.Cleanup(func() { _, _ = devcluster.Down(dir) })
	// up is what `go run ./hack/cluster up [-wipe]` does.
	up := func(wipe bool) *devcluster.Cluster {
		c, err := devcluster.Start(ctx, devcluster.Options{Dir: dir, Detach: true, Reuse: !wipe, Wipe: wipe, Nodes: 1})
		require.NoError(t, err)
		cs, err := c.Clientset()
		require.NoError(t, err)
		_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "alive-"}}, metav1.CreateOptions{})
		require.NoError(t, err, "the cluster serves")
		return c
	}
	pid := func(component string) int {
		b, err := os.ReadFile(filepath.Join(dir, "cluster", component+".pid"))
		require.NoError(t, err)
		p, err := strconv.Atoi(strings.TrimSpace(string(b)))
		require.NoError(t, err)
		return p
	}
	const survivor = "created-before-the-crash"
	survived := func(c *devcluster.Cluster) error {
		cs, err := c.Clientset()
		require.NoError(t, err)
		cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, survivor, metav1.GetOptions{})
		if err == nil {
			assert.Equal(t, map[string]string{"kept": "yes"}, cm.Data)
		}
		return err
	}

	first := up(false)
	assert.False(t, first.Reused)
	assert.False(t, first.Restarted, "an empty directory gets a fresh cluster")
	cs, err := first.Clientset()
	require.NoError(t, err)
	_, err = cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: survivor},
		Data:       map[string]string{"kept": "yes"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	apiserver, etcd := pid("kube-apiserver"), pid("etcd")

	again := up(false)
	assert.True(t, again.Reused, "a healthy cluster is reused")
	assert.Equal(t, apiserver, pid("kube-apiserver"), "reuse restarts nothing")

	t.Run("up after the apiserver died and etcd's pid file was lost restarts on the data", func(t *testing.T) {
		require.NoError(t, syscall.Kill(apiserver, syscall.SIGKILL))
		require.NoError(t, os.Remove(filepath.Join(dir, "cluster", "etcd.pid")))
		require.Eventually(t, func() bool { return !running(apiserver) }, 10*time.Second, 100*time.Millisecond)

		after := up(false)
		assert.False(t, after.Reused)
		assert.True(t, after.Restarted, "a crashed cluster is restarted on its data")
		assert.NotEqual(t, apiserver, pid("kube-apiserver"))
		assert.False(t, running(etcd), "the stray etcd whose pid file was lost was stopped")
		assert.NoError(t, survived(after), "the ConfigMap created before the crash is still there")
		assert.Equal(t, first.CAPEM, after.CAPEM, "the PKI is kept")
		assert.Equal(t, first.Config.Host, after.Config.Host, "the apiserver keeps its port")
	})

	t.Run("up after kill -9 of every component restarts them on the data", func(t *testing.T) {
		before := map[string]int{}
		for _, c := range components {
			before[c] = pid(c)
			require.NoError(t, syscall.Kill(before[c], syscall.SIGKILL), c)
		}
		for _, c := range components {
			require.Eventually(t, func() bool { return !running(before[c]) }, 10*time.Second, 100*time.Millisecond, c)
		}
		require.Error(t, devcluster.Status(ctx, dir, 1), "nothing runs after the crash")

		after := up(false)
		assert.True(t, after.Restarted, "a crashed cluster is restarted on its data")
		for _, c := range components {
			assert.NotEqual(t, before[c], pid(c), "%s was restarted", c)
			assert.True(t, running(pid(c)), "%s runs", c)
		}
		assert.NoError(t, survived(after), "the ConfigMap created before the crash is still there")
		assert.Equal(t, first.CAPEM, after.CAPEM, "the PKI is kept")
	})

	t.Run("up after down restarts on the data", func(t *testing.T) {
		_, err := devcluster.Down(dir)
		require.NoError(t, err)
		after := up(false)
		assert.True(t, after.Restarted)
		assert.NoError(t, survived(after), "the ConfigMap created before down is still there")
	})

	t.Run("up -wipe starts a fresh cluster", func(t *testing.T) {
		fresh := up(true)
		assert.False(t, fresh.Reused)
		assert.False(t, fresh.Restarted)
		assert.True(t, apierrors.IsNotFound(survived(fresh)), "the wiped cluster has no ConfigMap of the old one")
		assert.NotEqual(t, first.CAPEM, fresh.CAPEM, "a wipe makes a new CA")
	})

	stopped, err := devcluster.Down(dir)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, stopped, 4, "etcd, apiserver, controller-manager, scheduler and kwok were stopped")
	for _, c := range components {
		b, err := os.ReadFile(filepath.Join(dir, "cluster", c+".pid"))
		if err != nil {
			continue // down removes pid files
		}
		p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		assert.False(t, running(p), "%s (pid %d) is still running after down", c, p)
	}
	assert.Error(t, devcluster.Status(ctx, dir, 1), "down leaves no healthy cluster behind")
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	return len(fields) < 3 || fields[2] != "Z"
}
