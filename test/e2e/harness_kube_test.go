//go:build e2e

package e2e

// The harness's cluster helpers: clients, namespaces, pods, workloads and
// the Mesh.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// ctrlClient returns a controller-runtime client that knows the Mesh and
// the CRD types, with the admin credentials.
func ctrlClient(t testing.TB) client.Client {
	t.Helper()
	scheme, err := readmodel.Scheme()
	require.NoError(t, err)
	require.NoError(t, apiextensionsv1.AddToScheme(scheme))
	c, err := client.New(Env().Config, client.Options{Scheme: scheme})
	require.NoError(t, err)
	return c
}

// warningRecorder collects the API server's warnings (admission warnings among them).
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

// HandleWarningHeaderWithContext records a warning.
func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

// take returns the warnings recorded so far and forgets them.
func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.warnings
	w.warnings = nil
	return out
}

// clientWithWarnings returns a clientset whose requests record warnings in
// the returned recorder (one recorder per clientset: use one per request
// sequence, not concurrently).
func clientWithWarnings() (*kubernetes.Clientset, *warningRecorder, error) {
	cfg := rest.CopyConfig(Env().Config)
	rec := &warningRecorder{}
	cfg.WarningHandlerWithContext = rec
	cs, err := kubernetes.NewForConfig(cfg)
	return cs, rec, err
}

// ensureNamespace creates a namespace unless it exists (kept: shared by tests).
func ensureNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err, "create namespace %s", name)
	}
}

// deleteIfExists deletes obj (by kind, namespace and name), ignoring NotFound.
//
// A cleanup may delete an object right after the webhook configurations that
// admit it, and the API server sees their deletion a moment later: until it
// does, it may still call the stopped manager (failurePolicy Fail), so such
// a refusal is retried.
func deleteIfExists(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		err = c.Delete(ctx, obj)
		return err == nil || apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "failed calling webhook"), nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		require.NoError(t, err, "delete %T %s", obj, obj.GetName())
	}
}

// testPod is a minimal pod (one pause container) with labels.
func testPod(name string, labels map[string]string) *corev1.Pod {
	all := map[string]string{"app": name}
	for k, v := range labels {
		all[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: all},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
}

// probePod is a minimal pod labelled sidecar.istio.io/inject=true.
func probePod(name string) *corev1.Pod {
	return testPod(name, map[string]string{revisions.LabelSidecarInject: "true"})
}

// waitResolves waits until a dry-run of pod in ns is admitted with revision
// want ("" for no sidecar): the injector's caches have caught up with the
// Mesh and the namespace labels the test just changed. It returns the
// admitted pod and its warnings.
func waitResolves(t *testing.T, ns string, pod *corev1.Pod, want string) (*corev1.Pod, []string) {
	t.Helper()
	var got *corev1.Pod
	var warnings []string
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		got, warnings, err = dryRunPodCtx(ctx, ns, pod)
		switch {
		case err != nil:
			last = err
		case got.Labels[revisions.LabelRevision] != want:
			last = fmt.Errorf("admitted with revision %q (warnings %q)", got.Labels[revisions.LabelRevision], warnings)
		default:
			return true, nil
		}
		return false, nil
	})
	require.NoError(t, err, "pod %s in %s never resolved to revision %q: %v", pod.Name, ns, want, last)
	return got, warnings
}

// dryRunPod creates pod in ns with dryRun=All (admission runs, nothing is
// stored) and returns the pod as admitted, the warnings, and the error.
func dryRunPod(t *testing.T, ns string, pod *corev1.Pod) (*corev1.Pod, []string, error) {
	t.Helper()
	return dryRunPodCtx(t.Context(), ns, pod)
}

func dryRunPodCtx(ctx context.Context, ns string, pod *corev1.Pod) (*corev1.Pod, []string, error) {
	cs, rec, err := clientWithWarnings()
	if err != nil {
		return nil, nil, err
	}
	got, err := cs.CoreV1().Pods(ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return got, rec.take(), err
}

// createPod creates pod in ns for real and returns it as stored, the
// warnings, and the error (an admission refusal is an error to inspect).
// The pod is deleted when the test ends.
func createPod(t *testing.T, ns string, pod *corev1.Pod) (*corev1.Pod, []string, error) {
	t.Helper()
	cs, rec, err := clientWithWarnings()
	require.NoError(t, err)
	got, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod.DeepCopy(), metav1.CreateOptions{})
	if err == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = Client(t).CoreV1().Pods(ns).Delete(ctx, got.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		})
	}
	return got, rec.take(), err
}

// podRevisions lists the pods of ns matching selector (a label selector,
// "" for all) that are not terminating, by name, with their
// meshrev.io/revision label ("" for pods without a sidecar).
func podRevisions(t *testing.T, ns, selector string) map[string]string {
	t.Helper()
	list, err := Client(t).CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	require.NoError(t, err)
	out := map[string]string{}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out[p.Name] = p.Labels[revisions.LabelRevision]
		}
	}
	return out
}

// simpleDeployment is a Deployment of pause containers with label app=name.
func simpleDeployment(name string, replicas int32, podLabels map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	tmplLabels := map[string]string{"app": name}
	for k, v := range podLabels {
		tmplLabels[k] = v
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: tmplLabels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
}

// applyDeployment creates d in ns, or replaces the spec of the existing one.
func applyDeployment(t *testing.T, ns string, d *appsv1.Deployment) *appsv1.Deployment {
	t.Helper()
	cs := Client(t)
	d = d.DeepCopy()
	d.Namespace = ns
	var out *appsv1.Deployment
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		have, err := cs.AppsV1().Deployments(ns).Get(t.Context(), d.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out, err = cs.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		have.Labels, have.Spec = d.Labels, d.Spec
		out, err = cs.AppsV1().Deployments(ns).Update(t.Context(), have, metav1.UpdateOptions{})
		return err
	})
	require.NoError(t, err, "apply deployment %s/%s", ns, d.Name)
	return out
}

// waitRollout waits until deployment ns/name has rolled out its current
// template (every replica updated, ready and available, no old pods left)
// and returns its pods.
func waitRollout(t *testing.T, ns, name string) []corev1.Pod {
	t.Helper()
	cs := Client(t)
	var pods []corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want, s := *d.Spec.Replicas, d.Status
		last = fmt.Sprintf("generation %d observed %d, replicas %d updated %d ready %d available %d (want %d)",
			d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, want)
		if s.ObservedGeneration < d.Generation || s.Replicas != want || s.UpdatedReplicas != want || s.ReadyReplicas != want || s.AvailableReplicas != want {
			return false, nil
		}
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
		if err != nil {
			return false, err
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil {
				pods = append(pods, p)
			}
		}
		last += fmt.Sprintf(", %d live pods", len(pods))
		return int32(len(pods)) == want, nil
	})
	require.NoError(t, err, "rollout of deployment %s/%s: %s", ns, name, last)
	return pods
}

// rolloutRestart restarts deployment ns/name as `kubectl rollout restart`
// does: it sets the pod-template annotation kubectl.kubernetes.io/restartedAt.
func rolloutRestart(t *testing.T, ns, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, revisions.AnnotationRestartedAt, time.Now().Format(time.RFC3339Nano))
	_, err := Client(t).AppsV1().Deployments(ns).Patch(t.Context(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err, "rollout restart %s/%s", ns, name)
}

// labelNamespace sets (value) or removes (nil) labels of namespace ns.
func labelNamespace(t *testing.T, ns string, labels map[string]*string) []string {
	t.Helper()
	body := map[string]any{"metadata": map[string]any{"labels": labels}}
	data, err := json.Marshal(body)
	require.NoError(t, err)
	cs, rec, err := clientWithWarnings()
	require.NoError(t, err)
	_, err = cs.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, data, metav1.PatchOptions{})
	require.NoError(t, err, "label namespace %s", ns)
	return rec.take()
}

// createMesh creates the Mesh "default" with spec (through the validating
// webhook when a manager runs) and deletes it when the test ends, waiting
// until it is gone so that the next test starts without one.
// forceDeleteMesh deletes the Mesh the way a person overrides the delete
// check (meshrev.io/force=true set first): a test's cleanup deletes it while
// the test's namespaces and pods are still going away. NotFound is success.
func forceDeleteMesh(ctx context.Context, c client.Client) error {
	m := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}}
	patch := []byte(`{"metadata":{"annotations":{"` + revisions.AnnotationForce + `":"true"}}}`)
	if err := c.Patch(ctx, m, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return client.IgnoreNotFound(err)
	}
	return client.IgnoreNotFound(c.Delete(ctx, m))
}

func createMesh(t *testing.T, spec v1alpha1.MeshSpec) *v1alpha1.Mesh {
	t.Helper()
	c := ctrlClient(t)
	mesh := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}, Spec: spec}
	require.NoError(t, c.Create(t.Context(), mesh), "create Mesh %s", v1alpha1.MeshName)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := forceDeleteMesh(ctx, c); err != nil {
			t.Errorf("delete Mesh: %v", err)
			return
		}
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &v1alpha1.Mesh{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("Mesh %s still exists after delete: %v", v1alpha1.MeshName, err)
		}
	})
	return mesh
}

// updateMesh applies edit to the current Mesh "default" and updates it,
// retrying on conflicts. It returns the API error (e.g. the validating
// webhook's refusal) instead of failing, and the warnings.
func updateMesh(t *testing.T, edit func(*v1alpha1.Mesh)) (*v1alpha1.Mesh, []string, error) {
	t.Helper()
	scheme, err := readmodel.Scheme()
	require.NoError(t, err)
	cfg := rest.CopyConfig(Env().Config)
	rec := &warningRecorder{}
	cfg.WarningHandlerWithContext = rec
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	require.NoError(t, err)
	var mesh v1alpha1.Mesh
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(t.Context(), client.ObjectKey{Name: v1alpha1.MeshName}, &mesh); err != nil {
			return err
		}
		edit(&mesh)
		return c.Update(t.Context(), &mesh)
	})
	return &mesh, rec.take(), err
}

// sidecarOf returns the pod's istio-proxy, a native sidecar (init container)
// or a classic one (container), or nil: sidecarMode Auto makes it native on
// the local cluster's 1.36 nodes.
func sidecarOf(p *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == "istio-proxy" {
				return &cs[i]
			}
		}
	}
	return nil
}
