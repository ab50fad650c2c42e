package revisions

import (
	"encoding/json"
	"slices"
)

// ProxyContainer is the sidecar's container name: a container, or (native
// sidecar) an init container with restartPolicy Always.
const ProxyContainer = "istio-proxy"

// RunningRevision is the revision a pod really runs, by the record injection
// leaves: the label meshrev.io/revision counts only when the pod's
// sidecar.istio.io/status annotation, written by the same injection, names
// the same revision and lists the containers it added (or, for a native
// sidecar, lists istio-proxy among the init containers). A label a pod set
// itself (the injector strips those it sees, but a pod in a namespace that
// never asked for injection never meets the injector) runs nothing. Empty
// means no revision.
func RunningRevision(labels, annotations map[string]string) string {
	rev := labels[LabelRevision]
	if rev == "" {
		return ""
	}
	raw, ok := annotations[AnnotationStatus]
	if !ok {
		return ""
	}
	var st InjectionStatus
	if err := json.Unmarshal([]byte(raw), &st); err != nil || st.Revision != rev {
		return ""
	}
	if len(st.Containers) == 0 && !slices.Contains(st.InitContainers, ProxyContainer) {
		return ""
	}
	return rev
}
