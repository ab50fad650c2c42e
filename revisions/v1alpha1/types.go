package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
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
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Stable string `json:"stable"`
	// Canary names the revision under test, if any.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Canary string `json:"canary,omitempty"`
	// UnknownRevisionPolicy says whether a pod whose labels name an unpublished
	// revision is admitted without a sidecar (Allow, with a warning) or refused (Deny).
	// +kubebuilder:default=Allow
	// +optional
	UnknownRevisionPolicy UnknownRevisionPolicy `json:"unknownRevisionPolicy,omitempty"`

	// --- control-plane deletion (issue 12) ---

	// ControlPlaneDeletionPolicy says what happens to the istiod Helm releases
	// meshrev installed when this Mesh is deleted: Uninstall (the default)
	// removes them, Orphan leaves them running. Istio's CRDs always stay.
	// +kubebuilder:default=Uninstall
	// +optional
	ControlPlaneDeletionPolicy ControlPlaneDeletionPolicy `json:"controlPlaneDeletionPolicy,omitempty"`
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
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// Version is the control plane's version, MAJOR.MINOR.PATCH.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[0-9]+[.][0-9]+[.][0-9]+(-[0-9A-Za-z.-]+)?$`
	Version string `json:"version"`
	// ProxyImage is the sidecar image injected for this revision; defaulted by
	// the manager from its configured image repository and Version. An image
	// reference ([registry[:port]/]path[:tag][@digest]), at most 512 bytes.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^(?:[a-zA-Z0-9-]+(?:[.][a-zA-Z0-9-]+)*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`
	// +optional
	ProxyImage string `json:"proxyImage,omitempty"`
	// DiscoveryAddress is the control plane address the sidecar connects to;
	// defaulted to istiod-<name>.<mesh namespace>.svc:15012. A host (DNS
	// name, IPv4 or bracketed IPv6) with an optional port.
	// +kubebuilder:validation:MaxLength=261
	// +kubebuilder:validation:Pattern=`^(?:[A-Za-z0-9](?:[-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$`
	// +optional
	DiscoveryAddress string `json:"discoveryAddress,omitempty"`
	// Templates names a ConfigMap in meshrev's namespace whose keys "sidecar"
	// and "gateway" replace the default injection templates for this revision.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	Templates string `json:"templates,omitempty"`
	// SidecarMode says how istio-proxy is injected: Native as a Kubernetes
	// native sidecar (an init container with restartPolicy Always, so that a
	// Job's pod completes and init containers are in the mesh; Kubernetes ≥
	// 1.33), Classic as a container. Auto (the default) injects natively
	// when every node's kubelet (status.nodeInfo.kubeletVersion) is ≥ 1.33,
	// or, for a pod created already bound to a node, when that node's is, as
	// Istio decides it; the manager reads the nodes from its cache. The pod
	// annotation sidecar.istio.io/nativeSidecar overrides it, as in Istio.
	// +kubebuilder:validation:Enum=Auto;Native;Classic
	// +optional
	SidecarMode SidecarMode `json:"sidecarMode,omitempty"`
	// ControlPlane, when set, says where this revision's control plane
	// (istiod-<name> in the mesh namespace) comes from, and meshrev waits for
	// it to be Ready before a promotion. Without it meshrev neither runs nor
	// watches a control plane for the revision.
	// +optional
	ControlPlane *ControlPlane `json:"controlPlane,omitempty"`
	// TrafficInterception says how the injected pods' traffic is redirected
	// to istio-proxy. InitContainer (the default) injects istio-init, which
	// programs iptables itself and so needs NET_ADMIN and NET_RAW.
	// CNI relies on the istio-cni node agent (installed separately) and
	// injects, as Istio does with its value pilot.cni.enabled, the
	// unprivileged istio-validation init container instead and the
	// traffic.sidecar.istio.io/* annotations the agent reads: the pods then
	// pass the Pod Security baseline (and, with restricted-conformant apps,
	// restricted) level.
	// +kubebuilder:validation:Enum=InitContainer;CNI
	// +optional
	TrafficInterception TrafficInterception `json:"trafficInterception,omitempty"`
}

// TrafficInterception is how a revision's pods get their traffic redirected
// to istio-proxy.
type TrafficInterception string

const (
	// TrafficInterceptionInitContainer injects istio-init (iptables,
	// NET_ADMIN and NET_RAW).
	TrafficInterceptionInitContainer TrafficInterception = "InitContainer"
	// TrafficInterceptionCNI leaves iptables to the istio-cni node agent and
	// injects istio-validation, with no added capability.
	TrafficInterceptionCNI TrafficInterception = "CNI"
)

// ControlPlane says where a revision's control plane comes from: exactly one
// of image (meshrev writes a bare Deployment and Service), helm (meshrev
// installs Istio's istiod chart as Helm release istiod-<name>) or external
// (installed outside meshrev; only its readiness is watched).
// +kubebuilder:validation:XValidation:rule="(has(self.image) ? 1 : 0) + (has(self.helm) ? 1 : 0) + (has(self.external) && self.external ? 1 : 0) == 1",message="set exactly one of image, helm or external"
type ControlPlane struct {
	// Image is the control plane (pilot) image of a Deployment meshrev
	// writes itself: an image reference, at most 512 bytes. It carries no
	// ServiceAccount, RBAC or mesh config: use helm for a control plane that
	// runs on a real cluster.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^(?:[a-zA-Z0-9-]+(?:[.][a-zA-Z0-9-]+)*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`
	// +optional
	Image string `json:"image,omitempty"`

	// --- control-plane source (issue 12) ---

	// Helm installs the control plane from Istio's own istiod chart, as Helm
	// release istiod-<name> in the mesh namespace, after the CRDs of Istio's
	// base chart of the same version.
	// +optional
	Helm *HelmControlPlane `json:"helm,omitempty"`
	// External says the control plane is installed outside meshrev
	// (istioctl, GitOps): meshrev only watches the readiness of Deployment
	// istiod-<name> in the mesh namespace and never installs or removes it.
	// +optional
	External bool `json:"external,omitempty"`

	// --- end control-plane source ---

	// Replicas of the control-plane Deployment (image only).
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// ServiceType of the control-plane Service (image only); LoadBalancer
	// exposes it outside the cluster.
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;LoadBalancer;NodePort
	// +optional
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`
}

// DefaultChartRepository is Istio's official Helm chart repository, where a
// helm control plane's charts come from unless it names another.
const DefaultChartRepository = "https://istio-release.storage.googleapis.com/charts"

// HelmControlPlane is a control plane installed from Istio's istiod chart.
type HelmControlPlane struct {
	// Repository is where the charts istiod and base come from: an HTTP(S)
	// chart repository with an index.yaml (default Istio's official
	// https://istio-release.storage.googleapis.com/charts, or a mirror), an
	// OCI repository (oci://registry/path, charts at <path>/istiod:<version>),
	// or a directory on the manager's file system holding packaged charts
	// istiod-<version>.tgz and base-<version>.tgz (file:///path, for
	// air-gapped clusters).
	// +kubebuilder:validation:Pattern=`^(https?|oci|file)://`
	// +optional
	Repository string `json:"repository,omitempty"`
	// ChartVersion is the version of the istiod and base charts; default the
	// revision's version.
	// +optional
	ChartVersion string `json:"chartVersion,omitempty"`
	// Values are the chart values of this revision's release, merged under
	// the values meshrev sets itself (revision, global.istioNamespace, and
	// global.operatorManageWebhooks=true so that only meshrev injects).
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +optional
	Values *apiextensionsv1.JSON `json:"values,omitempty"`
}

// ControlPlaneDeletionPolicy says what happens to the Helm releases meshrev
// installed when the Mesh is deleted.
// +kubebuilder:validation:Enum=Uninstall;Orphan
type ControlPlaneDeletionPolicy string

const (
	// ControlPlaneUninstall removes every istiod release with the Mesh: its
	// objects carry the Mesh as owner, so the garbage collector removes them
	// even when meshrev itself is gone. Istio's CRDs (the base release) stay.
	ControlPlaneUninstall ControlPlaneDeletionPolicy = "Uninstall"
	// ControlPlaneOrphan leaves the releases installed and running.
	ControlPlaneOrphan ControlPlaneDeletionPolicy = "Orphan"
)

// ControlPlaneStatus reports a revision's control plane as meshrev installed
// or watches it.
type ControlPlaneStatus struct {
	// Source is Image, Helm or External.
	Source string `json:"source"`
	// Release is the Helm release (helm only).
	// +optional
	Release string `json:"release,omitempty"`
	// ReleaseStatus is the Helm release's status: deployed, or failed with
	// LastError (helm only).
	// +optional
	ReleaseStatus string `json:"releaseStatus,omitempty"`
	// ChartVersion is the istiod chart version the release runs (helm only).
	// +optional
	ChartVersion string `json:"chartVersion,omitempty"`
	// LastError is why the last install or upgrade failed; empty after a success.
	// +optional
	LastError string `json:"lastError,omitempty"`
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
	// Namespaces whose labels resolve to this revision (a new pod there is
	// injected with it): the first MaxListedNamespaces (10) in name order,
	// so that the Mesh does not grow with the cluster. NamespaceCount says
	// how many there are; whoever needs them all (meshrev status) reads the
	// namespaces' labels itself.
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`
	// NamespaceCount is the number of namespaces whose labels resolve to
	// this revision (Namespaces lists the first of them).
	// +optional
	NamespaceCount int32 `json:"namespaceCount,omitempty"`
	// Pods that run this revision's sidecar.
	Pods int32 `json:"pods"`

	// --- control-plane report (issue 12) ---

	// ControlPlane reports the control plane's source and, for a Helm
	// release, its status, chart version and last error.
	// +optional
	ControlPlane *ControlPlaneStatus `json:"controlPlane,omitempty"`

	// Bounded data-plane report (fields of their own; issue 13).

	// OutdatedWorkloads counts the workloads with pods that run this
	// revision's sidecar but resolve to another revision today.
	// +optional
	OutdatedWorkloads int32 `json:"outdatedWorkloads,omitempty"`
}

// DataPlaneStatus reports the injected pods and which of them are outdated.
type DataPlaneStatus struct {
	// Pods is the number of pods that carry a meshrev sidecar.
	Pods int32 `json:"pods"`
	// UpToDate is the number of pods that run the revision their labels resolve to today.
	UpToDate int32 `json:"upToDate"`
	// Outdated is the number of pods that run another revision.
	Outdated int32 `json:"outdated"`
	// OutdatedWorkloads groups the outdated pods by their top owner, in
	// namespace, kind, name order, bounded so that the Mesh does not grow with
	// the cluster: a workload is listed only when it is among the first
	// MaxListedOutdatedWorkloads (10) outdated workloads of one of the
	// revisions its pods run, so at most 10 per revision. OutdatedWorkloadCount
	// says how many there are; the complete list is computed by whoever needs
	// it (meshrev dataplane status, meshrev dataplane upgrade) from the pods.
	// +optional
	OutdatedWorkloads []WorkloadStatus `json:"outdatedWorkloads,omitempty"`

	// Bounded data-plane report (fields of their own; issue 13).

	// OutdatedWorkloadCount is the number of workloads with outdated pods
	// (OutdatedWorkloads lists the first of them).
	// +optional
	OutdatedWorkloadCount int32 `json:"outdatedWorkloadCount,omitempty"`
}

// MaxListedNamespaces bounds RevisionStatus.Namespaces: at most this many
// namespaces per revision are listed in the status.
const MaxListedNamespaces = 10

// MaxListedOutdatedWorkloads bounds DataPlaneStatus.OutdatedWorkloads: at
// most this many outdated workloads per revision are listed in the status.
const MaxListedOutdatedWorkloads = 10

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
	// Time is when meshrev's controller observed the step in the Mesh, not
	// when the update that took it was written: the API server keeps no time
	// per spec change. The two differ by the controller's reaction time,
	// which is longer while no controller runs (the step is then recorded
	// when one next does).
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
