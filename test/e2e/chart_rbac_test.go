//go:build e2e

package e2e

// The chart's RBAC: enough for everything the controller does, and no wider.

import (
	"context"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// rbacEnough walks the controller through what it does with the chart's
// RBAC: leader election, the control plane, a canary through the Mesh
// validator, the data-plane report, a promotion and Events, refused nothing.
func (ci *chartInstall) rbacEnough(t *testing.T) {
	ci.leaderAndControlPlane(t)
	ci.canaryReported(t)
	ci.promoted(t)

	var events corev1.EventList
	require.NoError(t, ci.c.List(t.Context(), &events, client.InNamespace(metav1.NamespaceDefault)))
	assert.True(t, slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
		return e.InvolvedObject.Kind == "Mesh"
	}), "the controller records Events on the Mesh")

	// An RBAC refusal reads: ... is forbidden: User "system:serviceaccount:meshrev-system:meshrev-manager" cannot ...
	assert.False(t, ci.h.logContains(regexp.MustCompile(`is forbidden: User "system:serviceaccount:`)), "the manager was refused something; log %s:\n%s", ci.h.LogPath, tailFile(ci.h.LogPath, 40))
}

// leaderAndControlPlane: leader election (Lease), the control plane
// (Deployment + Service in the mesh namespace, server-side apply) and the
// Mesh status.
func (ci *chartInstall) leaderAndControlPlane(t *testing.T) {
	var lease coordinationv1.Lease
	require.NoError(t, ci.c.Get(t.Context(), client.ObjectKey{Namespace: meshrevNamespace, Name: leaseName}, &lease))
	require.NotNil(t, lease.Spec.HolderIdentity)
	assert.NotEmpty(t, *lease.Spec.HolderIdentity)
	waitMeshStatus(t, ci.c, "control plane ready and both pods counted", func(m *v1alpha1.Mesh) bool {
		return m.Status.ObservedGeneration == m.Generation && len(m.Status.Revisions) == 1 &&
			m.Status.Revisions[0].ControlPlaneReady && m.Status.DataPlane.Pods >= 2
	})
	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}} {
		require.NoError(t, ci.c.Get(t.Context(), client.ObjectKey{Namespace: controlPlaneNamespace, Name: "istiod-1-22-6"}, obj), "%T istiod-1-22-6", obj)
	}
}

// canaryReported deploys a canary through the Mesh validator (facts gathered
// with the chart's RBAC), then moves the namespace to it: the report names
// the Deployment, which takes reading ReplicaSets.
func (ci *chartInstall) canaryReported(t *testing.T) {
	_, _, err := updateMesh(t, func(m *v1alpha1.Mesh) {
		m.Spec.Revisions = append(m.Spec.Revisions, v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6",
			ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.23.6"}})
		m.Spec.Canary = "1-23-6"
	})
	require.NoError(t, err, "deploy canary")
	_, _, err = updateMesh(t, func(m *v1alpha1.Mesh) {
		m.Spec.Revisions = append(m.Spec.Revisions, v1alpha1.Revision{Name: "1-25-0", Version: "1.25.0"})
	})
	require.Error(t, err, "the validator refuses an unsafe step")
	assert.Contains(t, err.Error(), `admission webhook "mesh.meshrev.io" denied the request`, "refused by the validator itself, not by failurePolicy")
	labelNamespace(t, ci.app, map[string]*string{revisions.LabelInjection: nil, revisions.LabelRev: ptrTo(revisions.TagCanary)})
	m := waitMeshStatus(t, ci.c, "the web Deployment reported outdated", func(m *v1alpha1.Mesh) bool {
		return slices.ContainsFunc(m.Status.DataPlane.OutdatedWorkloads, func(w v1alpha1.WorkloadStatus) bool {
			return w.Kind == "Deployment" && w.Namespace == ci.app && w.Name == "web" && w.Want == "1-23-6"
		})
	})
	assert.Equal(t, v1alpha1.PhaseCanaryDeployed, m.Status.Phase)
	require.NoError(t, ci.c.Get(t.Context(), client.ObjectKey{Namespace: controlPlaneNamespace, Name: "istiod-1-23-6"}, &appsv1.Deployment{}))
}

// promoted promotes once the canary's control plane is Ready: the controller
// relabels istio.io/rev=canary to stable (patching namespaces).
func (ci *chartInstall) promoted(t *testing.T) {
	waitMeshStatus(t, ci.c, "canary control plane ready", func(m *v1alpha1.Mesh) bool {
		return slices.ContainsFunc(m.Status.Revisions, func(r v1alpha1.RevisionStatus) bool { return r.Name == "1-23-6" && r.ControlPlaneReady })
	})
	_, _, err := updateMesh(t, func(m *v1alpha1.Mesh) { m.Spec.Stable, m.Spec.Canary = "1-23-6", "" })
	require.NoError(t, err, "promote")
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		var ns corev1.Namespace
		if err := ci.c.Get(ctx, client.ObjectKey{Name: ci.app}, &ns); err != nil {
			return false, err
		}
		return ns.Labels[revisions.LabelRev] == revisions.TagStable, nil
	})
	require.NoError(t, err, "the controller relabels %s istio.io/rev=canary to stable", ci.app)
	waitMeshStatus(t, ci.c, "promotion recorded", func(m *v1alpha1.Mesh) bool {
		return m.Status.Previous == "1-22-6" && m.Status.Phase == v1alpha1.PhaseDataPlaneUpgrading
	})
}

func (ci *chartInstall) rbacNotWider(t *testing.T) {
	sa, err := kubernetes.NewForConfig(ci.saConfig)
	require.NoError(t, err)
	for what, call := range allowedToManager(t.Context(), sa, ci.app) {
		assert.NoError(t, call(), what)
	}
	for what, call := range deniedToManager(t.Context(), sa, ci.app) {
		err := call()
		assert.True(t, apierrors.IsForbidden(err), "%s should be forbidden, got %v", what, err)
	}
}

// allowedToManager are calls the chart's ServiceAccount may make (dry runs
// where they would change something), by what they do.
func allowedToManager(ctx context.Context, sa *kubernetes.Clientset, app string) map[string]func() error {
	dry := []string{metav1.DryRunAll}
	return map[string]func() error{
		"get its certificate Secret": func() error {
			_, err := sa.CoreV1().Secrets(meshrevNamespace).Get(ctx, "meshrev-webhook-tls", metav1.GetOptions{})
			return err
		},
		"list nodes (their kubelet versions decide sidecarMode Auto)": func() error {
			_, err := sa.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
			return err
		},
		"patch a namespace's labels": func() error {
			_, err := sa.CoreV1().Namespaces().Patch(ctx, app, types.MergePatchType, []byte(`{"metadata":{"labels":{"e2e":"x"}}}`), metav1.PatchOptions{DryRun: dry})
			return err
		},
	}
}

// deniedToManager are calls the chart's ServiceAccount must be refused, by
// what they would do.
func deniedToManager(ctx context.Context, sa *kubernetes.Clientset, app string) map[string]func() error {
	dry := []string{metav1.DryRunAll}
	return map[string]func() error{
		"list Secrets cluster-wide": func() error {
			_, err := sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		},
		"list Secrets in its own namespace": func() error {
			_, err := sa.CoreV1().Secrets(meshrevNamespace).List(ctx, metav1.ListOptions{})
			return err
		},
		"read another Secret in its own namespace": func() error {
			_, err := sa.CoreV1().Secrets(meshrevNamespace).Get(ctx, "sh.helm.release.v1.meshrev.v1", metav1.GetOptions{})
			return err
		},
		"delete a namespace": func() error {
			return sa.CoreV1().Namespaces().Delete(ctx, app, metav1.DeleteOptions{DryRun: dry})
		},
		"label a node": func() error {
			_, err := sa.CoreV1().Nodes().Patch(ctx, "kwok-node-0", types.MergePatchType, []byte(`{"metadata":{"labels":{"e2e":"x"}}}`), metav1.PatchOptions{DryRun: dry})
			return err
		},
		"delete a node": func() error {
			return sa.CoreV1().Nodes().Delete(ctx, "kwok-node-0", metav1.DeleteOptions{DryRun: dry})
		},
		"create a pod": func() error {
			_, err := sa.CoreV1().Pods(app).Create(ctx, testPod("forbidden", nil), metav1.CreateOptions{DryRun: dry})
			return err
		},
		"restart a workload (the CLI does that, not the manager)": func() error {
			_, err := sa.AppsV1().Deployments(app).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"paused":false}}`), metav1.PatchOptions{DryRun: dry})
			return err
		},
		"create a Deployment outside the mesh namespace": func() error {
			_, err := sa.AppsV1().Deployments(app).Create(ctx, simpleDeployment("forbidden", 1, nil), metav1.CreateOptions{DryRun: dry})
			return err
		},
		"read a webhook configuration that is not meshrev's": func() error {
			_, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "someone-else", metav1.GetOptions{})
			return err
		},
		"grant itself more (create a ClusterRoleBinding)": func() error {
			_, err := sa.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "meshrev-escalate"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: chartServiceAccount, Namespace: meshrevNamespace}},
			}, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"create a ClusterRole (the RBAC of helm control planes is off by default)": func() error {
			_, err := sa.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "meshrev-forbidden"}}, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"write a Helm release record in the mesh namespace (helm control planes are off by default)": func() error {
			_, err := sa.CoreV1().Secrets(controlPlaneNamespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sh.helm.release.v1.istiod-1-22-6.v1"}}, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"edit the Mesh spec (people do that, through the validator)": func() error {
			_, err := sa.RESTClient().Patch(types.MergePatchType).AbsPath("/apis/meshrev.io/v1alpha1/meshes/default").
				Param("dryRun", metav1.DryRunAll).Body([]byte(`{"spec":{"canary":null}}`)).DoRaw(ctx)
			return err
		},
	}
}
