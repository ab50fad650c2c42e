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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshrev/meshrev/internal/devcluster"
)

// TestClusterUpAfterACrashAndDown proves what `make cluster-up` promises on a
// second cluster of its own: up reuses a healthy cluster, up after a crash
// (apiserver killed, a pid file lost) starts a fresh working one, and down
// leaves no process running.
func TestClusterUpAfterACrashAndDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	t.Cleanup(func() { _, _ = devcluster.Down(dir) })
	start := func(reuse bool) *devcluster.Cluster {
		c, err := devcluster.Start(ctx, devcluster.Options{Dir: dir, Detach: true, Reuse: reuse, Nodes: 1})
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

	first := start(false)
	assert.False(t, first.Reused)
	apiserver, etcd := pid("kube-apiserver"), pid("etcd")

	again := start(true)
	assert.True(t, again.Reused, "a healthy cluster is reused")
	assert.Equal(t, apiserver, pid("kube-apiserver"), "reuse restarts nothing")

	// The crash: the apiserver dies and etcd's pid file is lost.
	require.NoError(t, syscall.Kill(apiserver, syscall.SIGKILL))
	require.NoError(t, os.Remove(filepath.Join(dir, "cluster", "etcd.pid")))
	require.Eventually(t, func() bool { return !running(apiserver) }, 10*time.Second, 100*time.Millisecond)

	after := start(true)
	assert.False(t, after.Reused, "a crashed cluster is started afresh")
	assert.NotEqual(t, apiserver, pid("kube-apiserver"))
	assert.False(t, running(etcd), "the stray etcd whose pid file was lost was stopped")

	stopped, err := devcluster.Down(dir)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, stopped, 4, "etcd, apiserver, controller-manager, scheduler and kwok were stopped")
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
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
