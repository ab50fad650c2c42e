// Package revisions is meshrev's pure core: revision names and versions, the
// version skip policy, the injection decision table and the lifecycle
// transition rules. It makes no API calls; the webhooks, the controller and the
// CLI all decide through it.
package revisions

// Labels and annotations meshrev reads and writes. The istio ones keep
// meshrev compatible with workloads and namespaces labelled for Istio.
const (
	// LabelInjection is the namespace label istio-injection: enabled|disabled.
	LabelInjection = "istio-injection"
	// LabelRev is the namespace or pod label istio.io/rev: stable|canary|<revision>.
	LabelRev = "istio.io/rev"
	// LabelSidecarInject is the pod label (or annotation) sidecar.istio.io/inject: "true"|"false".
	LabelSidecarInject = "sidecar.istio.io/inject"
	// LabelRevision is set by injection to the name of the injected revision.
	LabelRevision = "meshrev.io/revision"
	// AnnotationRev is set by injection to the name of the injected revision.
	AnnotationRev = "istio.io/rev"
	// AnnotationStatus records what injection added (JSON, see InjectionStatus).
	AnnotationStatus = "sidecar.istio.io/status"
	// AnnotationTemplates selects the injection template of a pod ("gateway").
	AnnotationTemplates = "inject.istio.io/templates"
	// LabelIstio marks gateways: istio: ingressgateway|egressgateway.
	LabelIstio = "istio"
	// AnnotationForce on the Mesh overrides the refusals that can be overridden.
	AnnotationForce = "meshrev.io/force"
	// AnnotationRestartedAt is the pod-template annotation kubectl rollout restart sets.
	AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
)

// ProxyContainer is the name of the proxy container injection adds (a
// regular container, or a native-sidecar init container).
const ProxyContainer = "istio-proxy"

// Label values.
const (
	InjectionEnabled  = "enabled"
	InjectionDisabled = "disabled"
)

// Tags that resolve to a revision through the table.
const (
	TagStable  = "stable"
	TagCanary  = "canary"
	TagDefault = "default" // alias of stable, for Istio compatibility
)

// Template names.
const (
	TemplateSidecar = "sidecar"
	TemplateGateway = "gateway"
)

// SystemNamespaces are never injected, whatever their labels say.
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// InjectionStatus is the JSON value of the sidecar.istio.io/status annotation:
// what injection added, so that a re-invocation can replace it instead of
// injecting twice.
type InjectionStatus struct {
	// Revision that was injected.
	Revision string `json:"revision"`
	// Template that was used (sidecar or gateway).
	Template string `json:"template,omitempty"`
	// Containers added (or, for gateways, whose image was replaced).
	Containers []string `json:"containers"`
	// InitContainers added.
	InitContainers []string `json:"initContainers"`
	// Volumes added.
	Volumes []string `json:"volumes"`
	// Labels are the keys of the template labels injection set (the pod had
	// none of its own), so that they follow a change of revision and leave
	// with the injection.
	Labels []string `json:"labels,omitempty"`
	// Annotations are the keys of the template annotations injection set.
	Annotations []string `json:"annotations,omitempty"`
}
