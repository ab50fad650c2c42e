package revisions

import (
	"encoding/json"
	"slices"
)

// RunningRevision is the revision a pod really runs, by the record injection
// leaves and by the containers the pod has: the label meshrev.io/revision
// counts only when the pod's sidecar.istio.io/status annotation, written by
// the same injection, names the same revision and lists the containers it
// added, and when every one of those containers is in the pod (containers
// holds the names of its containers and init containers: the proxy may be
// a native sidecar). A label a pod set itself (the injector strips those it
// sees, but a pod in a namespace that never asked for injection never
// meets the injector), with or without a copied annotation, runs nothing
// unless the proxy is there. Empty means no revision.
func RunningRevision(labels, annotations map[string]string, containers []string) string {
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
	// A sidecar (classic or native) or a gateway's proxy container: at
	// least one container was added or replaced, and all of them are there.
	added := append(slices.Clone(st.Containers), st.InitContainers...)
	if !slices.Contains(added, ProxyContainer) && len(st.Containers) == 0 {
		return ""
	}
	for _, name := range added {
		if !slices.Contains(containers, name) {
			return ""
		}
	}
	return rev
}
