//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// helmHub is the image hub the helm revisions' own values set: the
// control plane's and the sidecar's images come from it.
const helmHub = "mirror.example/istio"

// helmRevision is a revision whose control plane is Istio's istiod chart
// from repo, with the images pinned through the revision's own values, and
// sidecar settings that differ from Istio's defaults (global.proxy.logLevel,
// global.proxy.resources, the mesh config's defaultConfig.proxyMetadata):
// injection must follow them.
func helmRevision(version, repo string) v1alpha1.Revision {
	name, err := revisions.RevisionName(version)
	if err != nil {
		panic(err)
	}
	values := `{"global":{"hub":"` + helmHub + `","tag":"` + version + `","proxy":{"logLevel":"debug",` +
		`"resources":{"requests":{"cpu":"50m","memory":"64Mi"},"limits":{"cpu":"1","memory":"512Mi"}}}},` +
		`"meshConfig":{"defaultConfig":{"proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"true"}}}}`
	return v1alpha1.Revision{Name: name, Version: version, ControlPlane: &v1alpha1.ControlPlane{
		Helm: &v1alpha1.HelmControlPlane{Repository: repo, Values: &apiextensionsv1.JSON{Raw: []byte(values)}}}}
}

// TestLifecycleHelmControlPlanes walks the seed path and the rollback path
// with control planes installed from Istio's own charts: each revision is
// Helm release istiod-<rev> with its ServiceAccount, RBAC, ConfigMaps,
// Service and Deployment; Istio's CRDs come first; no Istio injector webhook
// exists, so pods get their sidecar from meshrev only; Istio's default
// validating webhook follows the stable revision; revoke and unpublish
// uninstall exactly their release; a chart that is not in the repository
// fails the step with a message naming the repository.
func TestLifecycleHelmControlPlanes(t *testing.T) {
	repo := serveIstioCharts(t, "1.22.6", "1.23.6")
	var e *lcEnv
	// Registered first, so it runs last: after the Mesh is deleted and the
	// manager stopped.
	t.Cleanup(func() {
		if e != nil {
			cleanupHelmReleases(t, e)
		}
	})
	e = lcSetup(t, nil)
	ctx := t.Context()
	stable, canary := helmRevision("1.22.6", repo), helmRevision("1.23.6", repo)
	e.createMesh(stable)
	e.assertRelease(stable, "1.22.6")
	e.assertDefaultValidator(stable.Name)

	t.Run("deploying the canary installs release istiod-1-23-6 after its CRDs, and no Istio injector webhook", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = append(m.Spec.Revisions, canary)
			m.Spec.Canary = canary.Name
		})
		require.NoError(t, err)
		e.waitDeploymentAvailable(lcMeshNamespace, "istiod-"+canary.Name)
		e.assertRelease(canary, "1.23.6")
		crd := readmodel.CRDMeta()
		require.NoError(t, e.c.Get(ctx, client.ObjectKey{Name: readmodel.IstioVersionCRD}, crd))
		assert.Equal(t, "1.23.6", crd.Labels[readmodel.LabelVersion], "the canary's base chart applied the CRDs first")
		e.assertNoIstioInjector()
		m := e.waitMesh("canary deployed and ready", func(m *v1alpha1.Mesh) bool {
			r := lcRevisionStatus(m, canary.Name)
			return m.Status.Phase == v1alpha1.PhaseCanaryDeployed && r != nil && r.ControlPlaneReady && r.ControlPlane != nil && r.ControlPlane.ReleaseStatus == "deployed"
		})
		assert.Equal(t, &v1alpha1.ControlPlaneStatus{Source: "Helm", Release: "istiod-1-23-6", ReleaseStatus: "deployed", ChartVersion: "1.23.6"}, lcRevisionStatus(m, canary.Name).ControlPlane)
		assert.True(t, meta.IsStatusConditionTrue(m.Status.Conditions, "ControlPlanesInstalled"))
		e.assertDefaultValidator(stable.Name)
	})

	t.Run("a pod of the canary gets one sidecar, meshrev's, with the proxy image its release installed", func(t *testing.T) {
		ns := NewNamespace(t, "helm-canary", map[string]string{revisions.LabelRev: canary.Name})
		pod, _, err := createPod(t, ns, testPod("app", nil))
		require.NoError(t, err)
		assert.Equal(t, canary.Name, lcSidecarRevision(t, pod))
		var proxies []corev1.Container
		for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
			if c.Name == "istio-proxy" {
				proxies = append(proxies, c)
			}
		}
		require.Len(t, proxies, 1, "one istio-proxy: no second injector ran")
		assert.Equal(t, helmHub+"/proxyv2:1.23.6", proxies[0].Image, "the image of the release's istio-sidecar-injector-%s values, not meshrev's default repository", canary.Name)
		assert.Contains(t, proxies[0].Args, "--proxyLogLevel=debug", "global.proxy.logLevel of the release's values")
		assert.Equal(t, "50m", proxies[0].Resources.Requests.Cpu().String(), "global.proxy.resources of the release's values")
		assert.Equal(t, "512Mi", proxies[0].Resources.Limits.Memory().String(), "global.proxy.resources of the release's values")
		assert.Contains(t, proxies[0].Env, corev1.EnvVar{Name: "ISTIO_META_DNS_CAPTURE", Value: "true"}, "defaultConfig.proxyMetadata of the release's mesh config istio-%s", canary.Name)
	})

	t.Run("revoking the canary uninstalls exactly its release", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = m.Spec.Revisions[:1]
			m.Spec.Canary = ""
		})
		require.NoError(t, err)
		e.waitGone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "istiod-" + canary.Name}})
		e.waitGone(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "istiod-" + canary.Name}})
		e.waitGone(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "istio-sidecar-injector-" + canary.Name}})
		e.assertRelease(stable, "1.22.6")
	})

	t.Run("a canary older than the installed CRDs is refused with the reason", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = append(m.Spec.Revisions, helmRevision("1.23.0", repo))
			m.Spec.Canary = "1-23-0"
		})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "its charts (1.23.0) are older than the Istio CRDs installed in the cluster (1.23.6), and CRDs are never downgraded")
	})

	t.Run("a chart version the repository does not have fails the step with a message naming the repository", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = append(m.Spec.Revisions, helmRevision("1.23.9", repo))
			m.Spec.Canary = "1-23-9"
		})
		require.NoError(t, err)
		m := e.waitMesh("install failure reported", func(m *v1alpha1.Mesh) bool {
			return meta.IsStatusConditionFalse(m.Status.Conditions, "ControlPlanesInstalled")
		})
		c := meta.FindStatusCondition(m.Status.Conditions, "ControlPlanesInstalled")
		assert.Equal(t, "InstallFailed", c.Reason)
		assert.Contains(t, c.Message, "fetch chart base 1.23.9 from "+repo)
		rs := lcRevisionStatus(m, "1-23-9").ControlPlane
		require.NotNil(t, rs)
		assert.Equal(t, "failed", rs.ReleaseStatus)
		assert.Contains(t, rs.LastError, "the repository has no chart base version 1.23.9")
		e.assertRelease(stable, "1.22.6")
		_, err = e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = m.Spec.Revisions[:1]
			m.Spec.Canary = ""
		})
		require.NoError(t, err, "revoke the canary that never installed")
		e.waitMesh("install failure gone with the revision", func(m *v1alpha1.Mesh) bool {
			return meta.IsStatusConditionTrue(m.Status.Conditions, "ControlPlanesInstalled")
		})
	})

	t.Run("promote moves Istio's default validating webhook; unpublish uninstalls exactly the old release", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = append(m.Spec.Revisions, canary)
			m.Spec.Canary = canary.Name
		})
		require.NoError(t, err)
		e.waitDeploymentAvailable(lcMeshNamespace, "istiod-"+canary.Name)
		e.waitMesh("canary ready", func(m *v1alpha1.Mesh) bool {
			r := lcRevisionStatus(m, canary.Name)
			return r != nil && r.ControlPlaneReady
		})
		_, err = e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Stable, m.Spec.Canary = canary.Name, ""
		})
		require.NoError(t, err)
		e.waitDefaultValidator(canary.Name)
		_, err = e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = m.Spec.Revisions[1:]
		})
		require.NoError(t, err)
		e.waitGone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "istiod-" + stable.Name}})
		e.waitGone(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "istiod-clusterrole-" + stable.Name + "-" + lcMeshNamespace}})
		e.assertRelease(canary, "1.23.6")
		e.assertNoIstioInjector()
	})
}

// assertRelease checks the objects Istio's istiod chart creates for rev.
func (e *lcEnv) assertRelease(rev v1alpha1.Revision, version string) {
	e.t.Helper()
	ctx := e.t.Context()
	name := "istiod-" + rev.Name
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: name}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "istio-" + rev.Name}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "istio-sidecar-injector-" + rev.Name}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: name}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: name}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "istiod-clusterrole-" + rev.Name + "-" + lcMeshNamespace}},
	} {
		require.NoError(e.t, e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj), "%T %s of release %s", obj, obj.GetName(), name)
		assert.Equal(e.t, name, obj.GetAnnotations()["meta.helm.sh/release-name"], "%T %s belongs to release %s", obj, obj.GetName(), name)
	}
	var dep appsv1.Deployment
	require.NoError(e.t, e.c.Get(ctx, client.ObjectKey{Namespace: lcMeshNamespace, Name: name}, &dep))
	assert.Equal(e.t, helmHub+"/pilot:"+version, dep.Spec.Template.Spec.Containers[0].Image, "the revision's own values reach its release")
	assert.Equal(e.t, "istiod-"+rev.Name, dep.Spec.Template.Spec.ServiceAccountName)
}

// assertNoIstioInjector checks that no MutatingWebhookConfiguration but meshrev's exists.
func (e *lcEnv) assertNoIstioInjector() {
	e.t.Helper()
	var list admissionregistrationv1.MutatingWebhookConfigurationList
	require.NoError(e.t, e.c.List(e.t.Context(), &list))
	for _, mwc := range list.Items {
		assert.False(e.t, strings.Contains(mwc.Name, "istio"), "Istio's injector webhook %s exists", mwc.Name)
		for _, w := range mwc.Webhooks {
			assert.NotContains(e.t, w.Name, "sidecar-injector.istio.io", "webhook %s of %s", w.Name, mwc.Name)
		}
	}
}

// defaultValidatorService is the Service Istio's default validating webhook calls.
func (e *lcEnv) defaultValidatorService() string {
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := e.c.Get(e.t.Context(), client.ObjectKey{Name: "istiod-default-validator"}, &vwc); err != nil || len(vwc.Webhooks) == 0 || vwc.Webhooks[0].ClientConfig.Service == nil {
		return ""
	}
	return vwc.Webhooks[0].ClientConfig.Service.Name
}

func (e *lcEnv) assertDefaultValidator(rev string) {
	e.t.Helper()
	assert.Equal(e.t, "istiod-"+rev, e.defaultValidatorService(), "Istio's default validating webhook is the stable revision's")
}

func (e *lcEnv) waitDefaultValidator(rev string) {
	e.t.Helper()
	e.waitMesh("Istio's default validating webhook on istiod-"+rev, func(*v1alpha1.Mesh) bool {
		return e.defaultValidatorService() == "istiod-"+rev
	})
}

// cleanupHelmReleases removes what the Mesh's deletion leaves by design
// (Istio's CRDs and default validating webhook, the base release) and Helm's
// release records, so that later tests start from a cluster without Istio.
func cleanupHelmReleases(t *testing.T, e *lcEnv) {
	ctx := context.Background()
	_ = e.c.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(lcMeshNamespace), client.MatchingLabels{"owner": "helm"})
	var vwc admissionregistrationv1.ValidatingWebhookConfigurationList
	if err := e.c.List(ctx, &vwc); err == nil {
		for i := range vwc.Items {
			if vwc.Items[i].Labels["app.kubernetes.io/part-of"] == "istio" {
				_ = e.c.Delete(ctx, &vwc.Items[i])
			}
		}
	}
	crds := &metav1.PartialObjectMetadataList{}
	crds.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinitionList"))
	if err := e.c.List(ctx, crds, client.MatchingLabels{"app.kubernetes.io/part-of": "istio"}); err == nil {
		for i := range crds.Items {
			// List items carry no kind: the client needs it to delete.
			crds.Items[i].SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
			if err := e.c.Delete(ctx, &crds.Items[i]); err != nil && !apierrors.IsNotFound(err) {
				t.Logf("delete CRD %s: %v", crds.Items[i].Name, err)
			}
		}
	}
}
