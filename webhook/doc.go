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
// .Revision.DiscoveryAddress, .Revision.CNI, .MeshNamespace, .Values) and
// never the pod.
//
// Pod-specific values are computed in Go on the decoded pod, as Istio's
// injector computes them, and emitted as patch operations (COMPAT.md lists
// what still differs from Istio's injector, which test/compat compares
// against):
//
//   - env vars spliced into istio-proxy: ISTIO_META_APP_CONTAINERS,
//     ISTIO_META_POD_PORTS, ISTIO_META_WORKLOAD_NAME, ISTIO_META_OWNER,
//     PROXY_CONFIG (proxy.istio.io/config), ISTIO_KUBE_APP_PROBERS and
//     ISTIO_PROMETHEUS_ANNOTATIONS (podmeta.go, probes.go);
//   - the app's HTTP/TCP/gRPC probes and HTTP/TCP lifecycle hooks rewritten
//     to the agent's status port (probes.go);
//   - the canonical-name/revision labels, default-container and
//     default-logs-container annotations and the Prometheus merge;
//   - the annotations Istio reads (traffic.sidecar.istio.io/*, proxy
//     resources, log levels, readiness, statusPort, interceptionMode,
//     userVolume), validated with Istio's refusals, which re-marshal only the
//     containers they change (podannotations.go, podcontainers.go);
//   - a pod's own istio-proxy and istio-init merged under its fields
//     (merge.go); their per-annotation variants are cached per template
//     by the annotations' values (podcontainers.go).
//
// In classic mode istio-init goes after the pod's own init containers and
// istio-proxy after its containers (first with holdApplicationUntilProxyStarts);
// in native mode (spec.revisions[].sidecarMode, or the pod annotation
// sidecar.istio.io/nativeSidecar) istio-init then istio-proxy, with
// restartPolicy Always, go in front of the pod's init containers (native.go).
// With trafficInterception CNI the template injects istio-validation
// instead of istio-init, first among the init containers, and the
// annotations the istio-cni agent reads. The template's volumes go in front
// of the pod's. The gateway template (chosen by the annotation
// inject.istio.io/templates only, as in Istio) is injected like the sidecar
// template: its istio-proxy is merged under the gateway's own (image auto),
// and its securityContext over the pod's. Template labels and annotations
// are set only when the pod lacks them; meshrev's own (meshrev.io/revision,
// istio.io/rev, sidecar.istio.io/status) always.
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
