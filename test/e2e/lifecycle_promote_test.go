//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// lcPlainRevision is a revision without a control plane (ready at once).
func lcPlainRevision(version string) v1alpha1.Revision {
	r := lcRevision(version)
	r.ControlPlane = nil
	return r
}

// deployCanary adds a canary revision and waits for the controller to record it.
func (e *lcEnv) deployCanary(canary v1alpha1.Revision) {
	e.t.Helper()
	_, err := e.update(func(m *v1alpha1.Mesh) {
		m.Spec.Revisions = append(m.Spec.Revisions, canary)
		m.Spec.Canary = canary.Name
	})
	require.NoError(e.t, err)
	e.waitMesh("canary recorded", func(m *v1alpha1.Mesh) bool { return m.Status.Phase == v1alpha1.PhaseCanaryDeployed })
}

// TestLifecyclePromoteLeavesNoPodBehind creates pods continuously in a
// namespace labelled canary while the canary is promoted: every pod created
// before, during and after the promotion (and the relabel that follows)
// carries a sidecar of the canary, now stable, revision.
func TestLifecyclePromoteLeavesNoPodBehind(t *testing.T) {
	e := lcSetup(t, nil)
	stable, canary := lcPlainRevision("1.22.6"), lcPlainRevision("1.23.6")
	e.createMesh(stable)
	legacy := NewNamespace(t, "legacy", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	e.deploy(legacy, "old")
	e.waitRolledOut(legacy, "old")
	e.deployCanary(canary)
	churn := NewNamespace(t, "churn", map[string]string{revisions.LabelRev: revisions.TagCanary})

	// The pod creator: one bare pod every 50ms until stopped.
	var (
		mu      sync.Mutex
		created []string
		failed  []error
		stop    = make(chan struct{})
		done    = make(chan struct{})
		count   atomic.Int32
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: churn, Name: fmt.Sprintf("churn-%03d", i)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
			}
			err := e.c.Create(context.Background(), p)
			mu.Lock()
			if err != nil {
				failed = append(failed, err)
			} else {
				created = append(created, p.Name)
				count.Add(1)
			}
			mu.Unlock()
		}
	}()
	waitCount := func(n int32) {
		t.Helper()
		require.NoError(t, wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, lcWaitTimeout, true, func(context.Context) (bool, error) {
			return count.Load() >= n, nil
		}))
	}

	waitCount(10)
	warnings, err := e.update(func(m *v1alpha1.Mesh) { m.Spec.Stable, m.Spec.Canary = canary.Name, "" })
	require.NoError(t, err)
	assert.Empty(t, warnings)
	atPromote := count.Load()
	e.waitMesh("relabelled", func(m *v1alpha1.Mesh) bool {
		return m.Status.Phase != v1alpha1.PhaseCanaryDeployed && lcReady(m)
	})
	require.Equal(t, revisions.TagStable, e.namespaceLabel(churn, revisions.LabelRev))
	waitCount(count.Load() + 10)
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, failed, "no pod creation failed")
	require.Greater(t, atPromote, int32(5), "pods were created before the promotion")
	require.Greater(t, int32(len(created)), atPromote+5, "pods were created after the promotion")
	for _, name := range created {
		var p corev1.Pod
		require.NoError(t, e.c.Get(t.Context(), client.ObjectKey{Namespace: churn, Name: name}, &p))
		assert.Equal(t, canary.Name, lcSidecarRevision(t, &p), "pod %s", name)
	}
	t.Logf("%d pods created, %d before the promotion; every one carries the %s sidecar", len(created), atPromote, canary.Name)

	t.Run("unpublishing with meshrev.io/force while a pod runs the old revision is allowed with a warning", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = slices.DeleteFunc(m.Spec.Revisions, func(r v1alpha1.Revision) bool { return r.Name == stable.Name })
		})
		require.Error(t, err, "without force the pod of %s/old refuses it", legacy)
		assert.Contains(t, err.Error(), "cannot unpublish 1-22-6: 1 pod ("+legacy+"/old-")

		warnings, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = slices.DeleteFunc(m.Spec.Revisions, func(r v1alpha1.Revision) bool { return r.Name == stable.Name })
			m.Annotations = map[string]string{revisions.AnnotationForce: "true"}
		})
		require.NoError(t, err)
		require.Len(t, warnings, 1)
		assert.Contains(t, warnings[0], "still run the sidecar of 1-22-6 and lose their control plane (forced)")
		m := e.waitMesh("unpublished", func(m *v1alpha1.Mesh) bool { return len(m.Status.Revisions) == 1 })
		// The pod left on the unpublished revision is reported for an upgrade.
		require.Len(t, m.Status.DataPlane.OutdatedWorkloads, 1)
		assert.Equal(t, "old", m.Status.DataPlane.OutdatedWorkloads[0].Name)
		assert.Equal(t, canary.Name, m.Status.DataPlane.OutdatedWorkloads[0].Want)
	})
}

func lcReady(m *v1alpha1.Mesh) bool {
	for _, c := range m.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

// TestLifecyclePromoteResumesAfterCrash stops the manager right after the
// first namespace of a promotion is relabelled, starts it again, and checks
// that the promotion completes: every namespace relabelled, no other label
// lost, and the step recorded exactly once.
func TestLifecyclePromoteResumesAfterCrash(t *testing.T) {
	var (
		crashOnce sync.Once
		crashed   = make(chan string, 1)
	)
	errCrash := errors.New("simulated crash after the first relabel")
	e := lcSetup(t, func(ctx context.Context, ns string) error {
		var err error
		crashOnce.Do(func() {
			crashed <- ns
			// The process dies here: nothing more happens until the
			// test stops the manager (which cancels ctx).
			<-ctx.Done()
			err = errCrash
		})
		return err
	})
	stable, canary := lcPlainRevision("1.22.6"), lcPlainRevision("1.23.6")
	e.createMesh(stable)
	e.deployCanary(canary)
	var namespaces []string
	for range 3 {
		namespaces = append(namespaces, NewNamespace(t, "team", map[string]string{revisions.LabelRev: revisions.TagCanary, "team": "payments"}))
	}

	_, err := e.update(func(m *v1alpha1.Mesh) { m.Spec.Stable, m.Spec.Canary = canary.Name, "" })
	require.NoError(t, err)
	var first string
	select {
	case first = <-crashed:
	case <-time.After(lcWaitTimeout):
		t.Fatal("the promotion never relabelled a namespace")
	}
	e.mgr.stop(t)

	// Half way: the step is on record, one namespace relabelled, the others not yet.
	m := e.mesh()
	assert.Equal(t, []string{"Install:->1-22-6", "DeployCanary:1-22-6->1-23-6", "Promote:1-22-6->1-23-6"}, lcHistory(m))
	assert.Equal(t, stable.Name, m.Status.Previous)
	var stillCanary []string
	for _, ns := range namespaces {
		if e.namespaceLabel(ns, revisions.LabelRev) == revisions.TagCanary {
			stillCanary = append(stillCanary, ns)
		}
	}
	assert.Len(t, stillCanary, 2, "the crash came after the first relabel (%s)", first)
	assert.NotContains(t, stillCanary, first)

	e.mgr.start(t)
	m = e.waitMesh("promotion finished", func(m *v1alpha1.Mesh) bool { return lcReady(m) })
	for _, ns := range namespaces {
		assert.Equal(t, revisions.TagStable, e.namespaceLabel(ns, revisions.LabelRev), "namespace %s", ns)
		assert.Equal(t, "payments", e.namespaceLabel(ns, "team"), "namespace %s keeps its other labels", ns)
	}
	assert.Equal(t, []string{"Install:->1-22-6", "DeployCanary:1-22-6->1-23-6", "Promote:1-22-6->1-23-6"}, lcHistory(m), "the promotion is recorded once across the restart")
	assert.Equal(t, v1alpha1.PhaseReadyToUnpublish, m.Status.Phase)
}
