//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/manager"
	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// The lifecycle tests run meshrev's real manager (injector, validators,
// controller) in this process against the local cluster through the e2e
// harness (startManager: the chart's webhook configurations, called by URL),
// and drive every step through the API server as a person (or the CLI)
// would.

const (
	lcMeshNamespace = "istio-system"
	lcWaitTimeout   = 90 * time.Second
	lcPoll          = 200 * time.Millisecond
)

// lcEnv is one lifecycle test's view of the cluster and its manager.
type lcEnv struct {
	t        *testing.T
	c        client.Client
	warnings *warningRecorder
	mgr      *managerHandle
}

// lcSetup starts meshrev's manager with the e2e harness (the chart's webhook
// configurations pointing at it) and deletes the Mesh when the test ends,
// before the manager stops. afterRelabel, when set, is the controller's
// AfterRelabel hook.
func lcSetup(t *testing.T, afterRelabel func(ctx context.Context, ns string) error) *lcEnv {
	t.Helper()
	e := &lcEnv{t: t, warnings: &warningRecorder{}}
	cfg := rest.CopyConfig(Env().Config)
	cfg.WarningHandlerWithContext = e.warnings
	scheme, err := readmodel.Scheme()
	require.NoError(t, err)
	e.c, err = client.New(cfg, client.Options{Scheme: scheme})
	require.NoError(t, err)

	// Pods of an earlier test's namespaces still count until the namespace
	// controller has deleted them: start from a cluster without them.
	err = wait.PollUntilContextTimeout(t.Context(), lcPoll, 2*lcWaitTimeout, true, func(ctx context.Context) (bool, error) {
		var list corev1.NamespaceList
		if err := e.c.List(ctx, &list); err != nil {
			return false, nil
		}
		for _, ns := range list.Items {
			if ns.Status.Phase == corev1.NamespaceTerminating {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(t, err, "namespaces of earlier tests are still terminating")

	e.mgr = startManager(t, withManagerOptions(func(o *manager.Options) { o.AfterRelabel = afterRelabel }))
	// A Mesh left by another test would make every step here start from
	// someone else's state: remove it first.
	leftover := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}}
	if err := e.c.Get(t.Context(), client.ObjectKeyFromObject(leftover), &v1alpha1.Mesh{}); err == nil {
		require.NoError(t, forceDeleteMesh(t.Context(), e.c))
		t.Logf("deleted a Mesh left by an earlier test")
		e.waitGone(leftover)
	} else {
		require.True(t, apierrors.IsNotFound(err), "delete a left-over mesh: %v", err)
	}
	require.Equal(t, lcMeshNamespace, e.mgr.Options.MeshNamespace)
	t.Cleanup(func() {
		// Registered after startManager, so it runs before the manager
		// stops: no Mesh is left behind (its control planes go with it).
		ctx, cancel := context.WithTimeout(context.Background(), lcWaitTimeout)
		defer cancel()
		m := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}}
		if err := forceDeleteMesh(ctx, e.c); err != nil {
			t.Errorf("delete mesh: %v", err)
		}
		_ = wait.PollUntilContextTimeout(ctx, lcPoll, lcWaitTimeout, true, func(ctx context.Context) (bool, error) {
			return apierrors.IsNotFound(e.c.Get(ctx, client.ObjectKeyFromObject(m), m)), nil
		})
	})
	return e
}

// mesh returns the current Mesh.
func (e *lcEnv) mesh() *v1alpha1.Mesh {
	e.t.Helper()
	m := &v1alpha1.Mesh{}
	require.NoError(e.t, e.c.Get(e.t.Context(), client.ObjectKey{Name: v1alpha1.MeshName}, m))
	return m
}

// update applies change to the latest Mesh (retrying on conflicts with the
// controller's status writes) and returns the API server's answer and the
// admission warnings it sent.
func (e *lcEnv) update(change func(m *v1alpha1.Mesh)) ([]string, error) {
	e.t.Helper()
	e.warnings.take()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		m := &v1alpha1.Mesh{}
		if err := e.c.Get(e.t.Context(), client.ObjectKey{Name: v1alpha1.MeshName}, m); err != nil {
			return err
		}
		change(m)
		return e.c.Update(e.t.Context(), m)
	})
	return e.warnings.take(), err
}

// waitMesh polls the Mesh until cond holds and returns it.
func (e *lcEnv) waitMesh(what string, cond func(m *v1alpha1.Mesh) bool) *v1alpha1.Mesh {
	e.t.Helper()
	var last *v1alpha1.Mesh
	err := wait.PollUntilContextTimeout(e.t.Context(), lcPoll, lcWaitTimeout, true, func(ctx context.Context) (bool, error) {
		m := &v1alpha1.Mesh{}
		if err := e.c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, m); err != nil {
			return false, nil
		}
		last = m
		return cond(m), nil
	})
	if err != nil {
		e.t.Fatalf("waiting for the mesh: %s: %v\nlast status: %+v", what, err, lcStatusSummary(last))
	}
	return last
}

func lcStatusSummary(m *v1alpha1.Mesh) string {
	if m == nil {
		return "<none>"
	}
	return fmt.Sprintf("spec=%+v status=%+v", m.Spec, m.Status)
}

// lcBookinfo is the Bookinfo-like set of Deployments.
var lcBookinfo = []string{"details", "ratings", "reviews-v1", "reviews-v2", "reviews-v3", "productpage"}

// deploy creates a one-replica Deployment (pause image; kwok runs it) and
// waits until its pod is ready.
func (e *lcEnv) deploy(ns, name string) {
	e.t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
	require.NoError(e.t, e.c.Create(e.t.Context(), d), "create deployment %s/%s", ns, name)
}

// restart does what kubectl rollout restart does: a new pod-template annotation.
func (e *lcEnv) restart(ns, name string) {
	e.t.Helper()
	d := &appsv1.Deployment{}
	require.NoError(e.t, e.c.Get(e.t.Context(), client.ObjectKey{Namespace: ns, Name: name}, d))
	patch := client.MergeFrom(d.DeepCopy())
	if d.Spec.Template.Annotations == nil {
		d.Spec.Template.Annotations = map[string]string{}
	}
	d.Spec.Template.Annotations[revisions.AnnotationRestartedAt] = time.Now().Format(time.RFC3339Nano)
	require.NoError(e.t, e.c.Patch(e.t.Context(), d, patch), "restart %s/%s", ns, name)
}

// waitRolledOut waits until the Deployment has rolled out its current
// template and only its new pods are left; it returns those pods.
func (e *lcEnv) waitRolledOut(ns, name string) []corev1.Pod {
	e.t.Helper()
	var pods []corev1.Pod
	var d appsv1.Deployment
	err := wait.PollUntilContextTimeout(e.t.Context(), lcPoll, lcWaitTimeout, true, func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
			return false, nil
		}
		want := *d.Spec.Replicas
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.AvailableReplicas != want || s.Replicas != want {
			return false, nil
		}
		var list corev1.PodList
		if err := e.c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
			return false, nil
		}
		pods = list.Items
		return int32(len(pods)) == want, nil
	})
	if err != nil {
		e.t.Fatalf("deployment %s/%s did not roll out: %v (status %+v)", ns, name, err, d.Status)
	}
	return pods
}

// waitDeploymentAvailable waits for a control-plane Deployment to be Available.
func (e *lcEnv) waitDeploymentAvailable(ns, name string) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.t.Context(), lcPoll, lcWaitTimeout, true, func(ctx context.Context) (bool, error) {
		var d appsv1.Deployment
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
			return false, nil
		}
		return d.Status.AvailableReplicas >= 1, nil
	})
	require.NoError(e.t, err, "deployment %s/%s never became available", ns, name)
}

// waitGone waits until obj no longer exists.
func (e *lcEnv) waitGone(obj client.Object) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.t.Context(), lcPoll, lcWaitTimeout, true, func(ctx context.Context) (bool, error) {
		err := e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(e.t, err, "%T %s/%s was not deleted", obj, obj.GetNamespace(), obj.GetName())
}

// lcSidecarRevision says which revision's sidecar a pod runs: its
// meshrev.io/revision label, checked against the istio-proxy image.
func lcSidecarRevision(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	rev := p.Labels[revisions.LabelRevision]
	if rev == "" {
		return ""
	}
	if c := sidecarOf(p); c != nil {
		v, err := revisions.VersionFromRevisionName(rev)
		require.NoError(t, err)
		require.True(t, strings.HasSuffix(c.Image, ":"+v.String()), "pod %s/%s is labelled %s but its proxy image is %s", p.Namespace, p.Name, rev, c.Image)
		return rev
	}
	t.Fatalf("pod %s/%s is labelled %s but has no istio-proxy container", p.Namespace, p.Name, rev)
	return ""
}

// setNamespaceLabels replaces the injection labels of a namespace (like
// meshrev namespace switch) and returns the admission warnings.
func (e *lcEnv) setNamespaceLabels(ns string, set map[string]string, drop ...string) []string {
	e.t.Helper()
	e.warnings.take()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var n corev1.Namespace
		if err := e.c.Get(e.t.Context(), client.ObjectKey{Name: ns}, &n); err != nil {
			return err
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		for _, k := range drop {
			delete(n.Labels, k)
		}
		for k, v := range set {
			n.Labels[k] = v
		}
		return e.c.Update(e.t.Context(), &n)
	})
	require.NoError(e.t, err, "relabel namespace %s", ns)
	return e.warnings.take()
}

// namespaceLabel returns one label of a namespace.
func (e *lcEnv) namespaceLabel(ns, key string) string {
	e.t.Helper()
	var n corev1.Namespace
	require.NoError(e.t, e.c.Get(e.t.Context(), client.ObjectKey{Name: ns}, &n))
	return n.Labels[key]
}

// events lists the events about an object (core and events.k8s.io share storage).
func (e *lcEnv) events(kind, name string) []corev1.Event {
	e.t.Helper()
	var list corev1.EventList
	require.NoError(e.t, e.c.List(e.t.Context(), &list))
	var out []corev1.Event
	for _, ev := range list.Items {
		if ev.InvolvedObject.Kind == kind && ev.InvolvedObject.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent waits for an event with reason about the object.
func (e *lcEnv) waitEvent(kind, name, reason string) corev1.Event {
	e.t.Helper()
	var found corev1.Event
	err := wait.PollUntilContextTimeout(e.t.Context(), lcPoll, lcWaitTimeout, true, func(context.Context) (bool, error) {
		for _, ev := range e.events(kind, name) {
			if ev.Reason == reason {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(e.t, err, "no %s event about %s %s", reason, kind, name)
	return found
}

// errorsAs is errors.As for tests.
func lcStatusError(t *testing.T, err error) *apierrors.StatusError {
	t.Helper()
	var se *apierrors.StatusError
	require.True(t, errors.As(err, &se), "want an API status error, got %v", err)
	return se
}
