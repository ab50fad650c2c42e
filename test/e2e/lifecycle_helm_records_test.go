//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// TestLifecycleHelmReleaseRecords: the release status a restarted manager
// reports comes from Helm's release storage (nothing reinstalled), and the
// Mesh's controlPlaneDeletionPolicy decides what deleting the Mesh does to
// the istiod releases and their records: Uninstall removes both (the
// garbage collector, through the Mesh as owner), Orphan leaves both.
func TestLifecycleHelmReleaseRecords(t *testing.T) {
	repo := serveIstioCharts(t, "1.22.6")
	var e *lcEnv
	t.Cleanup(func() {
		if e != nil {
			cleanupHelmReleases(t, e)
		}
	})
	e = lcSetup(t, nil)
	ctx := t.Context()
	stable := helmRevision("1.22.6", repo)
	release := "istiod-" + stable.Name
	record := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "sh.helm.release.v1." + release + ".v1"}}
	deployed := &v1alpha1.ControlPlaneStatus{Source: "Helm", Release: release, ReleaseStatus: "deployed", ChartVersion: "1.22.6"}

	e.createMesh(stable)
	e.assertRelease(stable, "1.22.6")

	t.Run("a restarted manager reports the release from Helm's storage and installs nothing again", func(t *testing.T) {
		m := e.waitMesh("release deployed", func(m *v1alpha1.Mesh) bool {
			r := lcRevisionStatus(m, stable.Name)
			return r != nil && r.ControlPlane != nil && r.ControlPlane.ReleaseStatus == "deployed"
		})
		assert.Equal(t, deployed, lcRevisionStatus(m, stable.Name).ControlPlane)
		e.mgr.restart(t)
		// A spec change the control planes do not depend on: the restarted
		// controller reconciles and writes the status again.
		_, err := e.update(func(m *v1alpha1.Mesh) { m.Spec.UnknownRevisionPolicy = v1alpha1.UnknownRevisionDeny })
		require.NoError(t, err)
		m = e.waitMesh("the restarted controller observed the change", func(m *v1alpha1.Mesh) bool {
			return m.Status.ObservedGeneration == m.Generation
		})
		assert.Equal(t, deployed, lcRevisionStatus(m, stable.Name).ControlPlane, "the release status survives the restart")
		assert.Equal(t, []string{record.Name}, e.releaseRecords(release), "one record: the restart installed or upgraded nothing")
	})

	t.Run("deletion policy Uninstall: deleting the Mesh removes the release's objects and records", func(t *testing.T) {
		require.NoError(t, e.c.Get(ctx, client.ObjectKeyFromObject(record), record))
		require.Len(t, record.OwnerReferences, 1, "the release record is owned by the Mesh")
		assert.Equal(t, "Mesh", record.OwnerReferences[0].Kind)
		require.NoError(t, forceDeleteMesh(ctx, e.c))
		e.waitGone(&v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}})
		e.waitGone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: release}})
		e.waitGone(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "istiod-clusterrole-" + stable.Name + "-" + lcMeshNamespace}})
		e.waitGone(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: record.Name}})
		for _, cm := range []string{"istio-" + stable.Name, "istio-sidecar-injector-" + stable.Name} {
			e.waitGone(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: cm}})
		}
		e.waitGone(&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: release}})
		assert.Empty(t, e.releaseRecords(release), "no record of the release is left")
		assert.NotEmpty(t, e.releaseRecords("istio-base"), "the base release (Istio's CRDs) always stays")
	})

	t.Run("deletion policy Orphan: deleting the Mesh leaves the release and its records", func(t *testing.T) {
		m := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName},
			Spec: v1alpha1.MeshSpec{Revisions: []v1alpha1.Revision{stable}, Stable: stable.Name, ControlPlaneDeletionPolicy: v1alpha1.ControlPlaneOrphan}}
		require.NoError(t, e.c.Create(ctx, m))
		helm := newHelm(t)
		t.Cleanup(func() {
			// The orphaned release is the test's to remove.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, helm.bin, "uninstall", release, "-n", lcMeshNamespace, "--wait")
			cmd.Env = helm.env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("cleanup: helm uninstall %s: %v\n%s", release, err, out)
			}
		})
		e.waitDeploymentAvailable(lcMeshNamespace, release)
		e.waitMesh("release deployed", func(m *v1alpha1.Mesh) bool {
			r := lcRevisionStatus(m, stable.Name)
			return r != nil && r.ControlPlane != nil && r.ControlPlane.ReleaseStatus == "deployed"
		})
		require.NoError(t, forceDeleteMesh(ctx, e.c))
		e.waitGone(&v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}})
		for _, obj := range []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: release}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: release}},
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "istiod-clusterrole-" + stable.Name + "-" + lcMeshNamespace}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: record.Name}},
		} {
			err := e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			require.NoError(t, err, "%T %s outlives the Mesh", obj, obj.GetName())
			assert.Empty(t, obj.GetOwnerReferences(), "%T %s has no owner the garbage collector follows", obj, obj.GetName())
		}
		assert.Equal(t, []string{record.Name}, e.releaseRecords(release))
	})
}

// releaseRecords lists the names of the Secrets that record release in
// Helm's storage in the mesh namespace.
func (e *lcEnv) releaseRecords(release string) []string {
	e.t.Helper()
	var list corev1.SecretList
	err := e.c.List(e.t.Context(), &list, client.InNamespace(lcMeshNamespace), client.MatchingLabels{"owner": "helm", "name": release})
	if apierrors.IsNotFound(err) {
		return nil
	}
	require.NoError(e.t, err)
	var names []string
	for _, s := range list.Items {
		names = append(names, s.Name)
	}
	return names
}
