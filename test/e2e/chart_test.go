//go:build e2e

package e2e

// The Helm chart on the local cluster, with the real helm binary: install,
// the manager running with the chart's ServiceAccount token (so the chart's
// RBAC is what it gets), self-managed certificates trusted by the API server
// and rotated under load, helm upgrade leaving caBundle and the Mesh alone,
// and helm uninstall leaving the cluster clean. cert-manager mode is checked
// against cert-manager's real CRDs by a server-side dry run. This file installs
// the chart and holds the shared helpers; chart_rbac_test.go,
// chart_certs_test.go and chart_upgrade_test.go hold the steps by concern,
// chart_incluster_test.go the install with the in-cluster manager.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// chartInstall is the state TestChartInstallRunsTheManagerWithItsOwnRBAC
// shares between its steps: the release installed with the manager outside
// the cluster, and that manager running with the chart's ServiceAccount.
type chartInstall struct {
	helm *helmRunner
	c    client.Client
	// port and url are where the chart's webhook configurations point.
	port int
	url  string
	// installed is whether the release is installed (the cleanup uninstalls it).
	installed bool
	// saConfig authenticates with a token of the chart's ServiceAccount.
	saConfig *rest.Config
	// h is the manager running with saConfig.
	h *managerHandle
	// app is an injected namespace with the Deployment web.
	app string
}

func TestChartInstallRunsTheManagerWithItsOwnRBAC(t *testing.T) {
	// The chart owns the cluster-scoped webhook configurations while it is
	// installed: no other test's manager may touch them meanwhile.
	managerMu.Lock()
	t.Cleanup(managerMu.Unlock)

	ci := &chartInstall{helm: newHelm(t), c: ctrlClient(t)}
	ci.requireNothingLeftOver(t)
	t.Run("helm lint --strict passes", ci.lint)
	t.Run("cert-manager mode is accepted by cert-manager's real CRDs", ci.certManagerMode)
	if t.Failed() {
		return
	}

	ci.install(t)
	t.Run("the install creates the initial Mesh and webhook configurations without caBundle", ci.initialObjects)
	ci.startManager(t)
	t.Run("the API server trusts the self-managed certificate and pods are injected", ci.podsInjected)
	t.Run("the chart's RBAC is enough for the controller", ci.rbacEnough)
	t.Run("the chart's RBAC is not wider than needed", ci.rbacNotWider)
	t.Run("certificate rotation keeps pod creation working", ci.certRotation)
	t.Run("helm upgrade leaves caBundle and the Mesh alone", ci.upgrade)
	t.Run("helm uninstall leaves the cluster clean", ci.uninstall)
}

// requireNothingLeftOver fails unless the webhook configurations and the Mesh
// the chart creates are absent: the chart cannot own what another test left.
func (ci *chartInstall) requireNothingLeftOver(t *testing.T) {
	for _, kind := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		err := ci.c.Get(t.Context(), client.ObjectKey{Name: webhookConfigName}, kind)
		require.True(t, apierrors.IsNotFound(err), "a %T %q is left over from an earlier test (err %v): the chart cannot own it", kind, webhookConfigName, err)
	}
	err := ci.c.Get(t.Context(), client.ObjectKey{Name: v1alpha1.MeshName}, &v1alpha1.Mesh{})
	require.True(t, apierrors.IsNotFound(err) || meta.IsNoMatchError(err), "a Mesh %q is left over from an earlier test (err %v)", v1alpha1.MeshName, err)
}

func (ci *chartInstall) lint(t *testing.T) {
	ci.helm.run(t, "lint", "--strict", ci.helm.chart)
	ci.helm.run(t, "lint", "--strict", ci.helm.chart, "--set", "certManager.enabled=true")
}

// install installs the release with the manager outside the cluster: pods do
// not really run, so the webhooks point at a local port by URL and the chart
// skips the Deployment.
func (ci *chartInstall) install(t *testing.T) {
	ci.port = freeLocalPorts(t, 1)[0]
	ci.url = "https://127.0.0.1:" + strconv.Itoa(ci.port)
	// Also the manager's certificate Secret and Lease.
	t.Cleanup(func() {
		chartCleanup(t, ci.c, meshrevNamespace, ci.installed,
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}},
			&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: leaseName}})
	})
	out := ci.helm.run(t, "install", chartRelease, ci.helm.chart, "-n", meshrevNamespace, "--create-namespace", "--wait", "--timeout", "2m",
		"--set", "manager.enabled=false", "--set", "webhook.url="+ci.url)
	ci.installed = true
	assert.Contains(t, out, "meshrev status", "NOTES.txt tells the next step")
}

func (ci *chartInstall) initialObjects(t *testing.T) {
	var mesh v1alpha1.Mesh
	require.NoError(t, ci.c.Get(t.Context(), client.ObjectKey{Name: v1alpha1.MeshName}, &mesh))
	assert.Equal(t, "1-22-6", mesh.Spec.Stable)
	require.Len(t, mesh.Spec.Revisions, 1)
	assert.Equal(t, "1.22.6", mesh.Spec.Revisions[0].Version)
	require.NotNil(t, mesh.Spec.Revisions[0].ControlPlane)
	assert.Equal(t, "docker.io/istio/pilot:1.22.6", mesh.Spec.Revisions[0].ControlPlane.Image)
	for _, cc := range webhookClientConfigs(t, ci.c) {
		require.NotNil(t, cc.URL)
		assert.True(t, strings.HasPrefix(*cc.URL, ci.url+"/"), "clientConfig.url %s", *cc.URL)
		assert.Empty(t, cc.CABundle, "the chart leaves caBundle to the manager")
	}
}

// startManager runs the manager where the chart's webhooks point, with a
// token of the chart's ServiceAccount (so it gets exactly the chart's RBAC),
// self-managed certificates that rotate while the test runs, and leader
// election; and makes the injected namespace app.
func (ci *chartInstall) startManager(t *testing.T) {
	ci.saConfig = serviceAccountConfig(t, Client(t), meshrevNamespace, chartServiceAccount)
	ci.h = startManager(t, asReplica(), withManageCerts(chartCertLifetime), withLeaderElection(), withManagerOptions(func(o *manager.Options) {
		o.RestConfig = ci.saConfig
		o.WebhookPort = ci.port
		o.TemplatesConfigMap = "meshrev-templates"
	}))
	ci.app = NewNamespace(t, "chart-app", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
}

func (ci *chartInstall) podsInjected(t *testing.T) {
	for _, cc := range webhookClientConfigs(t, ci.c) {
		assert.Equal(t, ci.h.CABundle, cc.CABundle, "caBundle patched by the manager")
	}
	waitResolves(t, ci.app, testPod("probe", nil), "1-22-6")
	applyDeployment(t, ci.app, simpleDeployment("web", 2, nil))
	pods := waitRollout(t, ci.app, "web")
	require.Len(t, pods, 2)
	for _, p := range pods {
		assert.Equal(t, "1-22-6", p.Labels[revisions.LabelRevision])
		assert.NotNil(t, sidecarOf(&p), "pod %s has the sidecar", p.Name)
	}
}

// chartCleanup leaves the cluster as the test found it: the release in ns
// (when a step failed before uninstalling), the Mesh the chart kept (its
// control planes go with it) and the objects also named.
func chartCleanup(t *testing.T, c client.Client, ns string, installed bool, also ...client.Object) {
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
	for _, obj := range append([]client.Object{&v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName}}}, also...) {
		if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			t.Errorf("cleanup: delete %T %s: %v", obj, obj.GetName(), err)
		}
	}
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &v1alpha1.Mesh{})
		return apierrors.IsNotFound(err) || meta.IsNoMatchError(err), nil
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

func revisionOf(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	return p.Labels[revisions.LabelRevision]
}

func ptrTo[T any](v T) *T { return &v }
