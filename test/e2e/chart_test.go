//go:build e2e

package e2e

// The Helm chart on the local cluster, with the real helm binary: install,
// the manager running with the chart's ServiceAccount token (so the chart's
// RBAC is what it gets), self-managed certificates trusted by the API server
// and rotated under load, helm upgrade leaving caBundle and the Mesh alone,
// and helm uninstall leaving the cluster clean. cert-manager mode is checked
// against cert-manager's real CRDs by a server-side dry run.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/internal/devcluster"
	"github.com/meshrev/meshrev/internal/manager"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

const (
	// chartRelease is the Helm release the docs install.
	chartRelease = "meshrev"
	// chartServiceAccount is the manager's ServiceAccount in the chart.
	chartServiceAccount = "meshrev-manager"
	// chartCertLifetime is the serving certificate's lifetime in this test:
	// renewed at two thirds, so it rotates several times while the test runs.
	chartCertLifetime = 45 * time.Second
)

// helmRunner runs the real helm binary against the shared cluster, with its
// own (temporary) Helm home so nothing leaks into the user's.
type helmRunner struct {
	bin, chart string
	env        []string
}

func newHelm(t *testing.T) *helmRunner {
	t.Helper()
	bin := ""
	if b := Env().Binaries; b != nil && b.Helm != "" {
		bin = b.Helm
	} else {
		// A cluster given by kubeconfig: the pinned helm from the cache
		// (built once, then up to date in a moment).
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
		defer cancel()
		bins, err := devcluster.Build(ctx, devcluster.BuildOptions{})
		require.NoError(t, err, "build the pinned helm binary")
		bin = bins.Helm
	}
	root, err := devcluster.RepoRoot()
	require.NoError(t, err)
	home := t.TempDir()
	return &helmRunner{
		bin:   bin,
		chart: filepath.Join(root, "charts", "meshrev"),
		env: append(os.Environ(), "KUBECONFIG="+Env().KubeconfigPath,
			"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
			"HELM_DATA_HOME="+filepath.Join(home, "data")),
	}
}

// run runs helm with args and returns its combined output; it fails the test
// when helm fails.
func (h *helmRunner) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Env = h.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("helm %s (%s)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	require.NoError(t, err, "helm %s:\n%s", strings.Join(args, " "), out.String())
	return out.String()
}

func TestChartInstallRunsTheManagerWithItsOwnRBAC(t *testing.T) {
	// The chart owns the cluster-scoped webhook configurations while it is
	// installed: no other test's manager may touch them meanwhile.
	managerMu.Lock()
	t.Cleanup(managerMu.Unlock)

	ctx := t.Context()
	cs := Client(t)
	c := ctrlClient(t)
	helm := newHelm(t)
	for _, kind := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		err := c.Get(ctx, client.ObjectKey{Name: webhookConfigName}, kind)
		require.True(t, apierrors.IsNotFound(err), "a %T %q is left over from an earlier test (err %v): the chart cannot own it", kind, webhookConfigName, err)
	}
	err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &v1alpha1.Mesh{})
	require.True(t, apierrors.IsNotFound(err) || meta.IsNoMatchError(err), "a Mesh %q is left over from an earlier test (err %v)", v1alpha1.MeshName, err)

	t.Run("helm lint --strict passes", func(t *testing.T) {
		helm.run(t, "lint", "--strict", helm.chart)
		helm.run(t, "lint", "--strict", helm.chart, "--set", "certManager.enabled=true")
	})

	t.Run("cert-manager mode is accepted by cert-manager's real CRDs", func(t *testing.T) {
		installCertManagerCRDs(t, c)
		ensureMeshCRD(t, c)
		for _, ns := range []string{meshrevNamespace, controlPlaneNamespace} {
			ensureNamespace(t, c, ns)
		}
		manifest := helm.run(t, "template", chartRelease, helm.chart, "-n", meshrevNamespace, "--set", "certManager.enabled=true")
		kinds := serverDryRunApply(t, manifest)
		for _, k := range []string{"Certificate/meshrev-ca", "Certificate/meshrev-webhook", "Issuer/meshrev-ca", "Issuer/meshrev-selfsigned",
			"MutatingWebhookConfiguration/meshrev", "ValidatingWebhookConfiguration/meshrev", "Deployment/meshrev-manager"} {
			assert.Contains(t, kinds, k)
		}
	})
	if t.Failed() {
		return
	}

	port := freeLocalPorts(t, 1)[0]
	url := "https://127.0.0.1:" + strconv.Itoa(port)
	installed := false
	t.Cleanup(func() { chartCleanup(t, c, installed) })

	// The manager runs here, not in the cluster (pods do not really run):
	// the webhooks point at it by URL and the chart skips the Deployment.
	out := helm.run(t, "install", chartRelease, helm.chart, "-n", meshrevNamespace, "--create-namespace", "--wait", "--timeout", "2m",
		"--set", "manager.enabled=false", "--set", "webhook.url="+url)
	installed = true
	assert.Contains(t, out, "meshrev status", "NOTES.txt tells the next step")

	t.Run("the install creates the initial Mesh and webhook configurations without caBundle", func(t *testing.T) {
		var mesh v1alpha1.Mesh
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &mesh))
		assert.Equal(t, "1-22-6", mesh.Spec.Stable)
		require.Len(t, mesh.Spec.Revisions, 1)
		assert.Equal(t, "1.22.6", mesh.Spec.Revisions[0].Version)
		require.NotNil(t, mesh.Spec.Revisions[0].ControlPlane)
		assert.Equal(t, "docker.io/istio/pilot:1.22.6", mesh.Spec.Revisions[0].ControlPlane.Image)
		for _, cc := range webhookClientConfigs(t, c) {
			require.NotNil(t, cc.URL)
			assert.True(t, strings.HasPrefix(*cc.URL, url+"/"), "clientConfig.url %s", *cc.URL)
			assert.Empty(t, cc.CABundle, "the chart leaves caBundle to the manager")
		}
	})

	// A token of the chart's ServiceAccount: the manager gets exactly the
	// chart's RBAC.
	saConfig := serviceAccountConfig(t, cs, meshrevNamespace, chartServiceAccount)
	h := startManager(t, asReplica(), withManageCerts(chartCertLifetime), withLeaderElection(), withManagerOptions(func(o *manager.Options) {
		o.RestConfig = saConfig
		o.WebhookPort = port
		o.TemplatesConfigMap = "meshrev-templates"
	}))

	app := NewNamespace(t, "chart-app", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	t.Run("the API server trusts the self-managed certificate and pods are injected", func(t *testing.T) {
		for _, cc := range webhookClientConfigs(t, c) {
			assert.Equal(t, h.CABundle, cc.CABundle, "caBundle patched by the manager")
		}
		waitResolves(t, app, testPod("probe", nil), "1-22-6")
		applyDeployment(t, app, simpleDeployment("web", 2, nil))
		pods := waitRollout(t, app, "web")
		require.Len(t, pods, 2)
		for _, p := range pods {
			assert.Equal(t, "1-22-6", p.Labels[revisions.LabelRevision])
			assert.True(t, slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "istio-proxy" }), "pod %s has the sidecar", p.Name)
		}
	})

	t.Run("the chart's RBAC is enough for the controller", func(t *testing.T) {
		// Leader election (Lease), control plane (Deployment + Service in the
		// mesh namespace, server-side apply), Mesh status, Events.
		var lease coordinationv1.Lease
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: leaseName}, &lease))
		require.NotNil(t, lease.Spec.HolderIdentity)
		assert.NotEmpty(t, *lease.Spec.HolderIdentity)
		waitMeshStatus(t, c, "control plane ready and both pods counted", func(m *v1alpha1.Mesh) bool {
			return m.Status.ObservedGeneration == m.Generation && len(m.Status.Revisions) == 1 &&
				m.Status.Revisions[0].ControlPlaneReady && m.Status.DataPlane.Pods >= 2
		})
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}} {
			require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: controlPlaneNamespace, Name: "istiod-1-22-6"}, obj), "%T istiod-1-22-6", obj)
		}

		// Deploy a canary through the Mesh validator (facts gathered with
		// the chart's RBAC), then move the namespace to it: the report names
		// the Deployment, which takes reading ReplicaSets.
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
		labelNamespace(t, app, map[string]*string{revisions.LabelInjection: nil, revisions.LabelRev: ptrTo(revisions.TagCanary)})
		m := waitMeshStatus(t, c, "the web Deployment reported outdated", func(m *v1alpha1.Mesh) bool {
			return slices.ContainsFunc(m.Status.DataPlane.OutdatedWorkloads, func(w v1alpha1.WorkloadStatus) bool {
				return w.Kind == "Deployment" && w.Namespace == app && w.Name == "web" && w.Want == "1-23-6"
			})
		})
		assert.Equal(t, v1alpha1.PhaseCanaryDeployed, m.Status.Phase)
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: controlPlaneNamespace, Name: "istiod-1-23-6"}, &appsv1.Deployment{}))

		// Promote once the canary's control plane is Ready: the controller
		// relabels istio.io/rev=canary to stable (patching namespaces).
		waitMeshStatus(t, c, "canary control plane ready", func(m *v1alpha1.Mesh) bool {
			return slices.ContainsFunc(m.Status.Revisions, func(r v1alpha1.RevisionStatus) bool { return r.Name == "1-23-6" && r.ControlPlaneReady })
		})
		_, _, err = updateMesh(t, func(m *v1alpha1.Mesh) { m.Spec.Stable, m.Spec.Canary = "1-23-6", "" })
		require.NoError(t, err, "promote")
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			var ns corev1.Namespace
			if err := c.Get(ctx, client.ObjectKey{Name: app}, &ns); err != nil {
				return false, err
			}
			return ns.Labels[revisions.LabelRev] == revisions.TagStable, nil
		})
		require.NoError(t, err, "the controller relabels %s istio.io/rev=canary to stable", app)
		waitMeshStatus(t, c, "promotion recorded", func(m *v1alpha1.Mesh) bool {
			return m.Status.Previous == "1-22-6" && m.Status.Phase == v1alpha1.PhaseDataPlaneUpgrading
		})

		var events corev1.EventList
		require.NoError(t, c.List(ctx, &events, client.InNamespace(metav1.NamespaceDefault)))
		assert.True(t, slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
			return e.InvolvedObject.Kind == "Mesh"
		}), "the controller records Events on the Mesh")

		// An RBAC refusal reads: ... is forbidden: User "system:serviceaccount:meshrev-system:meshrev-manager" cannot ...
		assert.False(t, h.logContains(regexp.MustCompile(`is forbidden: User "system:serviceaccount:`)), "the manager was refused something; log %s:\n%s", h.LogPath, tailFile(h.LogPath, 40))
	})

	t.Run("the chart's RBAC is not wider than needed", func(t *testing.T) {
		sa, err := kubernetes.NewForConfig(saConfig)
		require.NoError(t, err)
		dry := []string{metav1.DryRunAll}
		allowed := map[string]func() error{
			"get its certificate Secret": func() error {
				_, err := sa.CoreV1().Secrets(meshrevNamespace).Get(ctx, "meshrev-webhook-tls", metav1.GetOptions{})
				return err
			},
			"patch a namespace's labels": func() error {
				_, err := sa.CoreV1().Namespaces().Patch(ctx, app, types.MergePatchType, []byte(`{"metadata":{"labels":{"e2e":"x"}}}`), metav1.PatchOptions{DryRun: dry})
				return err
			},
		}
		for what, call := range allowed {
			assert.NoError(t, call(), what)
		}
		denied := map[string]func() error{
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
			"edit the Mesh spec (people do that, through the validator)": func() error {
				_, err := sa.RESTClient().Patch(types.MergePatchType).AbsPath("/apis/meshrev.io/v1alpha1/meshes/default").
					Param("dryRun", metav1.DryRunAll).Body([]byte(`{"spec":{"canary":null}}`)).DoRaw(ctx)
				return err
			},
		}
		for what, call := range denied {
			err := call()
			assert.True(t, apierrors.IsForbidden(err), "%s should be forbidden, got %v", what, err)
		}
	})

	t.Run("certificate rotation keeps pod creation working", func(t *testing.T) {
		before := secretCert(t, c)
		deadline := time.Now().Add(2 * chartCertLifetime)
		rotatedAt := time.Time{}
		var creates, failures int
		for time.Now().Before(deadline) && (rotatedAt.IsZero() || time.Since(rotatedAt) < 5*time.Second) {
			got, _, err := dryRunPod(t, app, testPod("rotation", nil))
			creates++
			if err != nil || got.Labels[revisions.LabelRevision] != "1-23-6" {
				failures++
				t.Errorf("pod creation during rotation: err %v, revision %q", err, revisionOf(got))
			}
			if rotatedAt.IsZero() && !bytes.Equal(secretCert(t, c), before) {
				rotatedAt = time.Now()
			}
			time.Sleep(200 * time.Millisecond)
		}
		require.False(t, rotatedAt.IsZero(), "the serving certificate did not rotate within %s", 2*chartCertLifetime)
		served, err := h.servingCert(ctx)
		require.NoError(t, err, "the webhook server's certificate verifies against the unchanged CA bundle")
		block, _ := pem.Decode(secretCert(t, c))
		require.NotNil(t, block)
		assert.Equal(t, block.Bytes, served.Raw, "the webhook server serves the rotated certificate")
		t.Logf("%d pod creations across the rotation, %d failed", creates, failures)
	})

	t.Run("helm upgrade leaves caBundle and the Mesh alone", func(t *testing.T) {
		// Stop the manager first, so that nothing could put caBundle back.
		h.stop(t)
		bundles := webhookClientConfigs(t, c)
		var meshBefore v1alpha1.Mesh
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &meshBefore))
		helm.run(t, "upgrade", chartRelease, helm.chart, "-n", meshrevNamespace, "--reuse-values", "--wait",
			"--set", "webhook.timeoutSeconds=7", "--set", "mesh.stable.version=1.23.6")
		after := webhookClientConfigs(t, c)
		require.Len(t, after, len(bundles))
		for i := range after {
			assert.NotEmpty(t, after[i].CABundle)
			assert.Equal(t, bundles[i].CABundle, after[i].CABundle, "helm upgrade must not reset caBundle")
		}
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: webhookConfigName}, &mwc))
		for _, w := range mwc.Webhooks {
			assert.Equal(t, int32(7), *w.TimeoutSeconds, "the upgrade applied the new value to %s", w.Name)
		}
		var meshAfter v1alpha1.Mesh
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &meshAfter))
		assert.Equal(t, meshBefore.Spec, meshAfter.Spec, "the lifecycle owns the Mesh: helm upgrade does not touch it")

		h.start(t)
		waitResolves(t, app, testPod("after-upgrade", nil), "1-23-6")
	})

	t.Run("helm uninstall leaves the cluster clean", func(t *testing.T) {
		h.stop(t)
		helm.run(t, "uninstall", chartRelease, "-n", meshrevNamespace, "--wait")
		installed = false
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
			err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			assert.True(t, apierrors.IsNotFound(err), "%T %s should be gone, got %v", obj, obj.GetName(), err)
		}
		// Helm keeps CRDs, and the Mesh with them (a hook, see mesh.yaml).
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "meshes.meshrev.io"}, &apiextensionsv1.CustomResourceDefinition{}))
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &v1alpha1.Mesh{}))
		// Nothing of the release is left, in any namespace.
		var secrets corev1.SecretList
		require.NoError(t, c.List(ctx, &secrets, client.InNamespace(meshrevNamespace), client.MatchingLabels{"owner": "helm", "name": chartRelease}))
		assert.Empty(t, secrets.Items, "Helm's release records are gone")
		// The manager's certificate Secret is owned by the webhook
		// configuration the chart removed: the garbage collector takes it.
		require.Eventually(t, func() bool {
			err := c.Get(ctx, client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &corev1.Secret{})
			return apierrors.IsNotFound(err)
		}, time.Minute, 200*time.Millisecond, "the certificate Secret is garbage-collected with its owner")
		// No webhook is left in the pod path: pods are created untouched.
		got, _, err := createPod(t, app, testPod("after-uninstall", nil))
		require.NoError(t, err)
		assert.Empty(t, got.Labels[revisions.LabelRevision])
	})
}

// chartCleanup leaves the cluster as the test found it: the release (when a
// step failed before uninstalling), the Mesh the chart kept (its control
// planes go with it), the manager's certificate Secret and Lease.
func chartCleanup(t *testing.T, c client.Client, installed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if installed {
		helm := newHelm(t)
		cmd := exec.CommandContext(ctx, helm.bin, "uninstall", chartRelease, "-n", meshrevNamespace, "--wait")
		cmd.Env = helm.env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cleanup: helm uninstall: %v\n%s", err, out)
		}
	}
	for _, obj := range []client.Object{
		&v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}},
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: leaseName}},
	} {
		if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete %T %s: %v", obj, obj.GetName(), err)
		}
	}
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &v1alpha1.Mesh{})), nil
	})
	if err != nil {
		t.Errorf("cleanup: the Mesh is still there: %v", err)
	}
}

// webhookClientConfigs returns the clientConfig of every webhook of both
// configurations, mutating first, in order.
func webhookClientConfigs(t *testing.T, c client.Client) []admissionregistrationv1.WebhookClientConfig {
	t.Helper()
	var m admissionregistrationv1.MutatingWebhookConfiguration
	var v admissionregistrationv1.ValidatingWebhookConfiguration
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Name: webhookConfigName}, &m))
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Name: webhookConfigName}, &v))
	var out []admissionregistrationv1.WebhookClientConfig
	for _, w := range m.Webhooks {
		out = append(out, w.ClientConfig)
	}
	for _, w := range v.Webhooks {
		out = append(out, w.ClientConfig)
	}
	require.Len(t, out, 7, "four injection webhooks, the Mesh validator, the namespace warnings and the templates validator")
	return out
}

// serviceAccountConfig returns a REST config that authenticates with a
// fresh token of the ServiceAccount (TokenRequest API), as a pod would.
func serviceAccountConfig(t *testing.T, cs kubernetes.Interface, ns, name string) *rest.Config {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(3600))},
	}, metav1.CreateOptions{})
	require.NoError(t, err, "token of ServiceAccount %s/%s", ns, name)
	cfg := rest.AnonymousClientConfig(Env().Config)
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// waitMeshStatus waits until cond holds for the Mesh and returns it.
func waitMeshStatus(t *testing.T, c client.Client, what string, cond func(*v1alpha1.Mesh) bool) *v1alpha1.Mesh {
	t.Helper()
	var m v1alpha1.Mesh
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &m); err != nil {
			return false, err
		}
		return cond(&m), nil
	})
	require.NoError(t, err, "Mesh status: %s; last status %+v", what, m.Status)
	return &m
}

// secretCert is the serving certificate (PEM) in the manager's Secret.
func secretCert(t *testing.T, c client.Client) []byte {
	t.Helper()
	var sec corev1.Secret
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &sec))
	require.NotEmpty(t, sec.Data[corev1.TLSCertKey])
	return sec.Data[corev1.TLSCertKey]
}

func revisionOf(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	return p.Labels[revisions.LabelRevision]
}

func ptrTo[T any](v T) *T { return &v }

// installCertManagerCRDs applies cert-manager's CRDs from the module cache
// (the version go.mod pins) and waits until they are Established; they are
// deleted when the test ends unless they were there before.
func installCertManagerCRDs(t *testing.T, c client.Client) {
	t.Helper()
	root, err := devcluster.RepoRoot()
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = root
	out, err := cmd.Output()
	require.NoError(t, err, "locate the cert-manager module")
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no CRDs in %s", dir)
	ctx := t.Context()
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var crd apiextensionsv1.CustomResourceDefinition
		require.NoError(t, yaml.Unmarshal(data, &crd), "%s", f)
		err = c.Create(ctx, &crd)
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		require.NoError(t, err, "create CRD %s", crd.Name)
		name := crd.Name
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = c.Delete(ctx, &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name}})
		})
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			var have apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &have); err != nil {
				return false, err
			}
			for _, cond := range have.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		require.NoError(t, err, "CRD %s Established", name)
	}
}

// serverDryRunApply server-side applies every object of manifest with
// dryRun=All and strict field validation, so that the API server checks each
// against its real schema (built-in types, the Mesh CRD, cert-manager's
// CRDs) without storing anything. It returns "Kind/name" of each object.
func serverDryRunApply(t *testing.T, manifest string) []string {
	t.Helper()
	ctx := t.Context()
	dc, err := discovery.NewDiscoveryClientForConfig(Env().Config)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(Env().Config)
	require.NoError(t, err)
	var applied []string
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		var u unstructured.Unstructured
		require.NoError(t, yaml.Unmarshal(doc, &u.Object))
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		require.NoError(t, err, "the API server does not know %s", gvk)
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
		}
		data, err := u.MarshalJSON()
		require.NoError(t, err)
		_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
			DryRun: []string{metav1.DryRunAll}, FieldManager: "meshrev-e2e", Force: ptrTo(true), FieldValidation: "Strict",
		})
		require.NoError(t, err, "server-side dry run of %s %s:\n%s", gvk.Kind, u.GetName(), doc)
		applied = append(applied, fmt.Sprintf("%s/%s", gvk.Kind, u.GetName()))
	}
	return applied
}

// TestChartDefaultInstallRunsInCluster installs the chart with its default
// values (the in-cluster manager) into a namespace that enforces the
// restricted Pod Security Standard, and runs the real meshrev-manager binary
// with exactly the Deployment's arguments and the chart's ServiceAccount.
func TestChartDefaultInstallRunsInCluster(t *testing.T) {
	managerMu.Lock()
	t.Cleanup(managerMu.Unlock)

	ctx := t.Context()
	cs := Client(t)
	c := ctrlClient(t)
	helm := newHelm(t)
	// The restricted profile refuses any pod that is not: non-root,
	// seccomp RuntimeDefault, all capabilities dropped, no privilege escalation.
	ns := NewNamespace(t, "meshrev-psa", map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	installed := false
	t.Cleanup(func() { chartCleanupIn(t, c, ns, installed) })
	helm.run(t, "install", chartRelease, helm.chart, "-n", ns, "--wait", "--timeout", "2m")
	installed = true

	t.Run("the manager Deployment is admitted as restricted and spreads over nodes", func(t *testing.T) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "meshrev-manager", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, int32(2), d.Status.AvailableReplicas)
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
		require.NoError(t, err)
		require.Len(t, pods.Items, 2)
		assert.NotEqual(t, pods.Items[0].Spec.NodeName, pods.Items[1].Spec.NodeName, "preferred anti-affinity on kubernetes.io/hostname")
		for _, p := range pods.Items {
			assert.Empty(t, p.Labels[revisions.LabelRevision], "meshrev's own pods are never injected")
		}
		// The namespace really enforces the profile: an ordinary pod is refused.
		_, err = cs.CoreV1().Pods(ns).Create(ctx, testPod("unrestricted", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "violates PodSecurity \"restricted:latest\"")
	})

	t.Run("the PodDisruptionBudget allows one disruption and the Service has both replicas", func(t *testing.T) {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			pdb, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "meshrev-manager", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return pdb.Status.CurrentHealthy == 2 && pdb.Status.DisruptionsAllowed == 1, nil
		})
		require.NoError(t, err, "PodDisruptionBudget status")
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			list, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=meshrev-webhook"})
			if err != nil {
				return false, err
			}
			ready := 0
			for _, s := range list.Items {
				for _, p := range s.Ports {
					if p.Port == nil || *p.Port != 9443 {
						continue
					}
					for _, e := range s.Endpoints {
						if e.Conditions.Ready != nil && *e.Conditions.Ready {
							ready++
						}
					}
				}
			}
			return ready == 2, nil
		})
		require.NoError(t, err, "the Service meshrev-webhook routes to both replicas on 9443")
	})

	t.Run("the real binary runs with the Deployment's arguments and the chart's RBAC", func(t *testing.T) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "meshrev-manager", metav1.GetOptions{})
		require.NoError(t, err)
		container := d.Spec.Template.Spec.Containers[0]
		require.Equal(t, "POD_NAMESPACE", container.Env[0].Name)
		args := make([]string, 0, len(container.Args)+8)
		for _, a := range container.Args {
			// As the kubelet expands $(VAR) from the container's env.
			args = append(args, strings.ReplaceAll(a, "$(POD_NAMESPACE)", ns))
		}
		// Only what a pod has and this process has not: its token, a writable
		// cert dir, free local ports (later flags win).
		ports := freeLocalPorts(t, 3)
		kubeconfig := serviceAccountKubeconfig(t, cs, ns, chartServiceAccount)
		args = append(args, "--kubeconfig="+kubeconfig, "--cert-dir="+t.TempDir(), "--webhook-host=127.0.0.1",
			"--webhook-port="+strconv.Itoa(ports[0]), "--metrics-bind-address=127.0.0.1:"+strconv.Itoa(ports[1]),
			"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(ports[2]))

		bin := managerBinary(t)
		var logs bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case err := <-exited:
				assert.NoError(t, err, "meshrev-manager exits cleanly on SIGINT")
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				t.Error("meshrev-manager did not stop within 60s of SIGINT")
			}
			if t.Failed() {
				t.Logf("meshrev-manager %s\n%s", strings.Join(args, " "), logs.String())
			}
		}()

		readyz := "http://127.0.0.1:" + strconv.Itoa(ports[2]) + "/readyz"
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
			select {
			case err := <-exited:
				return false, fmt.Errorf("meshrev-manager exited: %v", err)
			default:
			}
			_, err := httpGet(ctx, readyz)
			return err == nil, nil
		})
		require.NoError(t, err, "readyz of the manager started with the Deployment's arguments")

		// Self-managed certificates: the Secret exists and both
		// configurations carry its CA.
		var sec corev1.Secret
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "meshrev-webhook-tls"}, &sec))
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			for _, cc := range webhookClientConfigs(t, c) {
				if !bytes.Equal(cc.CABundle, sec.Data["ca.crt"]) {
					return false, nil
				}
			}
			return true, nil
		})
		require.NoError(t, err, "caBundle patched into every webhook")
		for _, cc := range webhookClientConfigs(t, c) {
			require.NotNil(t, cc.Service)
			assert.Equal(t, ns, cc.Service.Namespace)
		}
		// The controller (leader) reports the Mesh the chart created.
		waitMeshStatus(t, c, "observed by the controller", func(m *v1alpha1.Mesh) bool {
			return m.Status.ObservedGeneration == m.Generation && m.Status.Phase == v1alpha1.PhaseStable
		})
		assert.NotContains(t, logs.String(), `is forbidden: User "system:serviceaccount:`, "the manager was refused something")
	})

	t.Run("helm uninstall removes the in-cluster manager", func(t *testing.T) {
		helm.run(t, "uninstall", chartRelease, "-n", ns, "--wait")
		installed = false
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=meshrev"})
			return err == nil && len(pods.Items) == 0, err
		})
		require.NoError(t, err, "the manager pods are gone")
		for _, name := range []string{"meshrev-webhook"} {
			_, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			assert.True(t, apierrors.IsNotFound(err), "Service %s: %v", name, err)
		}
		_, err = cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "meshrev-manager", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "PodDisruptionBudget: %v", err)
	})
}

// chartCleanupIn is chartCleanup for a release in namespace ns.
func chartCleanupIn(t *testing.T, c client.Client, ns string, installed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if installed {
		helm := newHelm(t)
		cmd := exec.CommandContext(ctx, helm.bin, "uninstall", chartRelease, "-n", ns, "--wait")
		cmd.Env = helm.env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cleanup: helm uninstall: %v\n%s", err, out)
		}
	}
	if err := c.Delete(ctx, &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}}); err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
		t.Errorf("cleanup: delete Mesh: %v", err)
	}
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &v1alpha1.Mesh{})
		return apierrors.IsNotFound(err) || meta.IsNoMatchError(err), nil
	})
	if err != nil {
		t.Errorf("cleanup: the Mesh is still there: %v", err)
	}
}

// managerBinary builds cmd/meshrev-manager into the test's temp dir.
func managerBinary(t *testing.T) string {
	return buildBinary(t, "./cmd/meshrev-manager", "meshrev-manager")
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates with a
// fresh token of the ServiceAccount and returns its path.
func serviceAccountKubeconfig(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	cfg := serviceAccountConfig(t, cs, ns, name)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	if len(cfg.CAData) == 0 {
		kc.Clusters["local"].CertificateAuthority = cfg.CAFile
	}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["sa"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: name}
	kc.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*kc, path))
	return path
}
