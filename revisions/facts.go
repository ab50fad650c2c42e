package revisions

import (
	"slices"
)

// Facts are what the cluster says: the one read model of meshrev. The
// package internal/readmodel fills it from a cache (the validating webhook,
// the controller) or from the API server (the CLI); the decisions in this
// package only read it.
type Facts struct {
	// Namespaces maps each live (not terminating) namespace to its labels.
	Namespaces map[string]map[string]string
	// Pods are the live pods that run a meshrev sidecar.
	Pods []Pod
	// ControlPlaneReady says, per revision, whether its control plane is
	// available. A revision whose control plane meshrev does not run counts as
	// ready; a revision missing from the map counts as not ready.
	ControlPlaneReady map[string]bool
	// IstioCRDVersion is the version of Istio's CRDs installed in the
	// cluster (label app.kubernetes.io/version of Istio's base chart), or
	// empty when there are none or they carry no version.
	IstioCRDVersion string
}

// Pod is an injected pod, as far as the decisions need it (metadata and
// the names of its containers).
type Pod struct {
	// Namespace and Name of the pod.
	Namespace, Name string
	// Labels and Annotations of the pod.
	Labels, Annotations map[string]string
	// Containers are the names of the pod's containers and init containers.
	Containers []string
	// Owner is the workload an upgrade restarts to replace the pod.
	Owner Owner
}

// Revision is the revision whose sidecar the pod runs (RunningRevision).
func (p *Pod) Revision() string { return RunningRevision(p.Labels, p.Annotations, p.Containers) }

// Owner is a pod's top owner: the workload an upgrade restarts.
type Owner struct {
	// Kind is Deployment, StatefulSet, DaemonSet, another controller kind, or Pod for a bare pod.
	Kind string
	// Name of the owner.
	Name string
}

// PodsOf lists the pods ("namespace/name", sorted) that run rev's sidecar.
func (f *Facts) PodsOf(rev string) []string {
	var out []string
	for i := range f.Pods {
		if f.Pods[i].Revision() == rev {
			out = append(out, f.Pods[i].Namespace+"/"+f.Pods[i].Name)
		}
	}
	slices.Sort(out)
	return out
}
