package webhook

import (
	"context"
	"strconv"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// NativeSidecarSupport is implemented by a State that knows the nodes'
// kubelet versions (from an informer cache, CacheState): whether the node
// named (a pod's spec.nodeName, often "") or else every node runs a kubelet
// ≥ 1.33, where native sidecars are stable. A revision in SidecarMode Auto
// injects native sidecars only when it says so; a State without it makes
// Auto mean Classic.
type NativeSidecarSupport interface {
	NativeSidecars(ctx context.Context, nodeName string) bool
}

// nativeSidecar decides whether the pod's istio-proxy is a native sidecar:
// the pod's annotation sidecar.istio.io/nativeSidecar first (any value but
// "false" means native, as Istio's template reads it), else the revision's
// SidecarMode.
func (i *Injector) nativeSidecar(ctx context.Context, rev *v1alpha1.Revision, p *podIn) bool {
	if v := p.Metadata.Annotations[annotationNativeSidecar]; v != "" {
		return v != "false"
	}
	switch rev.SidecarMode {
	case v1alpha1.SidecarModeNative:
		return true
	case v1alpha1.SidecarModeClassic:
		return false
	}
	if s, ok := i.opts.State.(NativeSidecarSupport); ok {
		return s.NativeSidecars(ctx, p.Spec.NodeName)
	}
	return false
}

// holdLifecycle makes the kubelet wait for the proxy before it starts the
// next container (proxy.istio.io/config holdApplicationUntilProxyStarts).
var holdLifecycle = []byte(`"lifecycle":{"postStart":{"exec":{"command":["pilot-agent","wait"]}}}`)

// nativeProxy turns the marshalled istio-proxy container into a native
// sidecar: restartPolicy Always, and a preStop that drains the proxy when
// the pod shuts down (it gets SIGTERM only after the app containers).
func nativeProxy(container []byte, annots map[string]string) []byte {
	port := strconv.Itoa(defaultStatusPort)
	if v, ok := annots[annotationStatusPort]; ok {
		port = v
	}
	b := make([]byte, 0, 200)
	b = append(b, `"restartPolicy":"Always","lifecycle":{"preStop":{"exec":{"command":["pilot-agent","request",`...)
	b = appendJSONString(b, "--debug-port="+port)
	b = append(b, `,"POST","drain"]}}}`...)
	return withFields(container, b)
}

// withFields inserts JSON members (without braces) at the start of a
// marshalled object.
func withFields(obj, members []byte) []byte {
	out := make([]byte, 0, len(obj)+len(members)+1)
	out = append(out, '{')
	out = append(out, members...)
	if len(obj) > 2 {
		out = append(out, ',')
	}
	return append(out, obj[1:]...)
}
