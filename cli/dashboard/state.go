package dashboard

import (
	"context"
	"io"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// State is what the pages show. The CLI builds it from its watches' caches
// with the same functions "meshrev status" and "meshrev dataplane status"
// use, so the pages and the terminal never disagree.
type State struct {
	// Error says why the state could not be read (no Mesh yet, no
	// permission); the pages show it instead of the mesh.
	Error string
	// Mesh is the Mesh object's name.
	Mesh string
	// Phase is the lifecycle phase (revisions.Phase).
	Phase v1alpha1.MeshPhase
	// Stable, Canary and Previous are the revisions the tags point at, and
	// the old stable after a promotion until it is unpublished.
	Stable, Canary, Previous string
	// Stale is set while the controller has not reported on the latest spec.
	Stale bool
	// Revisions are the published revisions, in the Mesh's order.
	Revisions []Revision
	// Next is the step to take next (revisions.Next).
	Next Next
	// Namespaces are every live namespace, sorted by name.
	Namespaces []Namespace
	// DataPlane counts the injected pods, from the controller's report.
	DataPlane Counts
	// Workloads are the outdated workloads computed from the pods (gateways marked).
	Workloads []v1alpha1.WorkloadStatus
	// History lists the lifecycle steps the controller recorded, oldest first.
	History []v1alpha1.HistoryEntry
}

// Revision is one control-plane revision: a box of the diagram.
type Revision struct {
	// Name of the revision.
	Name string
	// Version of the revision.
	Version string
	// Tags that resolve to it (stable, canary).
	Tags []string
	// ControlPlane is Ready, NotReady, Unknown or External.
	ControlPlane string
	// ServiceType of its control plane, when meshrev runs one.
	ServiceType string
	// Pods that run its sidecar.
	Pods int32
}

// Next is the step to take next.
type Next struct {
	// Text says what to do.
	Text string
	// Command is the meshrev command for it.
	Command string
}

// Namespace is one namespace: its labels and the revision new pods there get.
type Namespace struct {
	// Name of the namespace.
	Name string
	// Labels are the namespace's labels as key=value, sorted.
	Labels []string
	// Label describes its injection labels (istio.io/rev=canary, ...).
	Label string
	// Revision is what a new pod there resolves to ("" when not injected).
	Revision string
	// Reason is the decision table's reason.
	Reason string
}

// Counts are the controller's data-plane counts.
type Counts struct {
	// Pods carrying a meshrev sidecar.
	Pods int32
	// UpToDate pods run the revision they resolve to.
	UpToDate int32
	// Outdated pods run another revision.
	Outdated int32
}

// Step names of Action.Step, one per CLI verb.
const (
	StepCanaryDeploy     = "canary-deploy"
	StepNamespaceSwitch  = "namespace-switch"
	StepPromote          = "promote"
	StepDataplaneUpgrade = "dataplane-upgrade"
	StepUnpublish        = "unpublish"
	StepRevoke           = "revoke"
)

// Action is one step a button asks for, with the inputs of its CLI verb.
type Action struct {
	// Step is one of the Step* names.
	Step string `json:"step"`
	// Version is canary deploy's VERSION.
	Version string `json:"version,omitempty"`
	// Namespace is namespace switch's NS, or dataplane upgrade's -n.
	Namespace string `json:"namespace,omitempty"`
	// To is namespace switch's --to.
	To string `json:"to,omitempty"`
	// Workloads are dataplane upgrade's WORKLOAD arguments (kind/name).
	Workloads []string `json:"workloads,omitempty"`
	// All and Gateways are dataplane upgrade's --all and --gateways.
	All      bool `json:"all,omitempty"`
	Gateways bool `json:"gateways,omitempty"`
	// Batch is dataplane upgrade's --batch.
	Batch int `json:"batch,omitempty"`
	// Force is promote's and unpublish's --force.
	Force bool `json:"force,omitempty"`
}

// Backend reads the state and takes the steps. The CLI implements it: State
// from its watches' caches, Do with the verbs' own code, writing what the
// verb prints to out.
type Backend interface {
	// State reads the current state.
	State(ctx context.Context) *State
	// Do takes one step, writing the verb's output (progress lines
	// included) to out as it goes; its error is the verb's.
	Do(ctx context.Context, a Action, out io.Writer) error
}
