//go:build e2e

package e2e

// A real istiod: Istio's pilot-discovery, built from the istio.io/istio
// module whose charts the helm tests install, run as a local process against
// the local cluster as the canary revision, with nothing but what the
// revision's chart release installed.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/internal/devcluster"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// pilotReadyTimeout bounds pilot-discovery's start: informers of every
// resource it watches, its CA, its certificates.
const pilotReadyTimeout = 3 * time.Minute

// pilotDiscoveryBinary returns the pinned pilot-discovery of the binary cache.
func pilotDiscoveryBinary(t *testing.T) string {
	t.Helper()
	if b := Env().Binaries; b != nil && b.PilotDiscovery != "" {
		return b.PilotDiscovery
	}
	// Starting a cluster does not build it; make cluster-build (run by make
	// test first) does, else it is built here once.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	bins, err := devcluster.Build(ctx, devcluster.BuildOptions{PilotDiscovery: true})
	require.NoError(t, err, "build the pinned pilot-discovery binary")
	return bins.PilotDiscovery
}

// pilotProcess is a pilot-discovery running on this machine.
type pilotProcess struct {
	// http is its HTTP listener (readiness, debug): http://127.0.0.1:PORT.
	http string
	// https is its webhook listener (injection): 127.0.0.1:PORT.
	https string
	log   string
	done  chan error
}

// TestPilotDiscoveryServesTheCanaryRevision deploys the canary through
// meshrev's helm control plane, then runs Istio's pilot-discovery as that
// revision, configured only from what the canary's release installed: the
// arguments and environment of the chart's Deployment, a kubeconfig with a
// token of the chart's ServiceAccount (TokenRequest), the mesh config and the
// injection config the chart rendered (istio-<rev> and
// istio-sidecar-injector-<rev>, which istiod reads from the cluster as it
// does in its pod). It becomes ready, its registry lists the services of an
// injected namespace, it serves the chart's mesh config, and its own injector
// sidecar agrees with the sidecar meshrev injected for that revision on
// everything the revision's settings decide.
func TestPilotDiscoveryServesTheCanaryRevision(t *testing.T) {
	bin := pilotDiscoveryBinary(t)
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
	stable, canary := helmRevision("1.22.6", repo), helmRevision("1.23.6", repo)
	e.createMesh(stable)
	_, err := e.update(func(m *v1alpha1.Mesh) {
		m.Spec.Revisions = append(m.Spec.Revisions, canary)
		m.Spec.Canary = canary.Name
	})
	require.NoError(t, err)
	e.waitDeploymentAvailable(lcMeshNamespace, "istiod-"+canary.Name)
	e.waitMesh("canary deployed and ready", func(m *v1alpha1.Mesh) bool {
		r := lcRevisionStatus(m, canary.Name)
		return m.Status.Phase == v1alpha1.PhaseCanaryDeployed && r != nil && r.ControlPlaneReady
	})

	// The workloads of the canary: two Services and a pod meshrev injects.
	app := NewNamespace(t, "pilot-app", map[string]string{revisions.LabelRev: canary.Name})
	services := []string{"reviews", "ratings"}
	for _, name := range services {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: app, Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{
				{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}}},
		}
		require.NoError(t, e.c.Create(t.Context(), svc))
	}
	input := testPod("reviews", map[string]string{"version": "v1"})
	input.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9080, Protocol: corev1.ProtocolTCP}}
	injected, _, err := createPod(t, app, input)
	require.NoError(t, err)
	require.Equal(t, canary.Name, lcSidecarRevision(t, injected), "meshrev injected the canary's sidecar")

	started := time.Now()
	p := startPilot(t, bin, e, canary.Name)

	t.Run("it becomes ready on its chart's credentials and config", func(t *testing.T) {
		err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, pilotReadyTimeout, true, func(ctx context.Context) (bool, error) {
			select {
			case err := <-p.done:
				return false, fmt.Errorf("pilot-discovery exited: %v", err)
			default:
			}
			_, err := httpGet(ctx, p.http+"/ready")
			return err == nil, nil
		})
		require.NoError(t, err, "pilot-discovery /ready; its log ends:\n%s", tailFile(p.log, 60))
		t.Logf("PILOT ready in %s", time.Since(started).Round(100*time.Millisecond))
	})

	t.Run("its registry lists the services of the injected namespace", func(t *testing.T) {
		want := map[string]bool{}
		for _, name := range services {
			want[name+"."+app+".svc.cluster.local"] = true
		}
		want["istiod-"+canary.Name+"."+lcMeshNamespace+".svc.cluster.local"] = true
		var hosts []string
		err := wait.PollUntilContextTimeout(t.Context(), 500*time.Millisecond, lcWaitTimeout, true, func(ctx context.Context) (bool, error) {
			body, err := httpGet(ctx, p.http+"/debug/registryz")
			if err != nil {
				return false, nil
			}
			var list []struct {
				Hostname   string          `json:"hostname"`
				Attributes json.RawMessage `json:"Attributes"`
			}
			if err := json.Unmarshal([]byte(body), &list); err != nil {
				return false, fmt.Errorf("registryz is not a list of services: %w", err)
			}
			hosts = hosts[:0]
			found := 0
			for _, s := range list {
				hosts = append(hosts, s.Hostname)
				if want[s.Hostname] {
					found++
				}
			}
			return found == len(want), nil
		})
		require.NoError(t, err, "registryz lists %v, want all of %v", hosts, want)
	})

	t.Run("it serves the mesh config the chart rendered into istio-"+canary.Name, func(t *testing.T) {
		var cm corev1.ConfigMap
		require.NoError(t, e.c.Get(t.Context(), client.ObjectKey{Namespace: lcMeshNamespace, Name: "istio-" + canary.Name}, &cm))
		var rendered map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(cm.Data["mesh"]), &rendered))
		require.NotEmpty(t, rendered, "the chart's mesh config")
		body, err := httpGet(t.Context(), p.http+"/debug/mesh")
		require.NoError(t, err)
		var served map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &served))
		for _, diff := range subsetDiff("", rendered, served) {
			t.Errorf("mesh config served by pilot-discovery differs from the chart's: %s", diff)
		}
		dc, _ := rendered["defaultConfig"].(map[string]any)
		assert.Equal(t, "istiod-"+canary.Name+"."+lcMeshNamespace+".svc:15012", dc["discoveryAddress"], "the chart's mesh config points sidecars at the canary's istiod")
	})

	t.Run("its injector's sidecar agrees with meshrev's on what the revision decides", func(t *testing.T) {
		fromIstiod := p.inject(t, e, canary.Name, app, input)
		compareSidecars(t, injected, fromIstiod, canary.Name)
	})
}

// startPilot runs pilot-discovery as revision rev with the arguments and
// environment of the Deployment istiod-<rev> its chart installed; only what a
// pod gives a container is replaced: listeners on free ports of 127.0.0.1,
// the downward API, and the in-cluster credentials (a kubeconfig with a
// token of the Deployment's ServiceAccount). It stops when the test ends.
func startPilot(t *testing.T, bin string, e *lcEnv, rev string) *pilotProcess {
	t.Helper()
	ctx := t.Context()
	var dep appsv1.Deployment
	require.NoError(t, e.c.Get(ctx, client.ObjectKey{Namespace: lcMeshNamespace, Name: "istiod-" + rev}, &dep))
	spec := dep.Spec.Template.Spec
	require.NotEmpty(t, spec.Containers)
	container := spec.Containers[0]
	require.Equal(t, "discovery", container.Name)
	sa := spec.ServiceAccountName

	// istiod writes its CA and DNS certificates relative to its working
	// directory (./etc/cacerts, ./var/run/secrets/istio-dns), where no mesh
	// config file exists: it reads istio-<rev> from the cluster, as in its pod.
	dir := t.TempDir()
	// A token of the chart's ServiceAccount from the TokenRequest API, as the
	// kubelet mounts one into the pod.
	kubeconfig := serviceAccountKubeconfig(t, Client(t), lcMeshNamespace, sa)

	ports := freeLocalPorts(t, 6)
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	listeners := map[string]string{
		"--httpAddr": addr(0), "--grpcAddr": addr(1), "--secureGRPCAddr": addr(2),
		"--httpsAddr": addr(3), "--monitoringAddr": addr(4),
	}
	var args []string
	for _, a := range container.Args {
		if name, _, ok := strings.Cut(a, "="); ok && listeners[name] != "" {
			continue // set below
		}
		args = append(args, a)
	}
	for name, value := range listeners {
		args = append(args, name+"="+value)
	}
	args = append(args, "--kubeconfig="+kubeconfig, "--ctrlz_address=127.0.0.1", "--ctrlz_port="+strconv.Itoa(ports[5]),
		"--shutdownDuration=1s")

	env := []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	podName := "istiod-" + rev + "-local"
	for _, v := range container.Env {
		switch {
		case v.Name == "KUBECONFIG":
			env = append(env, "KUBECONFIG="+kubeconfig)
		case v.ValueFrom == nil:
			env = append(env, v.Name+"="+v.Value)
		case v.ValueFrom.FieldRef != nil:
			values := map[string]string{"metadata.name": podName, "metadata.namespace": lcMeshNamespace, "spec.serviceAccountName": sa}
			value, ok := values[v.ValueFrom.FieldRef.FieldPath]
			require.True(t, ok, "env %s of the chart's Deployment: field %s", v.Name, v.ValueFrom.FieldRef.FieldPath)
			env = append(env, v.Name+"="+value)
		case v.ValueFrom.ResourceFieldRef != nil:
			// GOMAXPROCS from the CPU limit: the chart sets none; Go's default.
			t.Logf("pilot-discovery: env %s from %s left to its default", v.Name, v.ValueFrom.ResourceFieldRef.Resource)
		default:
			t.Fatalf("env %s of the chart's Deployment: unsupported source", v.Name)
		}
	}

	logPath := filepath.Join(dir, "pilot-discovery.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, logFile, logFile
	t.Logf("pilot-discovery %s", strings.Join(args, " "))
	require.NoError(t, cmd.Start())
	p := &pilotProcess{http: "http://" + addr(0), https: addr(3), log: logPath, done: make(chan error, 1)}
	exited := make(chan struct{})
	go func() {
		p.done <- cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logFile.Close()
		if t.Failed() {
			t.Logf("pilot-discovery log (last 100 lines of %s):\n%s", logPath, tailFile(logPath, 100))
		}
	})
	return p
}

// inject sends pod (as it was created in ns, before injection) to
// pilot-discovery's own injection webhook, over TLS checked against the CA
// istiod created (secret istio-ca-secret), and returns the pod its patch makes.
func (p *pilotProcess) inject(t *testing.T, e *lcEnv, rev, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	var caSecret corev1.Secret
	require.NoError(t, e.c.Get(ctx, client.ObjectKey{Namespace: lcMeshNamespace, Name: "istio-ca-secret"}, &caSecret), "the CA istiod created")
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caSecret.Data["ca-cert.pem"]), "istio-ca-secret holds a CA certificate")

	in := pod.DeepCopy()
	in.Namespace = ns
	raw, err := json.Marshal(in)
	require.NoError(t, err)
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("pilot-e2e"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Name: in.Name, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	require.NoError(t, err)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "istiod-" + rev + "." + lcMeshNamespace + ".svc", MinVersion: tls.VersionTLS12}}}
	var out admissionv1.AdmissionReview
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, lcWaitTimeout, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+p.https+"/inject", bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Logf("istiod /inject: %v", err)
			return false, nil
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Logf("istiod /inject: %s: %s", resp.Status, data)
			return false, nil
		}
		return true, json.Unmarshal(data, &out)
	})
	require.NoError(t, err, "istiod's injection webhook")
	require.NotNil(t, out.Response)
	require.True(t, out.Response.Allowed, "istiod admitted the pod: %v", out.Response.Result)
	require.NotEmpty(t, out.Response.Patch, "istiod injected the pod")
	patch, err := jsonpatch.DecodePatch(out.Response.Patch)
	require.NoError(t, err)
	patched, err := patch.Apply(raw)
	require.NoError(t, err)
	var got corev1.Pod
	require.NoError(t, json.Unmarshal(patched, &got))
	return &got
}

// knownSidecarDifferences are the istio-proxy env vars where meshrev's
// sidecar may differ from the one istiod's own injector makes for the same
// pod and revision, with the reason. The test logs them when they differ.
// None today: add one only with its reason and a COMPAT.md entry.
var knownSidecarDifferences = map[string]string{}

// jsonEnv are the env vars whose values are JSON: compared as JSON (Istio
// writes PROXY_CONFIG's fields in its proto's order, meshrev sorted).
var jsonEnv = map[string]bool{"PROXY_CONFIG": true, "ISTIO_META_POD_PORTS": true, "ISTIO_KUBE_APP_PROBERS": true}

// compareSidecars compares the sidecar meshrev injected into a pod with the
// one istiod's own injector makes of the same pod as revision rev: the
// istio-proxy image, arguments and environment (JSON values as JSON), where
// it connects (CA_ADDR and PROXY_CONFIG's discoveryAddress), istio-init's
// image and arguments, the injected labels, and the revision and lists of
// sidecar.istio.io/status. meshrev's own metadata (meshrev.io/*, and the keys
// it adds to the status to undo its injection) is not compared.
func compareSidecars(t *testing.T, meshrev, istiod *corev1.Pod, rev string) {
	t.Helper()
	if testing.Verbose() {
		a, _ := yaml.Marshal(meshrev.Spec)
		b, _ := yaml.Marshal(istiod.Spec)
		t.Logf("meshrev's pod spec:\n%s\nistiod's pod spec:\n%s", a, b)
	}
	m, i := podContainer(meshrev, "istio-proxy"), podContainer(istiod, "istio-proxy")
	require.NotNil(t, m, "meshrev injected istio-proxy")
	require.NotNil(t, i, "istiod injected istio-proxy")
	assert.Equal(t, i.Image, m.Image, "istio-proxy image")
	assert.Equal(t, i.Args, m.Args, "istio-proxy args")

	me, ie := envValues(m.Env), envValues(i.Env)
	for _, name := range sortedKeys(ie, me) {
		iv, inIstiod := ie[name]
		mv, inMeshrev := me[name]
		if reason, known := knownSidecarDifferences[name]; known {
			if iv != mv {
				t.Logf("KNOWN DIFFERENCE env %s: istiod %q, meshrev %q (%s)", name, iv, mv, reason)
			}
			continue
		}
		switch {
		case !inMeshrev:
			t.Errorf("env %s=%q of istiod's sidecar is not in meshrev's", name, iv)
		case !inIstiod:
			t.Errorf("env %s=%q of meshrev's sidecar is not in istiod's", name, mv)
		case jsonEnv[name]:
			assert.JSONEq(t, iv, mv, "env %s", name)
		default:
			assert.Equal(t, iv, mv, "env %s", name)
		}
	}
	discovery := "istiod-" + rev + "." + lcMeshNamespace + ".svc:15012"
	assert.Equal(t, discovery, ie["CA_ADDR"], "istiod's sidecar gets certificates from the revision's istiod")
	assert.Equal(t, discovery, me["CA_ADDR"], "meshrev's sidecar gets certificates from the revision's istiod")
	assert.Equal(t, discovery, proxyDiscoveryAddress(t, ie["PROXY_CONFIG"]), "istiod's sidecar connects to the revision's istiod")
	assert.Equal(t, discovery, proxyDiscoveryAddress(t, me["PROXY_CONFIG"]), "meshrev's sidecar connects to the revision's istiod")

	if mi, ii := podContainer(meshrev, "istio-init"), podContainer(istiod, "istio-init"); mi != nil || ii != nil {
		require.NotNil(t, mi, "istio-init in meshrev's pod as in istiod's")
		require.NotNil(t, ii, "istio-init in istiod's pod as in meshrev's")
		assert.Equal(t, ii.Image, mi.Image, "istio-init image")
		assert.Equal(t, ii.Args, mi.Args, "istio-init args")
	}
	for _, key := range []string{"security.istio.io/tlsMode", "service.istio.io/canonical-name", "service.istio.io/canonical-revision"} {
		assert.Equal(t, istiod.Labels[key], meshrev.Labels[key], "label %s", key)
	}
	type status struct {
		Revision       string   `json:"revision"`
		Containers     []string `json:"containers"`
		InitContainers []string `json:"initContainers"`
		Volumes        []string `json:"volumes"`
	}
	var ms, is status
	require.NoError(t, json.Unmarshal([]byte(meshrev.Annotations["sidecar.istio.io/status"]), &ms))
	require.NoError(t, json.Unmarshal([]byte(istiod.Annotations["sidecar.istio.io/status"]), &is))
	assert.Equal(t, rev, is.Revision, "istiod injects as revision %s", rev)
	// A null list is an empty one (Istio writes null for no containers,
	// meshrev []; COMPAT.md's normalisation).
	for _, st := range []*status{&ms, &is} {
		for _, l := range []*[]string{&st.Containers, &st.InitContainers, &st.Volumes} {
			if *l == nil {
				*l = []string{}
			}
		}
	}
	assert.Equal(t, is, ms, "sidecar.istio.io/status")
}

// podContainer returns the container or init container name of pod, or nil.
func podContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// envValues maps each env var to its value, JSON values compacted (Istio's
// template writes some as indented blocks), valueFrom as its JSON without
// the fieldRef apiVersion the API server defaults.
func envValues(env []corev1.EnvVar) map[string]string {
	out := map[string]string{}
	for _, v := range env {
		value := v.Value
		if v.ValueFrom != nil {
			from := v.ValueFrom.DeepCopy()
			if f := from.FieldRef; f != nil && f.APIVersion == "v1" {
				f.APIVersion = "" // the API server's default on the stored pod
			}
			b, _ := json.Marshal(from)
			value = "valueFrom:" + string(b)
		} else if trimmed := strings.TrimSpace(value); strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[") {
			var buf bytes.Buffer
			if json.Compact(&buf, []byte(trimmed)) == nil {
				value = buf.String()
			}
		}
		out[v.Name] = value
	}
	return out
}

func sortedKeys(maps ...map[string]string) []string {
	set := map[string]bool{}
	for _, m := range maps {
		for k := range m {
			set[k] = true
		}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// proxyDiscoveryAddress is the discovery address pilot-agent uses with
// PROXY_CONFIG proxyConfig: its discoveryAddress, else Istio's default.
func proxyDiscoveryAddress(t *testing.T, proxyConfig string) string {
	t.Helper()
	var pc struct {
		DiscoveryAddress string `json:"discoveryAddress"`
	}
	if proxyConfig != "" {
		require.NoError(t, json.Unmarshal([]byte(proxyConfig), &pc), "PROXY_CONFIG %s", proxyConfig)
	}
	if pc.DiscoveryAddress == "" {
		return "istiod.istio-system.svc:15012"
	}
	return pc.DiscoveryAddress
}

// subsetDiff lists the paths where want (a decoded YAML or JSON document)
// has a value that got does not have.
func subsetDiff(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %v", path, got)}
		}
		var out []string
		for k, v := range w {
			out = append(out, subsetDiff(path+"."+k, v, g[k])...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: want %v, got %v", path, w, got)}
		}
		var out []string
		for i := range w {
			out = append(out, subsetDiff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return []string{fmt.Sprintf("%s: want %v, got %v", path, want, got)}
		}
		return nil
	}
}
