//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/cli"
	"github.com/meshrev/meshrev/internal/devcluster"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// The CLI tests build the meshrev binary and drive the canary upgrade of the
// walkthrough with it, as a person would, against the real manager of the
// harness (startManager: manager.Run in-process, the chart's webhook
// configurations pointed at it by URL): every assertion is on the exit code,
// what the CLI printed, and what changed in the cluster.

const cliTimeout = 3 * time.Minute

// cliBinary builds cmd/meshrev into the test's temp dir under the kubectl
// plugin name, so that the tests also run it as "kubectl meshrev".
func cliBinary(t *testing.T) string { return buildBinary(t, "./cmd/meshrev", "kubectl-meshrev") }

// buildBinary builds the main package pkg of the repository into the test's
// temp dir as name.
func buildBinary(t *testing.T, pkg, name string) string {
	t.Helper()
	root, err := devcluster.RepoRoot()
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), name)
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, pkg)
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build %s:\n%s", pkg, out)
	return bin
}

// cliResult is one run of the CLI.
type cliResult struct {
	code           int
	stdout, stderr string
}

// meshrev runs the CLI against the e2e cluster with stdin not a terminal.
func meshrev(t *testing.T, bin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", Env().KubeconfigPath}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, &stderr, nil
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "KUBECONFIG=") })
	err := cmd.Run()
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run meshrev %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("$ meshrev %s  (exit %d)\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// ok runs the CLI and requires success.
func (r cliResult) ok(t *testing.T) cliResult {
	t.Helper()
	require.Equal(t, 0, r.code, "meshrev failed:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	return r
}

// cliCreateMesh publishes stable 1.22.6 with a control plane, as the chart
// does, and waits until the controller reports its control plane Ready.
func cliCreateMesh(t *testing.T) {
	t.Helper()
	createMesh(t, v1alpha1.MeshSpec{
		Revisions: []v1alpha1.Revision{{Name: "1-22-6", Version: "1.22.6",
			ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.22.6", Replicas: ptr.To[int32](1)}}},
		Stable: "1-22-6",
	})
	cliWaitMesh(t, "stable 1-22-6 reported with a Ready control plane", func(m *v1alpha1.Mesh) bool {
		return cliControlPlaneReady(m, "1-22-6")
	})
}

// cliMesh returns the current Mesh.
func cliMesh(t *testing.T) *v1alpha1.Mesh {
	t.Helper()
	var m v1alpha1.Mesh
	require.NoError(t, ctrlClient(t).Get(t.Context(), client.ObjectKey{Name: v1alpha1.MeshName}, &m))
	return &m
}

// cliWaitMesh polls the Mesh until cond holds.
func cliWaitMesh(t *testing.T, what string, cond func(m *v1alpha1.Mesh) bool) {
	t.Helper()
	c := ctrlClient(t)
	var last v1alpha1.Mesh
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, cliTimeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &last); err != nil {
			return false, nil
		}
		return cond(&last), nil
	})
	require.NoError(t, err, "waiting for the Mesh: %s; last spec %+v status %+v", what, last.Spec, last.Status)
}

func cliControlPlaneReady(m *v1alpha1.Mesh, rev string) bool {
	if m.Status.ObservedGeneration < m.Generation {
		return false
	}
	for _, rs := range m.Status.Revisions {
		if rs.Name == rev {
			return rs.ControlPlaneReady
		}
	}
	return false
}

// cliNamespaceLabel returns one label of a namespace.
func cliNamespaceLabel(t *testing.T, ns, key string) string {
	t.Helper()
	n, err := Client(t).CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
	require.NoError(t, err)
	return n.Labels[key]
}

// cliRevisionsOf waits until a Deployment has rolled out and returns the
// revisions its pods run, checked against their istio-proxy image.
func cliRevisionsOf(t *testing.T, ns, name string) []string {
	t.Helper()
	var revs []string
	for _, p := range waitRollout(t, ns, name) {
		rev := p.Labels[revisions.LabelRevision]
		if rev != "" {
			v, err := revisions.VersionFromRevisionName(rev)
			require.NoError(t, err)
			// A native sidecar is an init container; a gateway's proxy keeps its own name.
			all := append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...)
			idx := slices.IndexFunc(all, func(c corev1.Container) bool { return strings.HasSuffix(c.Image, ":"+v.String()) })
			require.GreaterOrEqual(t, idx, 0, "pod %s/%s is labelled %s but no container runs proxy %s: %+v", ns, p.Name, rev, v, all)
		}
		revs = append(revs, rev)
	}
	return revs
}

// cliWaitGone waits until a control-plane Deployment is deleted.
func cliWaitGone(t *testing.T, ns, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, cliTimeout, true, func(ctx context.Context) (bool, error) {
		_, err := Client(t).AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "deployment %s/%s was not deleted", ns, name)
}

// cliStatus runs "meshrev status -o json".
func cliStatus(t *testing.T, bin string) cli.StatusView {
	t.Helper()
	r := meshrev(t, bin, "status", "-o", "json").ok(t)
	var v cli.StatusView
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v), "status -o json:\n%s", r.stdout)
	return v
}

// cliWaitDataPlane polls "meshrev dataplane status -o json" until cond holds.
func cliWaitDataPlane(t *testing.T, bin, what string, cond func(v cli.DataPlaneView) bool) cli.DataPlaneView {
	t.Helper()
	var v cli.DataPlaneView
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, cliTimeout, true, func(context.Context) (bool, error) {
		r := meshrev(t, bin, "dataplane", "status", "-o", "json").ok(t)
		v = cli.DataPlaneView{}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &v))
		return !v.Stale && cond(v), nil
	})
	require.NoError(t, err, "the data-plane report never showed %s; last: %+v", what, v)
	return v
}

func cliOutdated(v cli.DataPlaneView, ns string) []string {
	var out []string
	for _, w := range v.Workloads {
		if w.Namespace == ns {
			name := w.Name
			if w.Gateway {
				name += " (gateway)"
			}
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func TestCLIWalksTheCanaryUpgradeToTheEnd(t *testing.T) {
	startManager(t)
	bin := cliBinary(t)
	cliCreateMesh(t)

	app := NewNamespace(t, "cli-seed", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	edge := NewNamespace(t, "cli-edge", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	for _, name := range []string{"reviews-v1", "reviews-v2", "productpage"} {
		applyDeployment(t, app, simpleDeployment(name, 1, nil))
	}
	applyDeployment(t, edge, simpleDeployment("ingressgateway", 1, map[string]string{revisions.LabelIstio: "ingressgateway"}))
	for _, name := range []string{"reviews-v1", "reviews-v2", "productpage"} {
		require.Equal(t, []string{"1-22-6"}, cliRevisionsOf(t, app, name), "%s starts on stable 1-22-6", name)
	}
	require.Equal(t, []string{"1-22-6"}, cliRevisionsOf(t, edge, "ingressgateway"))

	help := meshrev(t, bin, "--help").ok(t)
	assert.Contains(t, help.stdout, `Run "kubectl meshrev status"`, "installed as kubectl-meshrev, help names the kubectl plugin")

	st := meshrev(t, bin, "status").ok(t)
	assert.Contains(t, st.stdout, "phase Stable")
	assert.Contains(t, st.stdout, "┌─ 1-22-6 ")
	assert.NotContains(t, st.stdout, "\x1b[", "no colour when stdout is not a terminal")

	// The skip policy is the server's: the CLI prints its refusal.
	refused := meshrev(t, bin, "canary", "deploy", "1.24.0")
	assert.Equal(t, 1, refused.code)
	assert.Contains(t, refused.stderr, `Error: canary deploy 1-24-0: admission webhook "mesh.meshrev.io" denied the request`)
	assert.Contains(t, refused.stderr, "the skip policy allows at most one minor version per upgrade")
	assert.Empty(t, cliMesh(t).Spec.Canary, "a refused step changes nothing")
	assert.Len(t, cliMesh(t).Spec.Revisions, 1)

	// Step 2: deploy the canary control plane.
	dep := meshrev(t, bin, "canary", "deploy", "1.23.6").ok(t)
	assert.Contains(t, dep.stdout, "canary 1-23-6 (version 1.23.6) deployed beside stable 1-22-6")
	m := cliMesh(t)
	assert.Equal(t, "1-23-6", m.Spec.Canary)
	canary := revisions.FindRevision(&m.Spec, "1-23-6")
	require.NotNil(t, canary)
	assert.Equal(t, "1.23.6", canary.Version)
	require.NotNil(t, canary.ControlPlane, "the canary mirrors stable's control plane")
	assert.Equal(t, "docker.io/istio/pilot:1.23.6", canary.ControlPlane.Image)
	cliWaitMesh(t, "canary 1-23-6 control plane Ready", func(m *v1alpha1.Mesh) bool { return cliControlPlaneReady(m, "1-23-6") })

	// Step 3: switch a namespace, redeploy a workload, verify it.
	sw := meshrev(t, bin, "namespace", "switch", app, "--to", "canary").ok(t)
	assert.Contains(t, sw.stdout, "new pods get revision 1-23-6")
	assert.Empty(t, cliNamespaceLabel(t, app, revisions.LabelInjection), "switch drops istio-injection")
	assert.Equal(t, "canary", cliNamespaceLabel(t, app, revisions.LabelRev))

	ci := meshrev(t, bin, "check-inject", "-n", app, "-o", "json").ok(t)
	var decision cli.CheckInjectView
	require.NoError(t, json.Unmarshal([]byte(ci.stdout), &decision))
	assert.Equal(t, "1-23-6", decision.Revision)
	assert.Equal(t, revisions.ReasonNamespaceRevisionLabel, decision.Reason)

	rd := meshrev(t, bin, "redeploy", "-n", app, "reviews-v2", "--wait").ok(t)
	assert.Contains(t, rd.stdout, "[1/1] deployment/reviews-v2 in "+app+" rolled out")
	assert.Equal(t, []string{"1-23-6"}, cliRevisionsOf(t, app, "reviews-v2"), "the redeployed workload runs the canary")
	assert.Equal(t, []string{"1-22-6"}, cliRevisionsOf(t, app, "reviews-v1"), "the others stay on stable until redeployed")

	meshrev(t, bin, "verify", "-n", app, "reviews-v2").ok(t)
	whole := meshrev(t, bin, "verify", "-n", app)
	assert.Equal(t, 1, whole.code, "pods not yet redeployed fail verification")
	assert.Contains(t, whole.stdout, "runs 1-22-6 but should run 1-23-6; redeploy it")
	assert.Contains(t, whole.stdout, "reviews-v1-")

	st = meshrev(t, bin, "status").ok(t)
	assert.Contains(t, st.stdout, "phase CanaryDeployed")
	assert.Contains(t, st.stdout, "istio.io/rev=canary")

	// Step 4: promote, which needs confirmation.
	unconfirmed := meshrev(t, bin, "promote")
	assert.Equal(t, 1, unconfirmed.code)
	assert.Contains(t, unconfirmed.stderr, "pass --yes to confirm")
	assert.Equal(t, "1-23-6", cliMesh(t).Spec.Canary, "an unconfirmed promote changes nothing")

	pr := meshrev(t, bin, "promote", "--yes").ok(t)
	assert.Contains(t, pr.stdout, "promoted 1-23-6 to stable (was 1-22-6)")
	m = cliMesh(t)
	assert.Equal(t, "1-23-6", m.Spec.Stable)
	assert.Empty(t, m.Spec.Canary)
	assert.NotContains(t, m.Annotations, revisions.AnnotationForce)
	cliWaitMesh(t, "namespace relabelled to stable", func(*v1alpha1.Mesh) bool { return cliNamespaceLabel(t, app, revisions.LabelRev) == "stable" })

	// Step 5: upgrade the data plane from the controller's report.
	report := cliWaitDataPlane(t, bin, "the outdated workloads and the gateway", func(v cli.DataPlaneView) bool {
		return slices.Equal(cliOutdated(v, app), []string{"productpage", "reviews-v1"}) &&
			slices.Equal(cliOutdated(v, edge), []string{"ingressgateway (gateway)"})
	})
	assert.Equal(t, "1-23-6", report.Stable)
	assert.Equal(t, "1-22-6", report.Previous)

	up := meshrev(t, bin, "dataplane", "upgrade", "-n", app, "--all", "--batch", "1", "--wait").ok(t)
	assert.Contains(t, up.stdout, "[1/2]")
	assert.Contains(t, up.stdout, "[2/2]")
	for _, name := range []string{"reviews-v1", "reviews-v2", "productpage"} {
		assert.Equal(t, []string{"1-23-6"}, cliRevisionsOf(t, app, name), "%s runs the new stable", name)
	}
	assert.Equal(t, []string{"1-22-6"}, cliRevisionsOf(t, edge, "ingressgateway"), "--all leaves gateways alone")

	// Unpublishing while the gateway still runs the old revision is refused.
	early := meshrev(t, bin, "unpublish", "--yes")
	assert.Equal(t, 1, early.code)
	assert.Contains(t, early.stderr, "Error: unpublish 1-22-6: admission webhook")
	assert.Contains(t, early.stderr, "still run the sidecar of 1-22-6")
	assert.Contains(t, early.stderr, edge+"/ingressgateway-")
	assert.Len(t, cliMesh(t).Spec.Revisions, 2)

	meshrev(t, bin, "dataplane", "upgrade", "-n", edge, "--gateways", "--wait").ok(t)
	assert.Equal(t, []string{"1-23-6"}, cliRevisionsOf(t, edge, "ingressgateway"))
	cliWaitDataPlane(t, bin, "nothing outdated", func(v cli.DataPlaneView) bool { return v.Outdated == 0 })
	assert.Equal(t, v1alpha1.PhaseReadyToUnpublish, cliStatus(t, bin).Phase)

	// Step 6: unpublish the old revision.
	un := meshrev(t, bin, "unpublish", "--yes").ok(t)
	assert.Contains(t, un.stdout, "unpublished 1-22-6")
	m = cliMesh(t)
	require.Len(t, m.Spec.Revisions, 1)
	assert.Equal(t, "1-23-6", m.Spec.Revisions[0].Name)
	cliWaitGone(t, controlPlaneNamespace, "istiod-1-22-6")

	final := cliStatus(t, bin)
	assert.Equal(t, v1alpha1.PhaseStable, final.Phase)
	assert.Equal(t, "1-23-6", final.Stable)
	assert.Equal(t, "meshrev canary deploy VERSION", final.Next.Command)
}

func TestCLIRollsBackAndRevokesTheCanary(t *testing.T) {
	startManager(t)
	bin := cliBinary(t)
	cliCreateMesh(t)

	app := NewNamespace(t, "cli-rollback", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	applyDeployment(t, app, simpleDeployment("reviews-v1", 1, nil))
	applyDeployment(t, app, simpleDeployment("reviews-v2", 2, nil))
	require.Equal(t, []string{"1-22-6", "1-22-6"}, cliRevisionsOf(t, app, "reviews-v2"))

	meshrev(t, bin, "canary", "deploy", "1.23.6", "--load-balancer").ok(t)
	canary := revisions.FindRevision(&cliMesh(t).Spec, "1-23-6")
	require.NotNil(t, canary)
	require.NotNil(t, canary.ControlPlane)
	assert.Equal(t, corev1.ServiceTypeLoadBalancer, canary.ControlPlane.ServiceType, "--load-balancer: the seed's new CLB instance")
	cliWaitMesh(t, "canary 1-23-6 control plane Ready", func(m *v1alpha1.Mesh) bool { return cliControlPlaneReady(m, "1-23-6") })
	var svc corev1.Service
	require.NoError(t, ctrlClient(t).Get(t.Context(), client.ObjectKey{Namespace: controlPlaneNamespace, Name: "istiod-1-23-6"}, &svc))
	assert.Equal(t, corev1.ServiceTypeLoadBalancer, svc.Spec.Type)

	// A second canary while one is deployed is refused by the server.
	second := meshrev(t, bin, "canary", "deploy", "1.23.7")
	assert.Equal(t, 1, second.code)
	assert.Contains(t, second.stderr, "canary 1-23-6 is already deployed")
	// Deploying the same canary again is a no-op, not an error.
	again := meshrev(t, bin, "canary", "deploy", "1.23.6").ok(t)
	assert.Contains(t, again.stderr, "canary 1-23-6 (version 1.23.6) is already deployed")

	meshrev(t, bin, "namespace", "switch", app, "--to", "canary").ok(t)
	meshrev(t, bin, "redeploy", "-n", app, "deployment/reviews-v2", "--wait").ok(t)
	assert.Equal(t, []string{"1-23-6", "1-23-6"}, cliRevisionsOf(t, app, "reviews-v2"))

	// Revoking while the namespace is on the canary is refused, naming it.
	early := meshrev(t, bin, "revoke", "--yes")
	assert.Equal(t, 1, early.code)
	assert.Contains(t, early.stderr, "Error: revoke 1-23-6: admission webhook")
	assert.Contains(t, early.stderr, app+" (istio.io/rev=canary)")
	assert.Equal(t, "1-23-6", cliMesh(t).Spec.Canary)

	// Roll back: switch back, redeploy, verify, revoke.
	back := meshrev(t, bin, "namespace", "switch", app, "--to", "stable").ok(t)
	assert.Contains(t, back.stdout, "new pods get revision 1-22-6")
	assert.Equal(t, "stable", cliNamespaceLabel(t, app, revisions.LabelRev))
	meshrev(t, bin, "redeploy", "-n", app, "reviews-v2", "--wait").ok(t)
	assert.Equal(t, []string{"1-22-6", "1-22-6"}, cliRevisionsOf(t, app, "reviews-v2"))
	meshrev(t, bin, "verify", "-n", app).ok(t)

	rv := meshrev(t, bin, "revoke", "--yes").ok(t)
	assert.Contains(t, rv.stdout, "revoked canary 1-23-6; stable 1-22-6 serves every namespace again")
	m := cliMesh(t)
	assert.Empty(t, m.Spec.Canary)
	require.Len(t, m.Spec.Revisions, 1)
	assert.Equal(t, "1-22-6", m.Spec.Revisions[0].Name)
	cliWaitGone(t, controlPlaneNamespace, "istiod-1-23-6")

	st := cliStatus(t, bin)
	assert.Equal(t, v1alpha1.PhaseStable, st.Phase)
	require.Len(t, st.Revisions, 1)
	assert.Equal(t, []string{"stable"}, st.Revisions[0].Tags)
	nothing := meshrev(t, bin, "revoke", "--yes")
	assert.Equal(t, 1, nothing.code)
	assert.Contains(t, nothing.stderr, "no canary is deployed, nothing to revoke")
}

// cliDeployment creates a one-replica Deployment; with stuck its pods can
// never be scheduled (no node has the label), so its rollouts never finish.
func cliDeployment(t *testing.T, ns, name string, stuck bool, progressDeadline int32) {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas:                ptr.To[int32](1),
			ProgressDeadlineSeconds: ptr.To(progressDeadline),
			Selector:                &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
	if stuck {
		d.Spec.Template.Spec.NodeSelector = map[string]string{"e2e.meshrev.io/node": "nowhere"}
	}
	_, err := Client(t).AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{})
	require.NoError(t, err, "create deployment %s/%s", ns, name)
}

func TestCLIWaitStopsAtTheRolloutThatFails(t *testing.T) {
	bin := cliBinary(t)
	ns := NewNamespace(t, "cli-wait", nil)
	cliDeployment(t, ns, "web", false, 600)
	cliDeployment(t, ns, "stuck", true, 2)
	cliDeployment(t, ns, "slow", true, 600)

	// web rolls out; stuck exceeds its progress deadline: the wait stops
	// there and names it.
	r := meshrev(t, bin, "redeploy", "-n", ns, "web", "deployment/stuck", "--wait", "--timeout", "2m")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "deployment/web in "+ns+" restarted")
	assert.Contains(t, r.stdout, "deployment/stuck in "+ns+" restarted")
	assert.Contains(t, r.stdout, "deployment/web in "+ns+" rolled out")
	assert.Contains(t, r.stderr, "Error: redeploy: deployment/stuck in "+ns+": rollout failed: deployment stuck exceeded its progress deadline")

	// Both workloads carry the annotation kubectl rollout restart sets.
	for _, name := range []string{"web", "stuck"} {
		d, err := Client(t).AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
		require.NoError(t, err)
		at, err := time.Parse(time.RFC3339, d.Spec.Template.Annotations[revisions.AnnotationRestartedAt])
		require.NoError(t, err, "%s's pod template carries %s as RFC 3339", name, revisions.AnnotationRestartedAt)
		assert.WithinDuration(t, time.Now(), at, 5*time.Minute)
	}

	// slow never finishes but has not failed either: --timeout ends the wait.
	r = meshrev(t, bin, "redeploy", "-n", ns, "slow", "--wait", "--timeout", "3s")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "Error: redeploy: timed out waiting for deployment/slow in "+ns)
	assert.Contains(t, r.stderr, "0 of 1 workloads rolled out")

	// A workload that does not exist is named.
	r = meshrev(t, bin, "redeploy", "-n", ns, "statefulset/nothing")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "restart statefulset/nothing in "+ns)
	assert.Contains(t, r.stderr, "not found")
}

func TestCLIForceOverridesWhatTheServerLetsOverride(t *testing.T) {
	startManager(t)
	bin := cliBinary(t)
	cliCreateMesh(t)

	app := NewNamespace(t, "cli-force", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	applyDeployment(t, app, simpleDeployment("reviews-v1", 1, nil))
	require.Equal(t, []string{"1-22-6"}, cliRevisionsOf(t, app, "reviews-v1"))

	meshrev(t, bin, "canary", "deploy", "1.23.6").ok(t)
	cliWaitMesh(t, "canary 1-23-6 control plane Ready", func(m *v1alpha1.Mesh) bool { return cliControlPlaneReady(m, "1-23-6") })
	meshrev(t, bin, "promote", "--yes").ok(t)

	// reviews-v1 still runs 1-22-6: refused, then forced.
	refused := meshrev(t, bin, "unpublish", "--yes")
	assert.Equal(t, 1, refused.code)
	assert.Contains(t, refused.stderr, "meshrev unpublish --force")
	assert.Len(t, cliMesh(t).Spec.Revisions, 2)

	forced := meshrev(t, bin, "unpublish", "--yes", "--force").ok(t)
	assert.Contains(t, forced.stdout, "unpublished 1-22-6")
	assert.Contains(t, forced.stderr, "Warning: ", "the server's admission warning is shown")
	assert.Contains(t, forced.stderr, "(forced)")
	m := cliMesh(t)
	require.Len(t, m.Spec.Revisions, 1)
	assert.NotContains(t, m.Annotations, revisions.AnnotationForce, "the override does not outlive the step it was given for")

	// The pod that lost its control plane fails verification until redeployed.
	stale := meshrev(t, bin, "verify", "-n", app)
	assert.Equal(t, 1, stale.code)
	assert.Contains(t, stale.stdout, "runs 1-22-6 but should run 1-23-6")
	meshrev(t, bin, "redeploy", "-n", app, "reviews-v1", "--wait").ok(t)
	meshrev(t, bin, "verify", "-n", app, "-o", "json").ok(t)
}
