// Package webhook is meshrev's admission: the pod injector (the revision
// router, served at /inject), the Mesh validator (/validate-mesh), the
// namespace warnings (/validate-namespace) and the templates validator
// (/validate-templates).
//
// # The injector
//
// Injector serves admission.k8s.io/v1 AdmissionReviews of pod CREATE
// directly as an http.Handler. For each pod it reads the Mesh and the
// namespace's labels through State (informer caches, no API call), decides
// with revisions.Resolve — the one implementation of the decision table — and
// answers with a JSON Patch built operation by operation (no whole-pod
// marshal and diff). Denied pods (unknownRevisionPolicy: Deny) get
// allowed:false with the decision's message; the decision's warnings become
// admission warnings.
//
// # Templates
//
// A revision's templates (sidecar and gateway, Go text/template producing
// YAML with the keys initContainers, containers, volumes, labels and
// annotations) are rendered ONCE PER REVISION and cached until the revision's
// fields or the template text change; the fragments are marshalled once. A
// template therefore sees only revision-wide data (TemplateData:
// .Revision.Name, .Revision.Version, .Revision.ProxyImage,
// .Revision.DiscoveryAddress, .MeshNamespace, .Values) and never the pod.
//
// Pod-specific values reach the proxy in two ways:
//
//   - the downward API, in the template: fieldRef metadata.name (POD_NAME),
//     metadata.namespace (POD_NAMESPACE), spec.serviceAccountName
//     (SERVICE_ACCOUNT), status.podIP (INSTANCE_IP), status.hostIP (HOST_IP),
//     resourceFieldRef limits.cpu, and a downwardAPI volume of the pod's
//     labels and annotations, as Istio's own sidecar does;
//   - env vars the injector computes per pod and appends to the env of the
//     template container named istio-proxy (for gateways: merges into the
//     gateway container's env): ISTIO_META_APP_CONTAINERS (comma list of the
//     pod's own container names), ISTIO_META_POD_PORTS (JSON list of their
//     container ports, when any) and ISTIO_META_WORKLOAD_NAME (the
//     controller's name without the ReplicaSet hash, else generateName or
//     name). The annotation kubectl.kubernetes.io/default-container is set to
//     the first app container when absent.
//
// The sidecar template's init containers are put in front of the pod's, its
// containers and volumes appended. The gateway template has one container:
// its image replaces the image of the gateway's container (the one named
// istio-proxy, else the first), its env and volumeMounts are merged by name;
// no container is added. Template labels and annotations are set only when
// the pod lacks them; meshrev's own (meshrev.io/revision, istio.io/rev,
// sidecar.istio.io/status) always.
//
// Injection is idempotent: a pod that carries sidecar.istio.io/status has
// what that status lists removed (highest index first) before the new
// injection is added, and loses it when the decision is now to skip.
// ValidateRevision renders a revision's templates so that the Mesh validator
// can refuse a revision whose templates are broken before any pod meets them;
// CheckTemplate renders one template text the same way, so that the templates
// validator can refuse an edit of a templates ConfigMap that would break a
// published revision.
package webhook
