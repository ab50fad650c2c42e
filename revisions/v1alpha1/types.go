package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshName is the name of the one Mesh object a cluster has.
const MeshName = "default"

// UnknownRevisionPolicy says what the revision router does with a pod whose
// labels name a revision that is not published.
// +kubebuilder:validation:Enum=Allow;Deny
type UnknownRevisionPolicy string

const (
	// UnknownRevisionAllow admits the pod without a sidecar and warns.
	UnknownRevisionAllow UnknownRevisionPolicy = "Allow"
	// UnknownRevisionDeny refuses the pod with the same message.
	UnknownRevisionDeny UnknownRevisionPolicy = "Deny"
)

// MeshPhase is where the mesh stands in the canary-upgrade lifecycle.
// +kubebuilder:validation:Enum=Stable;CanaryDeployed;DataPlaneUpgrading;ReadyToUnpublish
type MeshPhase string

const (
	// PhaseStable: one revision published, nothing in flight.
	PhaseStable MeshPhase = "Stable"
	// PhaseCanaryDeployed: a canary revision is published beside stable.
	PhaseCanaryDeployed MeshPhase = "CanaryDeployed"
	// PhaseDataPlaneUpgrading: promoted; some pods still run the previous revision.
	PhaseDataPlaneUpgrading MeshPhase = "DataPlaneUpgrading"
	// PhaseReadyToUnpublish: promoted and every pod is up to date; the previous
	// revision can be unpublished.
	PhaseReadyToUnpublish MeshPhase = "ReadyToUnpublish"
)

// Mesh is the cluster's revision table: the published control-plane revisions
// and which of them the stable and canary tags point at. There is one, named
// "default".
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Stable",type=string,JSONPath=`.spec.stable`
// +kubebuilder:printcolumn:name="Canary",type=string,JSONPath=`.spec.canary`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Mesh struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired revision table.
	Spec MeshSpec `json:"spec"`
	// Status is what the controller observed.
	// +optional
	Status MeshStatus `json:"status,omitempty"`
}

// MeshSpec is the revision table.
type MeshSpec struct {
	// Revisions are the published control-plane revisions.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	Revisions []Revision `json:"revisions"`
	// Stable names the revision that the stable (and default) tag resolves to.
	// +kubebuilder:validation:MinLength=1
	Stable string `json:"stable"`
	// Canary names the revision under test, if any.
	// +optional
	Canary string `json:"canary,omitempty"`
	// UnknownRevisionPolicy says whether a pod whose labels name an unpublished
	// revision is admitted without a sidecar (Allow, with a warning) or refused (Deny).
	// +kubebuilder:default=Allow
	// +optional
	UnknownRevisionPolicy UnknownRevisionPolicy `json:"unknownRevisionPolicy,omitempty"`
}

// SidecarMode is how a revision injects istio-proxy.
type SidecarMode string

const (
	// SidecarModeAuto injects a native sidecar when every node supports it.
	SidecarModeAuto SidecarMode = "Auto"
	// SidecarModeNative always injects a native sidecar.
	SidecarModeNative SidecarMode = "Native"
	// SidecarModeClassic always injects istio-proxy as a container.
	SidecarModeClassic SidecarMode = "Classic"
)

// Revision is one published control-plane revision.
type Revision struct {
	// Name is the revision's DNS label, by convention the version with dots
	// replaced by dashes (1.23.6 → 1-23-6).
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Version is the control plane's version, MAJOR.MINOR.PATCH.
	Version string `json:"version"`
	// ProxyImage is the sidecar image injected for this revision; defaulted by
	// the manager from its configured image repository and Version.
	// +optional
	ProxyImage string `json:"proxyImage,omitempty"`
	// DiscoveryAddress is the control plane address the sidecar connects to;
	// defaulted to istiod-<name>.<mesh namespace>.svc:15012.
	// +optional
	DiscoveryAddress string `json:"discoveryAddress,omitempty"`
	// Templates names a ConfigMap in meshrev's namespace whose keys "sidecar"
	// and "gateway" replace the default injection templates for this revision.
	// +optional
	Templates string `json:"templates,omitempty"`
	// SidecarMode says how istio-proxy is injected: Native as a Kubernetes
	// native sidecar (an init container with restartPolicy Always, so that a
	// Job's pod completes and init containers are in the mesh; Kubernetes ≥
	// 1.33), Classic as a container, Auto (the default) natively when every
	// node's kubelet is ≥ 1.33 in the manager's cache. The pod annotation
	// sidecar.istio.io/nativeSidecar overrides it, as in Istio.
	// +kubebuilder:validation:Enum=Auto;Native;Classic
	// +optional
	SidecarMode SidecarMode `json:"sidecarMode,omitempty"`
	// ControlPlane, when set, makes the controller run this revision's control
	// plane as the Deployment and Service istiod-<name> in the mesh namespace.
	// +optional
	ControlPlane *ControlPlane `json:"controlPlane,omitempty"`
}

// ControlPlane describes the control-plane Deployment and Service of a revision.
type ControlPlane struct {
	// Image is the control plane (pilot) image.
	Image string `json:"image"`
	// Replicas of the control-plane Deployment.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// ServiceType of the control-plane Service; LoadBalancer exposes it
	// outside the cluster.
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;LoadBalancer;NodePort
	// +optional
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`
}

// MeshStatus is what the controller observed of the mesh.
type MeshStatus struct {
	// ObservedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase is where the mesh stands in the canary-upgrade lifecycle.
	// +optional
	Phase MeshPhase `json:"phase,omitempty"`
	// Previous is the old stable revision after a promotion, until it is unpublished.
	// +optional
	Previous string `json:"previous,omitempty"`
	// Revisions reports each published revision.
	// +optional
	Revisions []RevisionStatus `json:"revisions,omitempty"`
	// DataPlane reports which pods run an outdated sidecar.
	// +optional
	DataPlane DataPlaneStatus `json:"dataPlane,omitempty"`
	// History lists the lifecycle steps taken, oldest first (bounded).
	// +optional
	History []HistoryEntry `json:"history,omitempty"`
	// Conditions are Ready and Progressing, with Kubernetes conventions.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// RevisionStatus reports one published revision.
type RevisionStatus struct {
	// Name of the revision.
	Name string `json:"name"`
	// Version of the revision.
	Version string `json:"version"`
	// Tags that resolve to this revision (stable, canary).
	// +optional
	Tags []string `json:"tags,omitempty"`
	// ControlPlaneReady is true when the revision's control plane is available
	// (always true for a revision whose control plane meshrev does not run).
	ControlPlaneReady bool `json:"controlPlaneReady"`
	// Namespaces whose labels resolve to this revision.
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`
	// Pods that run this revision's sidecar.
	Pods int32 `json:"pods"`
}

// DataPlaneStatus reports the injected pods and which of them are outdated.
type DataPlaneStatus struct {
	// Pods is the number of pods that carry a meshrev sidecar.
	Pods int32 `json:"pods"`
	// UpToDate is the number of pods that run the revision their labels resolve to today.
	UpToDate int32 `json:"upToDate"`
	// Outdated is the number of pods that run another revision.
	Outdated int32 `json:"outdated"`
	// OutdatedWorkloads groups the outdated pods by their top owner.
	// +optional
	OutdatedWorkloads []WorkloadStatus `json:"outdatedWorkloads,omitempty"`
}

// WorkloadStatus is one workload (Deployment, StatefulSet, DaemonSet or bare
// Pod) with outdated pods.
type WorkloadStatus struct {
	// Kind of the top owner: Deployment, StatefulSet, DaemonSet, Pod, or another owner kind.
	Kind string `json:"kind"`
	// Namespace of the workload.
	Namespace string `json:"namespace"`
	// Name of the workload.
	Name string `json:"name"`
	// Revisions the outdated pods run.
	Revisions []string `json:"revisions"`
	// Want is the revision the workload's pods resolve to today.
	Want string `json:"want"`
	// Pods is the number of outdated pods of the workload.
	Pods int32 `json:"pods"`
	// Gateway is true for gateway workloads, which are upgraded separately.
	// +optional
	Gateway bool `json:"gateway,omitempty"`
}

// HistoryEntry records one lifecycle step.
type HistoryEntry struct {
	// Time the step was observed.
	Time metav1.Time `json:"time"`
	// Action is the step: Install, DeployCanary, Promote, Revoke, Unpublish.
	Action string `json:"action"`
	// From is the revision the step moved away from, if any.
	// +optional
	From string `json:"from,omitempty"`
	// To is the revision the step moved to, if any.
	// +optional
	To string `json:"to,omitempty"`
}

// MeshList is a list of Mesh objects.
//
// +kubebuilder:object:root=true
type MeshList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the meshes.
	Items []Mesh `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Mesh{}, &MeshList{})
}
