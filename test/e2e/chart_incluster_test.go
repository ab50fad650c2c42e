//go:build e2e

package e2e

// The chart with its default values: the manager Deployment in the cluster.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// chartInCluster is the state TestChartDefaultInstallRunsInCluster shares
// between its steps: the release installed with default values in ns.
type chartInCluster struct {
	helm *helmRunner
	c    client.Client
	cs   kubernetes.Interface
	// ns enforces the restricted Pod Security Standard.
	ns        string
	installed bool
}

// TestChartDefaultInstallRunsInCluster installs the chart with its default
// values (the in-cluster manager) into a namespace that enforces the
// restricted Pod Security Standard, and runs the real meshrev-manager binary
// with exactly the Deployment's arguments and the chart's ServiceAccount.
func TestChartDefaultInstallRunsInCluster(t *testing.T) {
	managerMu.Lock()
	t.Cleanup(managerMu.Unlock)

	ic := &chartInCluster{helm: newHelm(t), c: ctrlClient(t), cs: Client(t)}
	// The restricted profile refuses any pod that is not: non-root,
	// seccomp RuntimeDefault, all capabilities dropped, no privilege escalation.
	ic.ns = NewNamespace(t, "meshrev-psa", map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	t.Cleanup(func() { chartCleanup(t, ic.c, ic.ns, ic.installed) })
	ic.helm.run(t, "install", chartRelease, ic.helm.chart, "-n", ic.ns, "--wait", "--timeout", "2m")
	ic.installed = true

	t.Run("the manager Deployment is admitted as restricted and spreads over nodes", ic.deploymentRestricted)
	t.Run("the PodDisruptionBudget allows one disruption and the Service has both replicas", ic.pdbAndService)
	t.Run("the real binary runs with the Deployment's arguments and the chart's RBAC", ic.binaryAsDeployed)
	t.Run("helm uninstall removes the in-cluster manager", ic.uninstall)
}

func (ic *chartInCluster) deploymentRestricted(t *testing.T) {
	ctx := t.Context()
	// helm --wait waits for the ReplicaSet's ready pods; the Deployment's
	// status follows a moment later.
	d := &appsv1.Deployment{}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := ic.cs.AppsV1().Deployments(ic.ns).Get(ctx, "meshrev-manager", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		d = got
		return d.Status.AvailableReplicas == 2, nil
	})
	require.NoError(t, err, "the manager Deployment has 2 available replicas (status %+v)", d.Status)
	pods, err := ic.cs.CoreV1().Pods(ic.ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
	require.NoError(t, err)
	require.Len(t, pods.Items, 2)
	assert.NotEqual(t, pods.Items[0].Spec.NodeName, pods.Items[1].Spec.NodeName, "preferred anti-affinity on kubernetes.io/hostname")
	for _, p := range pods.Items {
		assert.Empty(t, p.Labels[revisions.LabelRevision], "meshrev's own pods are never injected")
	}
	// The namespace really enforces the profile: an ordinary pod is refused.
	_, err = ic.cs.CoreV1().Pods(ic.ns).Create(ctx, testPod("unrestricted", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "violates PodSecurity \"restricted:latest\"")
}

func (ic *chartInCluster) pdbAndService(t *testing.T) {
	ctx := t.Context()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		pdb, err := ic.cs.PolicyV1().PodDisruptionBudgets(ic.ns).Get(ctx, "meshrev-manager", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return pdb.Status.CurrentHealthy == 2 && pdb.Status.DisruptionsAllowed == 1, nil
	})
	require.NoError(t, err, "PodDisruptionBudget status")
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := ic.cs.DiscoveryV1().EndpointSlices(ic.ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=meshrev-webhook"})
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
}

// binaryAsDeployed runs meshrev-manager here with the Deployment's
// arguments and a token of the chart's ServiceAccount: it gets ready, manages
// its certificates, and its controller reports the Mesh, refused nothing.
func (ic *chartInCluster) binaryAsDeployed(t *testing.T) {
	ctx := t.Context()
	logs := ic.runAsDeployed(t)

	// Self-managed certificates: the Secret exists and both
	// configurations carry its CA.
	var sec corev1.Secret
	require.NoError(t, ic.c.Get(ctx, client.ObjectKey{Namespace: ic.ns, Name: "meshrev-webhook-tls"}, &sec))
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, cc := range webhookClientConfigs(t, ic.c) {
			if !bytes.Equal(cc.CABundle, sec.Data["ca.crt"]) {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(t, err, "caBundle patched into every webhook")
	for _, cc := range webhookClientConfigs(t, ic.c) {
		require.NotNil(t, cc.Service)
		assert.Equal(t, ic.ns, cc.Service.Namespace)
	}
	// The controller (leader) reports the Mesh the chart created.
	waitMeshStatus(t, ic.c, "observed by the controller", func(m *v1alpha1.Mesh) bool {
		return m.Status.ObservedGeneration == m.Generation && m.Status.Phase == v1alpha1.PhaseStable
	})
	assert.NotContains(t, logs.String(), `is forbidden: User "system:serviceaccount:`, "the manager was refused something")
}

// runAsDeployed starts the meshrev-manager binary with the arguments of the
// chart's Deployment and waits until its readyz answers; it is interrupted
// (and must exit cleanly) when the test ends. It returns the output so far.
func (ic *chartInCluster) runAsDeployed(t *testing.T) *bytes.Buffer {
	d, err := ic.cs.AppsV1().Deployments(ic.ns).Get(t.Context(), "meshrev-manager", metav1.GetOptions{})
	require.NoError(t, err)
	container := d.Spec.Template.Spec.Containers[0]
	require.Equal(t, "POD_NAMESPACE", container.Env[0].Name)
	args := make([]string, 0, len(container.Args)+8)
	for _, a := range container.Args {
		// As the kubelet expands $(VAR) from the container's env.
		args = append(args, strings.ReplaceAll(a, "$(POD_NAMESPACE)", ic.ns))
	}
	// Only what a pod has and this process has not: its token, a writable
	// cert dir, free local ports (later flags win).
	ports := freeLocalPorts(t, 3)
	kubeconfig := serviceAccountKubeconfig(t, ic.cs, ic.ns, chartServiceAccount)
	args = append(args, "--kubeconfig="+kubeconfig, "--cert-dir="+t.TempDir(), "--webhook-host=127.0.0.1",
		"--webhook-port="+strconv.Itoa(ports[0]), "--metrics-bind-address=127.0.0.1:"+strconv.Itoa(ports[1]),
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(ports[2]))

	logs := &bytes.Buffer{}
	cmd := exec.Command(managerBinary(t), args...)
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ic.ns)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
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
	})

	readyz := "http://127.0.0.1:" + strconv.Itoa(ports[2]) + "/readyz"
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("meshrev-manager exited: %v", err)
		default:
		}
		_, err := httpGet(ctx, readyz)
		return err == nil, nil
	})
	require.NoError(t, err, "readyz of the manager started with the Deployment's arguments")
	return logs
}

func (ic *chartInCluster) uninstall(t *testing.T) {
	ctx := t.Context()
	ic.helm.run(t, "uninstall", chartRelease, "-n", ic.ns, "--wait")
	ic.installed = false
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := ic.cs.CoreV1().Pods(ic.ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=meshrev"})
		return err == nil && len(pods.Items) == 0, err
	})
	require.NoError(t, err, "the manager pods are gone")
	for _, name := range []string{"meshrev-webhook"} {
		_, err := ic.cs.CoreV1().Services(ic.ns).Get(ctx, name, metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "Service %s: %v", name, err)
	}
	_, err = ic.cs.PolicyV1().PodDisruptionBudgets(ic.ns).Get(ctx, "meshrev-manager", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "PodDisruptionBudget: %v", err)
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
