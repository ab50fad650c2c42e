//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/meshrev/meshrev/internal/devcluster"
)

const rolloutTimeout = 90 * time.Second

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitDeploymentComplete waits until the deployment has rolled out its current
// template: every replica updated, ready and available, no old pods left.
func waitDeploymentComplete(t *testing.T, cs kubernetes.Interface, ns, name string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	var pods []corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, rolloutTimeout, true, func(ctx context.Context) (bool, error) {
		var err error
		d, err = cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := *d.Spec.Replicas
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.ReadyReplicas != want ||
			s.AvailableReplicas != want || s.Replicas != want {
			return false, nil
		}
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
		if err != nil {
			return false, err
		}
		pods = list.Items
		return len(pods) == int(want), nil
	})
	require.NoError(t, err, "deployment %s/%s did not complete its rollout in %s; status %+v, %d pods", ns, name, rolloutTimeout, statusOf(d), len(pods))
	return d
}

func statusOf(d *appsv1.Deployment) any {
	if d == nil {
		return nil
	}
	return d.Status
}

// replicaSetsOf returns the ReplicaSets owned by the deployment.
func replicaSetsOf(t *testing.T, cs kubernetes.Interface, d *appsv1.Deployment) []appsv1.ReplicaSet {
	t.Helper()
	list, err := cs.AppsV1().ReplicaSets(d.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
	require.NoError(t, err)
	var owned []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == d.UID {
			owned = append(owned, rs)
		}
	}
	return owned
}

func activeReplicaSet(t *testing.T, rss []appsv1.ReplicaSet) appsv1.ReplicaSet {
	t.Helper()
	var active []appsv1.ReplicaSet
	for _, rs := range rss {
		if rs.Spec.Replicas != nil && *rs.Spec.Replicas > 0 {
			active = append(active, rs)
		}
	}
	require.Len(t, active, 1, "exactly one ReplicaSet should have replicas")
	return active[0]
}

func TestDeploymentPodsRunReadyOnKwokNodes(t *testing.T) {
	cs := Client(t)
	ns := NewNamespace(t, "smoke-deploy", nil)

	_, err := cs.AppsV1().Deployments(ns).Create(t.Context(), simpleDeployment("web", 3, nil), metav1.CreateOptions{})
	require.NoError(t, err)
	d := waitDeploymentComplete(t, cs, ns, "web")

	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=web"})
	require.NoError(t, err)
	require.Len(t, pods.Items, 3)
	nodes, err := cs.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: devcluster.NodeLabel + "=" + devcluster.NodeLabelValue})
	require.NoError(t, err)
	var kwokNodes []string
	for _, n := range nodes.Items {
		kwokNodes = append(kwokNodes, n.Name)
	}
	require.NotEmpty(t, kwokNodes, "no kwok nodes in the cluster")
	for _, p := range pods.Items {
		assert.Equal(t, corev1.PodRunning, p.Status.Phase, "pod %s phase", p.Name)
		assert.True(t, podReady(&p), "pod %s should be Ready", p.Name)
		assert.Contains(t, kwokNodes, p.Spec.NodeName, "pod %s should be scheduled on a kwok node", p.Name)
		assert.NotEmpty(t, p.Status.PodIP, "pod %s should have an IP", p.Name)
		// Pods went through admission: the ServiceAccount plugin mounted a token volume.
		assert.Equal(t, "default", p.Spec.ServiceAccountName)
	}
	assert.Equal(t, int32(3), d.Status.AvailableReplicas)
}

func TestRolloutRestartReplacesReplicaSet(t *testing.T) {
	cs := Client(t)
	ns := NewNamespace(t, "smoke-restart", nil)

	_, err := cs.AppsV1().Deployments(ns).Create(t.Context(), simpleDeployment("api", 3, nil), metav1.CreateOptions{})
	require.NoError(t, err)
	d := waitDeploymentComplete(t, cs, ns, "api")
	oldRS := activeReplicaSet(t, replicaSetsOf(t, cs, d))
	oldPods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=api"})
	require.NoError(t, err)
	require.Len(t, oldPods.Items, 3)

	// What `kubectl rollout restart` does.
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	_, err = cs.AppsV1().Deployments(ns).Patch(t.Context(), "api", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err)
	d = waitDeploymentComplete(t, cs, ns, "api")

	rss := replicaSetsOf(t, cs, d)
	newRS := activeReplicaSet(t, rss)
	assert.NotEqual(t, oldRS.Name, newRS.Name, "the restart should create a new ReplicaSet")
	assert.NotEqual(t, oldRS.Labels[appsv1.DefaultDeploymentUniqueLabelKey], newRS.Labels[appsv1.DefaultDeploymentUniqueLabelKey])
	assert.Contains(t, newRS.Spec.Template.Annotations, "kubectl.kubernetes.io/restartedAt")
	for _, rs := range rss {
		if rs.Name == oldRS.Name {
			assert.Equal(t, int32(0), *rs.Spec.Replicas, "old ReplicaSet should be scaled to zero")
		}
	}

	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, rolloutTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=api"})
		if err != nil {
			return false, err
		}
		if len(pods.Items) != 3 {
			return false, nil
		}
		for _, p := range pods.Items {
			if ref := metav1.GetControllerOf(&p); ref == nil || ref.Name != newRS.Name || !podReady(&p) {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(t, err, "the new ReplicaSet's pods should replace the old ones and be Ready")
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=api"})
	require.NoError(t, err)
	for _, old := range oldPods.Items {
		assert.False(t, slices.ContainsFunc(pods.Items, func(p corev1.Pod) bool { return p.Name == old.Name }), "old pod %s should be gone", old.Name)
	}
}

// labelWebhook is an admission webhook that adds a label to every pod it sees.
type labelWebhook struct {
	mu    sync.Mutex
	calls []admissionv1.AdmissionRequest
}

const mutatedLabel = "e2e.meshrev.io/mutated"

func (h *labelWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("bad AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.calls = append(h.calls, *review.Request)
	h.mu.Unlock()

	var pod corev1.Pod
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
		http.Error(w, fmt.Sprintf("bad pod: %v", err), http.StatusBadRequest)
		return
	}
	var patch []map[string]any
	if pod.Labels == nil {
		patch = []map[string]any{{"op": "add", "path": "/metadata/labels", "value": map[string]string{mutatedLabel: "true"}}}
	} else {
		patch = []map[string]any{{"op": "add", "path": "/metadata/labels/e2e.meshrev.io~1mutated", "value": "true"}}
	}
	patchJSON, _ := json.Marshal(patch)
	pt := admissionv1.PatchTypeJSONPatch
	review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, Patch: patchJSON, PatchType: &pt}
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}

func (h *labelWebhook) callsFor(name string) []admissionv1.AdmissionRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []admissionv1.AdmissionRequest
	for _, c := range h.calls {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func TestMutatingWebhookByURLPatchesPods(t *testing.T) {
	cs := Client(t)
	hook := &labelWebhook{}
	srv, err := devcluster.StartWebhookServer(hook)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })

	ns := NewNamespace(t, "smoke-webhook", nil)
	_, err = cs.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"e2e.meshrev.io/webhook":"`+ns+`"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)

	url := srv.URL + "/mutate"
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(5)
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-label-" + ns},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "label.e2e.meshrev.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: srv.CABundle},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.meshrev.io/webhook": ns}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          &timeout,
		}},
	}
	_, err = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(t.Context(), mwc, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
	})

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hooked", Labels: map[string]string{"app": "hooked"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	// The apiserver picks new webhook configurations up asynchronously: wait
	// until a dry-run create comes back mutated.
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := cs.CoreV1().Pods(ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Logf("dry-run create: %v", err)
			return false, nil
		}
		return got.Labels[mutatedLabel] == "true", nil
	})
	require.NoError(t, err, "the webhook at %s was not called within 30s", url)

	created, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, "true", created.Labels[mutatedLabel], "the create response should carry the patch")
	stored, err := cs.CoreV1().Pods(ns).Get(t.Context(), "hooked", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "true", stored.Labels[mutatedLabel], "the stored pod should carry the webhook's label")
	assert.Equal(t, "hooked", stored.Labels["app"], "the pod's own labels stay")

	calls := hook.callsFor("hooked")
	require.NotEmpty(t, calls)
	last := calls[len(calls)-1]
	assert.Equal(t, admissionv1.Create, last.Operation)
	assert.Equal(t, "Pod", last.Kind.Kind)
	assert.Equal(t, ns, last.Namespace)
	require.NotNil(t, last.DryRun)
	assert.False(t, *last.DryRun, "the last call is the real create")

	// The mutated pod is an ordinary pod: kwok runs it.
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "hooked", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return podReady(p), nil
	})
	require.NoError(t, err, "the mutated pod should become Running and Ready")

	// Pods outside the selected namespace are not sent to the webhook.
	other := NewNamespace(t, "smoke-nohook", nil)
	plain, err := cs.CoreV1().Pods(other).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "plain", Labels: map[string]string{"app": "plain"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.NotContains(t, plain.Labels, mutatedLabel)
	assert.Empty(t, hook.callsFor("plain"))
}
