//go:build e2e

package e2e

// The chart's RBAC of helm control planes (controlPlanes.helm.enabled): the
// manager, running with the chart's ServiceAccount token, installs a revision
// from Istio's real charts, and is still refused what Istio's charts do not need.

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/manager"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// TestChartHelmControlPlanesRBAC installs the chart with the initial
// revision's control plane from Istio's charts (served on 127.0.0.1), runs
// the manager with the chart's ServiceAccount token, and checks that Helm
// installed Istio's base and istiod charts with it, refused nothing; then
// that calls wider than Istio's charts need are refused.
func TestChartHelmControlPlanesRBAC(t *testing.T) {
	managerMu.Lock()
	t.Cleanup(managerMu.Unlock)

	ci := &chartInstall{helm: newHelm(t), c: ctrlClient(t)}
	ci.requireNothingLeftOver(t)
	repo := serveIstioCharts(t, "1.22.6")
	// Registered first, so it runs last: Istio's CRDs, default validating
	// webhook and release records outlive the Mesh by design.
	t.Cleanup(func() { cleanupHelmReleases(t, &lcEnv{t: t, c: ci.c}) })

	ci.port = freeLocalPorts(t, 1)[0]
	ci.url = "https://127.0.0.1:" + strconv.Itoa(ci.port)
	t.Cleanup(func() {
		chartCleanup(t, ci.c, meshrevNamespace, ci.installed,
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}},
			&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: leaseName}})
	})
	ci.helm.run(t, "install", chartRelease, ci.helm.chart, "-n", meshrevNamespace, "--create-namespace", "--wait", "--timeout", "2m",
		"--set", "manager.enabled=false", "--set", "webhook.url="+ci.url,
		"--set", "mesh.controlPlane.helm.repository="+repo)
	ci.installed = true
	ci.saConfig = serviceAccountConfig(t, Client(t), meshrevNamespace, chartServiceAccount)
	ci.h = startManager(t, asReplica(), withManageCerts(0), withLeaderElection(), withManagerOptions(func(o *manager.Options) {
		o.RestConfig = ci.saConfig
		o.WebhookPort = ci.port
		o.TemplatesConfigMap = "meshrev-templates"
		o.ChartCacheDir = t.TempDir()
	}))

	t.Run("the manager installs Istio's base and istiod charts with the chart's RBAC, refused nothing", func(t *testing.T) {
		m := waitMeshStatus(t, ci.c, "release istiod-1-22-6 deployed and ready", func(m *v1alpha1.Mesh) bool {
			return len(m.Status.Revisions) == 1 && m.Status.Revisions[0].ControlPlaneReady &&
				m.Status.Revisions[0].ControlPlane != nil && m.Status.Revisions[0].ControlPlane.ReleaseStatus == "deployed"
		})
		assert.Equal(t, &v1alpha1.ControlPlaneStatus{Source: "Helm", Release: "istiod-1-22-6", ReleaseStatus: "deployed", ChartVersion: "1.22.6"}, m.Status.Revisions[0].ControlPlane)
		for _, obj := range []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNamespace, Name: "istiod-1-22-6"}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNamespace, Name: "istiod-1-22-6"}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNamespace, Name: "istiod-1-22-6"}},
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "istiod-clusterrole-1-22-6-" + controlPlaneNamespace}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "istiod-gateway-controller-1-22-6-" + controlPlaneNamespace}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "istio-reader-clusterrole-1-22-6-" + controlPlaneNamespace}},
			&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istiod-default-validator"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNamespace, Name: "sh.helm.release.v1.istio-base.v1"}},
		} {
			assert.NoError(t, ci.c.Get(t.Context(), client.ObjectKeyFromObject(obj), obj), "%T %s", obj, obj.GetName())
		}
		// An RBAC refusal reads: ... is forbidden: User "system:serviceaccount:meshrev-system:meshrev-manager" cannot ...
		// and an escalation refusal: ... is attempting to grant RBAC permissions not currently held.
		assert.False(t, ci.h.logContains(regexp.MustCompile(`is forbidden: User "system:serviceaccount:|attempting to grant RBAC permissions`)),
			"the manager was refused something; log %s:\n%s", ci.h.LogPath, tailFile(ci.h.LogPath, 40))
	})

	t.Run("calls wider than Istio's charts need are refused", func(t *testing.T) {
		sa, err := kubernetes.NewForConfig(ci.saConfig)
		require.NoError(t, err)
		app := NewNamespace(t, "helm-rbac-app", nil)
		for what, call := range deniedToHelmManager(t.Context(), sa, app) {
			err := call()
			assert.True(t, apierrors.IsForbidden(err), "%s should be forbidden, got %v", what, err)
		}
	})
}

// deniedToHelmManager are calls the chart's ServiceAccount must be refused
// with the RBAC of helm control planes, by what they would do.
func deniedToHelmManager(ctx context.Context, sa *kubernetes.Clientset, app string) map[string]func() error {
	dry := []string{metav1.DryRunAll}
	return map[string]func() error{
		"grant itself cluster-admin (bind a ClusterRole it does not hold)": func() error {
			_, err := sa.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "meshrev-escalate"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: chartServiceAccount, Namespace: meshrevNamespace}},
			}, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"create a ClusterRole granting what Istio's roles do not (pods/exec)": func() error {
			_, err := sa.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: "meshrev-exec"},
				Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create"}}},
			}, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"create a MutatingWebhookConfiguration (only meshrev injects; Istio's is dropped)": func() error {
			_, err := sa.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector"},
			}, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"patch a CRD that is not Istio's": func() error {
			_, err := sa.RESTClient().Patch(types.MergePatchType).AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/meshes.meshrev.io").
				Param("dryRun", metav1.DryRunAll).Body([]byte(`{"metadata":{"labels":{"e2e":"x"}}}`)).DoRaw(ctx)
			return err
		},
		"delete a Secret outside the mesh namespace": func() error {
			return sa.CoreV1().Secrets(meshrevNamespace).Delete(ctx, "meshrev-webhook-tls", metav1.DeleteOptions{DryRun: dry})
		},
		"create a pod": func() error {
			_, err := sa.CoreV1().Pods(app).Create(ctx, testPod("forbidden", nil), metav1.CreateOptions{DryRun: dry})
			return err
		},
		"delete a namespace": func() error {
			return sa.CoreV1().Namespaces().Delete(ctx, app, metav1.DeleteOptions{DryRun: dry})
		},
		"create a Role outside the mesh namespace": func() error {
			_, err := sa.RbacV1().Roles(app).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "forbidden"}}, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"edit the Mesh spec (people do that, through the validator)": func() error {
			_, err := sa.RESTClient().Patch(types.MergePatchType).AbsPath("/apis/meshrev.io/v1alpha1/meshes/default").
				Param("dryRun", metav1.DryRunAll).Body([]byte(`{"spec":{"canary":null}}`)).DoRaw(ctx)
			return err
		},
	}
}
