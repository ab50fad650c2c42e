//go:build e2e

package e2e

// helm upgrade and helm uninstall of the chart installed by
// TestChartInstallRunsTheManagerWithItsOwnRBAC.

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func (ci *chartInstall) upgrade(t *testing.T) {
	ctx := t.Context()
	// Stop the manager first, so that nothing could put caBundle back.
	ci.h.stop(t)
	bundles := webhookClientConfigs(t, ci.c)
	var meshBefore v1alpha1.Mesh
	require.NoError(t, ci.c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &meshBefore))
	ci.helm.run(t, "upgrade", chartRelease, ci.helm.chart, "-n", meshrevNamespace, "--reuse-values", "--wait",
		"--set", "webhook.timeoutSeconds=7", "--set", "mesh.stable.version=1.23.6")
	after := webhookClientConfigs(t, ci.c)
	require.Len(t, after, len(bundles))
	for i := range after {
		assert.NotEmpty(t, after[i].CABundle)
		assert.Equal(t, bundles[i].CABundle, after[i].CABundle, "helm upgrade must not reset caBundle")
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, ci.c.Get(ctx, client.ObjectKey{Name: webhookConfigName}, &mwc))
	for _, w := range mwc.Webhooks {
		assert.Equal(t, int32(7), *w.TimeoutSeconds, "the upgrade applied the new value to %s", w.Name)
	}
	var meshAfter v1alpha1.Mesh
	require.NoError(t, ci.c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &meshAfter))
	assert.Equal(t, meshBefore.Spec, meshAfter.Spec, "the lifecycle owns the Mesh: helm upgrade does not touch it")

	ci.h.start(t)
	waitResolves(t, ci.app, testPod("after-upgrade", nil), "1-23-6")
}

func (ci *chartInstall) uninstall(t *testing.T) {
	ctx := t.Context()
	ci.h.stop(t)
	ci.helm.run(t, "uninstall", chartRelease, "-n", meshrevNamespace, "--wait")
	ci.installed = false
	gone := []client.Object{
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "meshrev-manager"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "meshrev-manager"}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "meshrev-manager"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "meshrev-manager"}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNamespace, Name: "meshrev-manager"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: controlPlaneNamespace, Name: "meshrev-manager"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: chartServiceAccount}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "meshrev-templates"}},
	}
	for _, obj := range gone {
		err := ci.c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		assert.True(t, apierrors.IsNotFound(err), "%T %s should be gone, got %v", obj, obj.GetName(), err)
	}
	// Helm keeps CRDs, and the Mesh with them (a hook, see mesh.yaml).
	require.NoError(t, ci.c.Get(ctx, client.ObjectKey{Name: "meshes.meshrev.io"}, &apiextensionsv1.CustomResourceDefinition{}))
	require.NoError(t, ci.c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &v1alpha1.Mesh{}))
	// Nothing of the release is left, in any namespace.
	var secrets corev1.SecretList
	require.NoError(t, ci.c.List(ctx, &secrets, client.InNamespace(meshrevNamespace), client.MatchingLabels{"owner": "helm", "name": chartRelease}))
	assert.Empty(t, secrets.Items, "Helm's release records are gone")
	// The manager's certificate Secret is owned by the webhook
	// configuration the chart removed: the garbage collector takes it.
	require.Eventually(t, func() bool {
		err := ci.c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &corev1.Secret{})
		return apierrors.IsNotFound(err)
	}, time.Minute, 200*time.Millisecond, "the certificate Secret is garbage-collected with its owner")
	// No webhook is left in the pod path: pods are created untouched.
	got, _, err := createPod(t, ci.app, testPod("after-uninstall", nil))
	require.NoError(t, err)
	assert.Empty(t, got.Labels[revisions.LabelRevision])
}
