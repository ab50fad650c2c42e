package revisions

import "encoding/json"

// RunningRevision is the revision a pod really runs, by the record injection
// leaves: the label meshrev.io/revision counts only when the pod's
// sidecar.istio.io/status annotation, written by the same injection, names
// the same revision and lists the containers it added. A label a pod set
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
	if err := json.Unmarshal([]byte(raw), &st); err != nil || st.Revision != rev || len(st.Containers) == 0 {
		return ""
	}
	return rev
}
