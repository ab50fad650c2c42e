package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// FuzzServeInject feeds arbitrary pod bytes, under combinations of namespace
// and pod labels, through the whole handler. Its seed corpus
// (testdata/fuzz/FuzzServeInject) runs in every plain go test. It checks:
// no panic; HTTP 400 when the review is not JSON (or not an
// AdmissionReview), else a well-formed AdmissionReview; a
// refusal carries a message and no patch; a patch applies cleanly to the
// pod, keeps a Pod a Pod, and re-sending the result changes nothing.
func FuzzServeInject(f *testing.F) {
	f.Add([]byte(plainPod), uint8(1), uint8(0))
	// The per-pod paths of Istio compatibility: probes and hooks of every
	// kind, annotations (valid and not), native sidecars, the pod's own
	// istio-proxy, and a pod Istio's own injector injected.
	f.Add([]byte(`{"metadata":{"name":"p","annotations":{"sidecar.istio.io/nativeSidecar":"true","traffic.sidecar.istio.io/excludeInboundPorts":"9443","sidecar.istio.io/proxyCPU":"50m","prometheus.io/port":"9090","proxy.istio.io/config":"holdApplicationUntilProxyStarts: true"}},"spec":{"initContainers":[{"name":"side","image":"s","restartPolicy":"Always","readinessProbe":{"tcpSocket":{"port":81}}}],"containers":[{"name":"app","image":"a","ports":[{"name":"http","containerPort":8080}],"livenessProbe":{"httpGet":{"path":"/l","port":"http"}},"readinessProbe":{"grpc":{"port":9000}},"startupProbe":{"httpGet":{"path":"/s","port":8080,"scheme":"HTTPS"}},"lifecycle":{"preStop":{"tcpSocket":{"port":8080}},"postStart":{"exec":{"command":["true"]}}}}]}}`), uint8(1), uint8(0))
	f.Add([]byte(`{"metadata":{"name":"p","annotations":{"proxy.istio.io/config":"holdApplicationUntilProxyStarts: true","sidecar.istio.io/interceptionMode":"TPROXY","sidecar.istio.io/userVolume":"{\"c\":{\"emptyDir\":{}}}","sidecar.istio.io/userVolumeMount":"{\"c\":{\"mountPath\":\"/c\"}}"}},"spec":{"containers":[{"name":"app","image":"a"},{"name":"istio-proxy","image":"auto","securityContext":{"runAsUser":1500},"env":[{"name":"X","value":"1"}]}]}}`), uint8(1), uint8(0))
	f.Add([]byte(`{"metadata":{"name":"p","annotations":{"traffic.sidecar.istio.io/includeOutboundIPRanges":"10.0.0.0/33","status.sidecar.istio.io/port":"abc"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`), uint8(1), uint8(0))
	f.Add([]byte(`{"metadata":{"name":"p","annotations":{"sidecar.istio.io/status":"{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"],\"volumes\":[\"istio-envoy\"],\"imagePullSecrets\":null,\"revision\":\"default\"}","prometheus.io/port":"15020","proxy.istio.io/overrides":"{\"containers\":[{\"name\":\"istio-proxy\",\"resources\":{}}]}"}},"spec":{"initContainers":[{"name":"istio-init","image":"proxyv2"}],"containers":[{"name":"app","image":"a","readinessProbe":{"httpGet":{"path":"/app-health/app/readyz","port":15020}}},{"name":"istio-proxy","image":"proxyv2","env":[{"name":"ISTIO_KUBE_APP_PROBERS","value":"{\"/app-health/app/readyz\":{\"httpGet\":{\"path\":\"/r\",\"port\":8080}}}"}]}],"volumes":[{"name":"istio-envoy","emptyDir":{}}]}}`), uint8(1), uint8(0))
	// The pod's own istio-init (merged, not refused), on the stable
	// revision (istio-init) and on the canary (istio-cni: istio-validation).
	f.Add([]byte(`{"metadata":{"name":"p"},"spec":{"initContainers":[{"name":"setup","image":"s"},{"name":"istio-init","image":"auto","args":["-p","15001"]}],"containers":[{"name":"app","image":"a","ports":[{"containerPort":8080}]}]}}`), uint8(1), uint8(0))
	f.Add([]byte(`{"metadata":{"name":"p"},"spec":{"initContainers":[{"name":"setup","image":"s"},{"name":"istio-init","image":"auto","args":["-p","15001"]}],"containers":[{"name":"app","image":"a","ports":[{"containerPort":8080}]}]}}`), uint8(8), uint8(0))
	state := &fixedState{}
	inj := newTestInjector(f, state)
	f.Fuzz(func(t *testing.T, pod []byte, nsBits, podBits uint8) {
		state.mesh, state.namespaces = fuzzState(nsBits)
		pod = fuzzPodLabels(pod, podBits)
		body := fuzzReview(pod)

		code, raw, review := serve(t, inj, body)
		if !json.Valid(body) {
			require.Equal(t, http.StatusBadRequest, code, "invalid JSON must be a 400: %s", raw)
			return
		}
		if code != http.StatusOK {
			// Valid JSON that is still no AdmissionReview (the pod bytes can
			// close the request and override apiVersion, for instance).
			require.Equal(t, http.StatusBadRequest, code, "%s", raw)
			require.Contains(t, string(raw), "malformed AdmissionReview")
			return
		}
		resp := review.Response
		require.NotNil(t, resp)
		assert.Equal(t, "fuzz-uid", string(resp.UID))
		if !resp.Allowed {
			require.NotNil(t, resp.Result, "a refusal must say why")
			assert.NotEmpty(t, resp.Result.Message)
			assert.Empty(t, resp.Patch)
			return
		}
		if len(resp.Patch) == 0 || !json.Valid(pod) {
			// (Pod bytes that are not JSON on their own can still complete a
			// valid review, e.g. `"","":""`; the object is then something else.)
			return
		}
		isPod := json.Unmarshal(pod, new(corev1.Pod)) == nil
		out := applyFuzzPatch(t, pod, resp.Patch)
		if !isPod {
			return
		}
		require.NoError(t, json.Unmarshal(out, new(corev1.Pod)), "injection turned a Pod into something else: %s", out)

		// Re-invocation is a fixed point.
		_, raw2, review2 := serve(t, inj, fuzzReview(out))
		require.NotNil(t, review2, "re-invocation not answered: %s", raw2)
		require.True(t, review2.Response.Allowed, "re-invocation refused: %+v", review2.Response.Result)
		again := applyFuzzPatch(t, out, review2.Response.Patch)
		assert.JSONEq(t, string(out), string(again), "re-invocation changed the pod")
	})
}

func applyFuzzPatch(t *testing.T, pod, patch []byte) []byte {
	if len(patch) == 0 {
		return pod
	}
	var ops []map[string]any
	require.NoError(t, json.Unmarshal(patch, &ops), "patch is not JSON: %s", patch)
	return applyPatchLoose(t, pod, patch)
}

// fuzzReview builds the AdmissionReview by concatenation, so that invalid
// pod bytes reach the handler as they are.
func fuzzReview(pod []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"fuzz-uid","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","operation":"CREATE","object":`)
	b.Write(pod)
	b.WriteString(`}}`)
	return b.Bytes()
}

// fuzzState turns bits into the namespace's labels and the Mesh.
func fuzzState(bits uint8) (*v1alpha1.Mesh, map[string]map[string]string) {
	labels := map[string]string{}
	if v := []string{"", "enabled", "disabled", "yes"}[bits&3]; v != "" {
		labels["istio-injection"] = v
	}
	if v := []string{"", "stable", "canary", "1-21-0"}[bits>>2&3]; v != "" {
		labels["istio.io/rev"] = v
	}
	spec := stableCanary()
	// The canary intercepts with istio-cni (istio-validation), so a pod of
	// a namespace on the canary takes the CNI paths.
	spec.Revisions[1].TrafficInterception = v1alpha1.TrafficInterceptionCNI
	if bits&16 != 0 {
		spec.UnknownRevisionPolicy = v1alpha1.UnknownRevisionDeny
	}
	if bits&32 != 0 {
		spec.Canary = ""
	}
	namespaces := map[string]map[string]string{"shop": labels}
	if bits&64 != 0 {
		namespaces = nil
	}
	mesh := meshOf(spec)
	if bits&128 != 0 {
		mesh = nil
	}
	return mesh, namespaces
}

// fuzzPodLabels adds labels chosen by bits to a pod that is a JSON object
// with an object (or no) metadata; other bytes are returned as they are.
func fuzzPodLabels(pod []byte, bits uint8) []byte {
	if bits == 0 {
		return pod
	}
	var m map[string]any
	if json.Unmarshal(pod, &m) != nil || m == nil {
		return pod
	}
	meta, ok := m["metadata"].(map[string]any)
	if !ok {
		if m["metadata"] != nil {
			return pod
		}
		meta = map[string]any{}
		m["metadata"] = meta
	}
	labels, ok := meta["labels"].(map[string]any)
	if !ok {
		if meta["labels"] != nil {
			return pod
		}
		labels = map[string]any{}
		meta["labels"] = labels
	}
	if v := []string{"", "stable", "canary", "9-9-9"}[bits&3]; v != "" {
		labels["istio.io/rev"] = v
	}
	if v := []string{"", "true", "false", "maybe"}[bits>>2&3]; v != "" {
		labels["sidecar.istio.io/inject"] = v
	}
	if bits&16 != 0 {
		labels["istio"] = "ingressgateway"
	}
	b, err := json.Marshal(m)
	if err != nil {
		return pod
	}
	return b
}
