//go:build e2e

package e2e

// The demo's Bookinfo (with its HTTP probes) and its Job, through the real
// API server and the manager: probes rewritten to the agent, and sidecarMode
// Auto reading the nodes' kubelet versions from the manager's cache.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
)

// The agent's status port and the prefix of the probe paths it serves.
const (
	agentPort      = 15020
	appHealthPath  = "/app-health/"
	envAppProbers  = "ISTIO_KUBE_APP_PROBERS"
	demoBookinfo   = "../../hack/demo/bookinfo.yaml"
	demoJob        = "../../hack/demo/job.yaml"
	oldKubelet     = "v1.32.4"
	decisionWithin = 30 * time.Second
)

func TestBookinfoProbesAndJobNativeSidecar(t *testing.T) {
	startManager(t)
	createMesh(t, stableOnly()) // sidecarMode unset: Auto
	ns := NewNamespace(t, "bookinfo-probes", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	objs := createManifests(t, ns, demoBookinfo, demoJob)
	cs := Client(t)

	var deployments []*appsv1.Deployment
	var job *batchv1.Job
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			deployments = append(deployments, o)
		case *batchv1.Job:
			job = o
		}
	}
	require.Len(t, deployments, 6, "Bookinfo's six Deployments")
	require.NotNil(t, job, "the demo's Job")

	t.Run("every Bookinfo pod's HTTP probes go to the agent, which holds the originals", func(t *testing.T) {
		for _, d := range deployments {
			waitDeploymentComplete(t, cs, ns, d.Name)
			pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
			require.NoError(t, err)
			require.NotEmpty(t, pods.Items, "pods of %s", d.Name)
			for i := range pods.Items {
				p := &pods.Items[i]
				assert.Equal(t, "1-22-6", p.Labels[revisions.LabelRevision], "pod %s", p.Name)
				proxy := requireNativeSidecar(t, p)
				assertProbesRewritten(t, d.Spec.Template.Spec.Containers, p, proxy)
			}
		}
	})

	t.Run("the Job's pod has istio-proxy as a native sidecar on the 1.36 nodes, and the Job completes", func(t *testing.T) {
		pods := injWaitPods(t, ns, "job-name="+job.Name, 1)
		requireNativeSidecar(t, &pods[0])
		// kwok completes a Job's pod by marking its containers terminated,
		// whatever its sidecar: this shows the Job runs through, not that a
		// classic sidecar would block it.
		err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			var j batchv1.Job
			if err := ctrlClient(t).Get(ctx, client.ObjectKeyFromObject(job), &j); err != nil {
				return false, err
			}
			return slices.ContainsFunc(j.Status.Conditions, func(c batchv1.JobCondition) bool {
				return c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue
			}), nil
		})
		require.NoError(t, err, "Job %s did not complete", job.Name)
	})

	t.Run("a node with a 1.32 kubelet turns Auto to classic sidecars until it leaves", func(t *testing.T) {
		c := ctrlClient(t)
		for _, n := range Env().NodeNames {
			var node corev1.Node
			require.NoError(t, c.Get(t.Context(), client.ObjectKey{Name: n}, &node))
			require.True(t, revisions.KubeletRunsNativeSidecars(node.Status.NodeInfo.KubeletVersion),
				"node %s reports kubelet %q", n, node.Status.NodeInfo.KubeletVersion)
		}
		jobPod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "job-probe", Labels: job.Spec.Template.Labels},
			Spec:       *job.Spec.Template.Spec.DeepCopy(),
		}
		native := func(p *corev1.Pod) bool {
			return slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "istio-proxy" })
		}

		old := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "old-kubelet-" + rand.String(5)},
			// Nothing is scheduled there: only its kubelet version matters.
			Spec:   corev1.NodeSpec{Unschedulable: true},
			Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: oldKubelet}},
		}
		require.NoError(t, c.Create(t.Context(), old))
		t.Cleanup(func() { deleteIfExists(t, c, old) })
		var got corev1.Node
		require.NoError(t, c.Get(t.Context(), client.ObjectKeyFromObject(old), &got))
		require.Equal(t, oldKubelet, got.Status.NodeInfo.KubeletVersion, "the API server keeps the status a node is created with")

		p := waitSidecarMode(t, ns, jobPod, native, false)
		assert.Contains(t, containerNames(p.Spec.Containers), "istio-proxy", "classic: istio-proxy among the containers")
		assert.Equal(t, []string{"istio-init"}, containerNames(p.Spec.InitContainers))

		require.NoError(t, c.Delete(t.Context(), old))
		p = waitSidecarMode(t, ns, jobPod, native, true)
		requireNativeSidecar(t, p)
	})
}

// waitSidecarMode dry-runs pod until its injected form is native (or not):
// the manager learns of node changes from its informer, a moment later.
func waitSidecarMode(t *testing.T, ns string, pod *corev1.Pod, native func(*corev1.Pod) bool, want bool) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, decisionWithin, true, func(ctx context.Context) (bool, error) {
		p, _, err := dryRunPodCtx(ctx, ns, pod)
		if err != nil {
			return false, err
		}
		got = p
		return native(p) == want, nil
	})
	require.NoError(t, err, "the injector did not turn to native=%t within %s", want, decisionWithin)
	return got
}

// requireNativeSidecar checks that p's istio-proxy is a native sidecar (an
// init container with restartPolicy Always, after istio-init) and returns it.
func requireNativeSidecar(t *testing.T, p *corev1.Pod) *corev1.Container {
	t.Helper()
	assert.NotContains(t, containerNames(p.Spec.Containers), "istio-proxy", "pod %s: istio-proxy is not a classic container", p.Name)
	names := containerNames(p.Spec.InitContainers)
	i := slices.Index(names, "istio-proxy")
	require.GreaterOrEqual(t, i, 0, "pod %s: istio-proxy among the init containers %v", p.Name, names)
	assert.Equal(t, []string{"istio-init", "istio-proxy"}, names[:i+1], "pod %s: istio-init, then istio-proxy", p.Name)
	proxy := &p.Spec.InitContainers[i]
	require.NotNil(t, proxy.RestartPolicy, "pod %s: istio-proxy has a restartPolicy", p.Name)
	assert.Equal(t, corev1.ContainerRestartPolicyAlways, *proxy.RestartPolicy, "pod %s", p.Name)
	return proxy
}

// appProber is the part of an ISTIO_KUBE_APP_PROBERS entry checked here.
type appProber struct {
	HTTPGet *corev1.HTTPGetAction `json:"httpGet"`
}

// assertProbesRewritten checks that every HTTP readiness and liveness probe
// of the template's containers (orig) reaches p as a probe of the agent
// (:15020/app-health/<container>/readyz|livez), and that the agent's
// ISTIO_KUBE_APP_PROBERS holds the original for each.
func assertProbesRewritten(t *testing.T, orig []corev1.Container, p *corev1.Pod, proxy *corev1.Container) {
	t.Helper()
	var probers map[string]appProber
	require.NoError(t, json.Unmarshal([]byte(injEnvValue(*proxy, envAppProbers)), &probers), "pod %s: %s", p.Name, envAppProbers)
	checked := 0
	for _, want := range orig {
		i := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == want.Name })
		require.GreaterOrEqual(t, i, 0, "pod %s keeps container %s", p.Name, want.Name)
		got := p.Spec.Containers[i]
		for kind, pair := range map[string][2]*corev1.Probe{"readyz": {want.ReadinessProbe, got.ReadinessProbe}, "livez": {want.LivenessProbe, got.LivenessProbe}} {
			w, g := pair[0], pair[1]
			if w == nil || w.HTTPGet == nil {
				continue
			}
			path := appHealthPath + want.Name + "/" + kind
			require.NotNil(t, g, "pod %s container %s keeps its %s probe", p.Name, want.Name, kind)
			require.NotNil(t, g.HTTPGet, "pod %s container %s %s", p.Name, want.Name, kind)
			assert.Equal(t, agentPort, g.HTTPGet.Port.IntValue(), "pod %s container %s %s probe port", p.Name, want.Name, kind)
			assert.Equal(t, path, g.HTTPGet.Path, "pod %s container %s %s probe path", p.Name, want.Name, kind)
			assert.Equal(t, w.PeriodSeconds, g.PeriodSeconds, "pod %s container %s %s: timing kept", p.Name, want.Name, kind)
			pr, ok := probers[path]
			if assert.True(t, ok, "pod %s: %s has %s; it has %v", p.Name, envAppProbers, path, probers) && assert.NotNil(t, pr.HTTPGet) {
				assert.Equal(t, w.HTTPGet.Path, pr.HTTPGet.Path, "pod %s: the original path of %s", p.Name, path)
				assert.Equal(t, w.HTTPGet.Port.IntValue(), pr.HTTPGet.Port.IntValue(), "pod %s: the original port of %s", p.Name, path)
			}
			checked++
		}
	}
	assert.Positive(t, checked, "pod %s: the template has HTTP probes to check", p.Name)
}

// createManifests creates the objects of the YAML files in ns (deleted with
// it) and returns them as typed objects.
func createManifests(t *testing.T, ns string, files ...string) []client.Object {
	t.Helper()
	c := ctrlClient(t)
	var out []client.Object
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, "%s", f)
			if onlyComments(doc) {
				continue
			}
			obj, _, err := clientgoscheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			require.NoError(t, err, "%s: %s", f, doc)
			co, ok := obj.(client.Object)
			require.True(t, ok, "%s: %T", f, obj)
			co.SetNamespace(ns)
			err = c.Create(t.Context(), co)
			require.False(t, apierrors.IsAlreadyExists(err), "%s %s exists already", co.GetObjectKind().GroupVersionKind().Kind, co.GetName())
			require.NoError(t, err, "create %s %s", co.GetObjectKind().GroupVersionKind().Kind, co.GetName())
			out = append(out, co)
		}
	}
	return out
}

// onlyComments reports whether a YAML document holds no object.
func onlyComments(doc []byte) bool {
	for line := range strings.SplitSeq(string(doc), "\n") {
		if l := strings.TrimSpace(line); l != "" && l != "---" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}
