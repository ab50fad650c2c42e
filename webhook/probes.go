package webhook

import (
	"encoding/json"
	"maps"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Probe rewriting, as Istio's injector does it (pkg/kube/inject/app_probe.go):
// with mTLS the kubelet's plain HTTP probes no longer reach the app, so the
// app's HTTP, TCP and gRPC probes and its HTTP/TCP lifecycle hooks are sent
// to the agent's status port at /app-health/<container>/<kind>, and the agent
// learns the originals from ISTIO_KUBE_APP_PROBERS.

const (
	// annotationRewriteProbers turns probe rewriting off (false) or on.
	annotationRewriteProbers = "sidecar.istio.io/rewriteAppHTTPProbers"
	// annotationStatusPort is the agent's status port.
	annotationStatusPort = "status.sidecar.istio.io/port"
	// envAppProbers carries the original probes to the agent.
	envAppProbers = "ISTIO_KUBE_APP_PROBERS"
	// defaultStatusPort is the agent's status port of Istio's default mesh
	// config (defaultConfig.statusPort).
	defaultStatusPort = 15020
)

// appProber is one original probe as the agent reads it (Istio's
// inject.Prober; the JSON is the contract with pilot-agent).
type appProber struct {
	HTTPGet        *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *corev1.GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32                   `json:"timeoutSeconds,omitempty"`
}

// rewriteProbesEnabled reads sidecar.istio.io/rewriteAppHTTPProbers; an
// unparsable value keeps the default (on), as Istio's ShouldRewriteAppHTTPProbers.
func rewriteProbesEnabled(annots map[string]string) bool {
	if v, ok := annots[annotationRewriteProbers]; ok {
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return true
}

// rewriteProbes writes the replace operations of the apps' probes and hooks
// and returns the ISTIO_KUBE_APP_PROBERS env entry (nil when there is
// nothing to tell the agent). apps are the pod's own containers at their
// index after removals; prevProbers is the value an earlier injection gave
// the agent, whose entries win (Istio's mergeOrAppendProbers), so that a
// re-invocation keeps the original probes it can no longer see.
func rewriteProbes(w *patchWriter, annots map[string]string, apps, inits []*containerIn, prevProbers string) []byte {
	if !rewriteProbesEnabled(annots) {
		return nil
	}
	// Istio dumps against the mesh's status port but rewrites to the
	// annotation's (0 when it does not parse, as Istio's strconv.Atoi).
	port := defaultStatusPort
	if v, ok := annots[annotationStatusPort]; ok {
		port, _ = strconv.Atoi(v)
	}
	probers := map[string]*appProber{}
	// The pod's init containers too (a sidecar-style init container has
	// probes), as Istio rewrites every container but istio-proxy.
	type at struct {
		base string
		c    *containerIn
	}
	all := make([]at, 0, len(inits)+len(apps))
	for j, c := range inits {
		all = append(all, at{"/spec/initContainers/" + strconv.Itoa(j), c})
	}
	for j, c := range apps {
		all = append(all, at{"/spec/containers/" + strconv.Itoa(j), c})
	}
	for _, a := range all {
		c, base := a.c, a.base
		if c.Name == proxyContainerName || c.ReadinessProbe == nil && c.LivenessProbe == nil && c.StartupProbe == nil && c.Lifecycle == nil {
			continue
		}
		prefix := "/app-health/" + c.Name + "/"
		lcPrefix := "/app-lifecycle/" + c.Name + "/"
		named := map[string]int32{}
		for _, p := range c.Ports {
			if p.Name != "" {
				named[p.Name] = p.ContainerPort
			}
		}
		for _, pr := range []struct {
			field, kind string
			probe       *corev1.Probe
		}{{"readinessProbe", "readyz", c.ReadinessProbe}, {"livenessProbe", "livez", c.LivenessProbe}, {"startupProbe", "startupz", c.StartupProbe}} {
			if pr.probe == nil {
				continue
			}
			if ap := dumpProbe(pr.probe.ProbeHandler.HTTPGet, pr.probe.TCPSocket, pr.probe.GRPC, pr.probe.TimeoutSeconds, named); ap != nil {
				probers[prefix+pr.kind] = ap
			}
			if conv := convertProbe(pr.probe, prefix+pr.kind, port); conv != nil {
				b, _ := json.Marshal(conv) // a decoded Probe always marshals
				w.add(base+"/"+pr.field, b)
			}
		}
		if c.Lifecycle == nil {
			continue
		}
		lc := c.Lifecycle.DeepCopy()
		changed := false
		for _, h := range []struct {
			kind    string
			handler **corev1.LifecycleHandler
		}{{"prestopz", &lc.PreStop}, {"poststartz", &lc.PostStart}} {
			if *h.handler == nil {
				continue
			}
			if ap := dumpProbe((*h.handler).HTTPGet, (*h.handler).TCPSocket, nil, 0, named); ap != nil {
				probers[lcPrefix+h.kind] = ap
			}
			if conv := convertHandler(*h.handler, lcPrefix+h.kind, port); conv != nil {
				*h.handler = conv
				changed = true
			}
		}
		if changed {
			b, _ := json.Marshal(lc)
			w.add(base+"/lifecycle", b)
		}
	}
	if prevProbers != "" {
		var prev map[string]*appProber
		if err := json.Unmarshal([]byte(prevProbers), &prev); err == nil {
			maps.Copy(probers, prev)
		}
	}
	if len(probers) == 0 {
		return nil
	}
	b, err := json.Marshal(probers)
	if err != nil {
		return nil
	}
	return envVar(envAppProbers, string(b))
}

// dumpProbe is the agent's copy of one probe: named ports resolved against
// the container's ports (a name it lacks drops the probe), and HTTP or TCP
// probes that already target the status port left out (they are the
// agent's own, or were rewritten before). gRPC probes are always kept.
func dumpProbe(h *corev1.HTTPGetAction, t *corev1.TCPSocketAction, g *corev1.GRPCAction, timeout int32, named map[string]int32) *appProber {
	if g != nil && h == nil && t == nil {
		return &appProber{GRPC: g.DeepCopy(), TimeoutSeconds: timeout}
	}
	ap := &appProber{TimeoutSeconds: timeout}
	var port *intstr.IntOrString
	switch {
	case h != nil:
		ap.HTTPGet = h.DeepCopy()
		port = &ap.HTTPGet.Port
	case t != nil:
		ap.TCPSocket = t.DeepCopy()
		port = &ap.TCPSocket.Port
	default:
		return nil
	}
	if port.Type == intstr.String {
		n, ok := named[port.StrVal]
		if !ok {
			return nil
		}
		*port = intstr.FromInt32(n)
	} else if port.IntVal == defaultStatusPort {
		return nil
	}
	return ap
}

// convertProbe returns the probe sent to the agent, or nil when it is not an
// HTTP, TCP or gRPC probe (exec probes stay as they are).
func convertProbe(p *corev1.Probe, path string, port int) *corev1.Probe {
	if p.HTTPGet == nil && p.TCPSocket == nil && p.GRPC == nil {
		return nil
	}
	out := p.DeepCopy()
	if out.HTTPGet == nil {
		out.HTTPGet = &corev1.HTTPGetAction{}
		out.TCPSocket, out.GRPC = nil, nil
	}
	rewriteHTTPGet(out.HTTPGet, path, port)
	return out
}

func convertHandler(h *corev1.LifecycleHandler, path string, port int) *corev1.LifecycleHandler {
	if h.HTTPGet == nil && h.TCPSocket == nil {
		return nil
	}
	out := h.DeepCopy()
	if out.HTTPGet == nil {
		out.HTTPGet = &corev1.HTTPGetAction{}
		out.TCPSocket = nil
	}
	rewriteHTTPGet(out.HTTPGet, path, port)
	return out
}

// rewriteHTTPGet points an HTTP action at the agent; HTTPS becomes HTTP
// (the agent speaks plain HTTP to the kubelet and HTTPS to the app).
func rewriteHTTPGet(a *corev1.HTTPGetAction, path string, port int) {
	a.Port = intstr.FromInt32(int32(port))
	a.Path = path
	if a.Scheme == corev1.URISchemeHTTPS {
		a.Scheme = corev1.URISchemeHTTP
	}
}

// previousEnvValue returns the value of the env var name in a raw env list
// (the earlier injection's istio-proxy), or "".
func previousEnvValue(raw json.RawMessage, name string) string {
	if len(raw) == 0 {
		return ""
	}
	var env []corev1.EnvVar
	if err := json.Unmarshal(raw, &env); err != nil {
		return ""
	}
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// injectedEnv returns the value of env var name in the istio-proxy
// container (or native sidecar) an earlier injection added, or "".
func injectedEnv(spec *podSpec, goneC, goneI []int, name string) string {
	for _, j := range goneC {
		if spec.Containers[j].Name == proxyContainerName {
			return previousEnvValue(spec.Containers[j].Env, name)
		}
	}
	for _, j := range goneI {
		if j < len(spec.InitFull) && spec.InitFull[j].Name == proxyContainerName {
			return previousEnvValue(spec.InitFull[j].Env, name)
		}
	}
	return ""
}
