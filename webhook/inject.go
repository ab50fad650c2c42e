package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Defaults of InjectorOptions (the mesh namespace and proxy image repository
// default to revisions.DefaultMeshNamespace and revisions.DefaultProxyImageRepo).
const (
	// DefaultMaxRequestBytes bounds the AdmissionReview body; the API server
	// itself limits objects to 3 MiB.
	DefaultMaxRequestBytes = 8 << 20
)

// State is what the injector reads on every request. The manager implements
// it from informer caches (see NewCacheState): no API call per request.
// Returned objects and maps are shared with the cache: callers must not
// mutate them.
type State interface {
	// Mesh returns the Mesh "default", or nil (and no error) when none
	// exists. An error means the state could not be read: the injector then
	// refuses the pod with a retryable 503, never admits it uninjected.
	Mesh(ctx context.Context) (*v1alpha1.Mesh, error)
	// NamespaceLabels returns the labels of the named namespace and whether
	// the namespace is known; an error means the state could not be read.
	NamespaceLabels(ctx context.Context, name string) (map[string]string, bool, error)
}

// InjectorOptions configures NewInjector.
type InjectorOptions struct {
	// OwnNamespace is meshrev's own namespace, never injected, where templates
	// ConfigMaps live.
	OwnNamespace string
	// MeshNamespace is where the control planes run; default istio-system.
	MeshNamespace string
	// ProxyImageRepo defaults a revision's proxyImage to <repo>:<version>;
	// default docker.io/istio/proxyv2.
	ProxyImageRepo string
	// State gives the Mesh and namespace labels; required.
	State State
	// Templates supplies each revision's template text; default the embedded
	// templates for every revision (StaticTemplates(DefaultTemplates())).
	Templates TemplateSource
	// Values are extra template values (.Values); clusterID, meshID and
	// trustDomain are defaulted to Kubernetes, cluster.local, cluster.local.
	Values map[string]string
	// Registerer receives the injector's metrics; default controller-runtime's
	// metrics.Registry (served on the manager's metrics endpoint).
	Registerer prometheus.Registerer
	// Log is used when the request context carries no logger.
	Log logr.Logger
	// MaxRequestBytes bounds the request body; default DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// ReleaseSettings, when set, gives the proxy image of a revision whose
	// control plane meshrev does not write itself (helm, external) from what
	// its release installed; a revision's explicit proxyImage still wins.
	ReleaseSettings ReleaseSettings
	// NoMeshPolicy decides a pod that asks for injection while no Mesh
	// exists; default NoMeshDeny.
	NoMeshPolicy NoMeshPolicy
}

// NoMeshPolicy is what the injector does with a pod that asks for injection
// (its labels or its namespace's) while no Mesh exists.
type NoMeshPolicy string

// The NoMeshPolicy values.
const (
	// NoMeshDeny refuses the pod: with no Mesh there is no revision to
	// inject, and a pod that asks for a sidecar and starts without one
	// silently bypasses the mesh. It fails closed, as an unreachable
	// injector under failurePolicy Fail does.
	NoMeshDeny NoMeshPolicy = "Deny"
	// NoMeshAllow admits the pod without a sidecar, with a warning.
	NoMeshAllow NoMeshPolicy = "Allow"
)

// Injector is the revision router: a mutating admission webhook for pod
// CREATE that resolves the pod's revision with revisions.Resolve and injects
// that revision's template. It serves admission.k8s.io/v1 AdmissionReview
// directly (bytes in, bytes out) and makes no API call per request.
//
// When State cannot be read (a cache not started or not synced), a pod is
// refused with a retryable 503 — never admitted without its sidecar — unless
// the pod alone decides the skip (system namespace, hostNetwork, opt-out).
// The last good render of each revision's templates is kept: when a templates
// ConfigMap is edited into something that does not render, or deleted, after
// the revision rendered once, pods keep being injected with the last good
// render, with an admission warning naming the ConfigMap and the error, an
// error log (keys revision, configmap, error; once per distinct error) and
// meshrev_template_errors_total{revision}. Only a revision that never
// rendered refuses its pods (500, naming the ConfigMap and the error).
type Injector struct {
	opts    InjectorOptions
	cache   templateCache
	metrics *injectorMetrics
	// builtin holds renders of the built-in templates by RevisionData, the
	// floor when a revision's templates never rendered.
	builtin     sync.Map
	builtinText Templates
	// checked is, per revision name, the inputs of its last successful
	// ValidateRevision: the controller checks every reconcile, and renders
	// again only when a revision's fields or template text changed.
	checked sync.Map // string → templateKey
}

// NewInjector checks opts, applies defaults and registers the metrics.
func NewInjector(opts InjectorOptions) (*Injector, error) {
	if opts.State == nil {
		return nil, errors.New("new injector: InjectorOptions.State is required (the manager's cache-backed state, see NewCacheState)")
	}
	if opts.OwnNamespace == "" {
		return nil, errors.New("new injector: InjectorOptions.OwnNamespace is required (meshrev's namespace, never injected)")
	}
	if opts.MeshNamespace == "" {
		opts.MeshNamespace = revisions.DefaultMeshNamespace
	}
	if opts.ProxyImageRepo == "" {
		opts.ProxyImageRepo = revisions.DefaultProxyImageRepo
	}
	if opts.Templates == nil {
		opts.Templates = StaticTemplates(DefaultTemplates())
	}
	values := map[string]string{"clusterID": "Kubernetes", "meshID": "cluster.local", "trustDomain": "cluster.local"}
	for k, v := range opts.Values {
		values[k] = v
	}
	opts.Values = values
	if opts.Registerer == nil {
		opts.Registerer = metrics.Registry
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	switch opts.NoMeshPolicy {
	case "":
		opts.NoMeshPolicy = NoMeshDeny
	case NoMeshDeny, NoMeshAllow:
	default:
		return nil, fmt.Errorf("new injector: NoMeshPolicy %q: want %s or %s", opts.NoMeshPolicy, NoMeshDeny, NoMeshAllow)
	}
	m, err := newInjectorMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new injector: %w", err)
	}
	return &Injector{opts: opts, metrics: m, builtinText: DefaultTemplates()}, nil
}

// reviewIn is the part of an AdmissionReview the injector reads.
type reviewIn struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Request    *requestIn `json:"request"`
}

type requestIn struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Name        string                      `json:"name"`
	Namespace   string                      `json:"namespace"`
	Operation   string                      `json:"operation"`
	Object      json.RawMessage             `json:"object"`
}

type reviewOut struct {
	APIVersion string                         `json:"apiVersion"`
	Kind       string                         `json:"kind"`
	Response   *admissionv1.AdmissionResponse `json:"response"`
}

var jsonPatchType = admissionv1.PatchTypeJSONPatch

// ServeHTTP handles one admission.k8s.io/v1 AdmissionReview of a pod. A body
// that is not an AdmissionReview gets HTTP 400 with the reason; everything
// else gets an AdmissionReview response.
func (i *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// Every request counts, refused and malformed ones too: a latency
	// histogram of successes only would hide slow failures.
	defer func() { i.metrics.latency.Observe(time.Since(start).Seconds()) }()
	ctx := r.Context()
	log, err := logr.FromContext(ctx)
	if err != nil {
		log = i.opts.Log
	}
	if r.Method != http.MethodPost {
		http.Error(w, "meshrev injector: admission reviews are POSTed", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		http.Error(w, fmt.Sprintf("meshrev injector: Content-Type %q is not supported, send application/json", ct), http.StatusUnsupportedMediaType)
		return
	}
	body, err := readBody(r, i.opts.MaxRequestBytes)
	if err != nil {
		http.Error(w, "meshrev injector: read request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if int64(len(body)) > i.opts.MaxRequestBytes {
		http.Error(w, fmt.Sprintf("meshrev injector: request body exceeds %d bytes", i.opts.MaxRequestBytes), http.StatusRequestEntityTooLarge)
		return
	}
	out, status, err := i.Review(ctx, log, body)
	if err != nil {
		log.Info("malformed admission review", "reason", err.Error())
		http.Error(w, "meshrev injector: "+err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// Review handles one AdmissionReview body and returns the response body. An
// error means the body is not a usable AdmissionReview; status is then the
// HTTP status to answer with.
func (i *Injector) Review(ctx context.Context, log logr.Logger, body []byte) (out []byte, status int, err error) {
	in, err := decodeReview(body)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("malformed AdmissionReview: %w", err)
	}
	if in.APIVersion != "admission.k8s.io/v1" || in.Kind != "AdmissionReview" {
		return nil, http.StatusBadRequest, fmt.Errorf("malformed AdmissionReview: got apiVersion %q kind %q, want admission.k8s.io/v1 AdmissionReview (set admissionReviewVersions: [v1])", in.APIVersion, in.Kind)
	}
	if in.Request == nil {
		return nil, http.StatusBadRequest, errors.New("malformed AdmissionReview: no request")
	}
	resp := i.admit(ctx, log, in.Request)
	resp.UID = in.Request.UID
	out, err = json.Marshal(reviewOut{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: resp})
	if err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("encode AdmissionReview response: %w", err)
	}
	return out, http.StatusOK, nil
}

// admit decides and builds the response of one request. It never panics on
// input: every failure becomes allowed:false with a message.
func (i *Injector) admit(ctx context.Context, log logr.Logger, req *requestIn) *admissionv1.AdmissionResponse {
	log = log.WithValues("namespace", req.Namespace, "uid", req.UID)
	if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Resource.Resource != "pods" || req.SubResource != "" {
		i.count("", resultError, "")
		return refuse(http.StatusBadRequest, fmt.Sprintf("meshrev's injector only admits pods, got %s %s (resource %q, subresource %q): restrict the MutatingWebhookConfiguration rules to pods", req.Kind.Version, req.Kind.Kind, req.Resource.Resource, req.SubResource))
	}
	if req.Operation != "CREATE" {
		// Containers cannot be added to a running pod; other operations pass.
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	pod, err := decodePod(req.Object)
	if err != nil {
		i.count("", resultError, "")
		return refuse(http.StatusBadRequest, fmt.Sprintf("meshrev's injector cannot decode the pod: %v", err))
	}
	if pod.Metadata == nil || pod.Spec == nil {
		i.count("", resultError, "")
		return refuse(http.StatusBadRequest, "meshrev's injector cannot decode the pod: it has no metadata or no spec object")
	}
	podName := pod.Metadata.Name
	if podName == "" {
		podName = pod.Metadata.GenerateName + "*"
	}
	log = log.WithValues("pod", podName)
	ns := req.Namespace
	if ns == "" {
		ns = pod.Metadata.Namespace
	}
	pod.Metadata.Namespace = ns // per-pod values name it (ISTIO_META_OWNER)

	mesh, meshErr := i.opts.State.Mesh(ctx)
	var spec *v1alpha1.MeshSpec
	if mesh != nil {
		spec = &mesh.Spec
	}
	nsLabels, nsKnown, nsErr := i.opts.State.NamespaceLabels(ctx, ns)
	d := revisions.Resolve(spec, i.opts.OwnNamespace, revisions.Subject{
		Namespace:       ns,
		NamespaceLabels: nsLabels,
		Labels:          pod.Metadata.Labels,
		Annotations:     pod.Metadata.Annotations,
		HostNetwork:     pod.Spec.HostNetwork,
	})
	if stateErr := errors.Join(meshErr, nsErr); stateErr != nil || !nsKnown {
		switch d.Reason {
		case revisions.ReasonSystemNamespace, revisions.ReasonHostNetwork, revisions.ReasonPodOptOut:
			// decided from the pod and its namespace's name alone
		default:
			i.count("", resultError, "")
			if stateErr != nil {
				// Without the Mesh or the namespace the decision is unknown:
				// admitting the pod would leave it without its sidecar.
				log.Error(stateErr, "injector state unreadable, pod refused for retry")
				return refuse(http.StatusServiceUnavailable, fmt.Sprintf("meshrev's injector could not read its cache (%v), so it cannot decide whether the pod needs a sidecar; retry the request", stateErr))
			}
			log.Info("namespace not in cache", "reason", "NamespaceUnknown")
			return refuse(http.StatusServiceUnavailable, fmt.Sprintf("meshrev's injector does not know namespace %s yet (its cache is catching up); retry the request", ns))
		}
	}
	log = log.WithValues("revision", d.RevisionName(), "reason", string(d.Reason))

	prev, warn := previousInjection(pod)
	warnings := d.Warnings
	if warn != "" {
		warnings = append(slices.Clip(warnings), warn)
	}

	if d.Reason == revisions.ReasonNoMesh && i.opts.NoMeshPolicy == NoMeshDeny {
		i.count("", resultDenied, d.Reason)
		log.Info("pod refused: no Mesh", "message", d.Message)
		return refuse(http.StatusForbidden, NoMeshRefusal(d.Message))
	}
	if d.Deny {
		i.count("", resultDenied, d.Reason)
		log.Info("pod refused", "message", d.Message)
		resp := refuse(http.StatusForbidden, d.Message)
		resp.Warnings = warnings
		return resp
	}
	if !d.Inject {
		i.count("", resultSkipped, d.Reason)
		resp := &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
		if prev != nil {
			// The pod was injected before (re-invocation) but must not be now.
			patch, err := buildPatch(pod, prev, nil, "", false, false)
			if err != nil {
				return i.fail(log, "", d.Reason, err, warnings)
			}
			resp.Patch, resp.PatchType = stripOwnLabels(patch, pod.Metadata.Labels), &jsonPatchType
			log.V(1).Info("injection removed", "previous", prev.Revision)
			return resp
		}
		if patch := stripOwnLabels(nil, pod.Metadata.Labels); patch != nil {
			// meshrev.io/revision the pod set itself, without a sidecar.
			resp.Patch, resp.PatchType = patch, &jsonPatchType
			log.Info("pod not injected; removed meshrev.io labels it set itself")
			return resp
		}
		log.V(1).Info("pod not injected")
		return resp
	}

	rt, twarn, err := i.revisionTemplates(ctx, log, mesh, d.Revision)
	if err != nil {
		return i.fail(log, d.Revision.Name, d.Reason, err, warnings)
	}
	if twarn != "" {
		warnings = append(slices.Clip(warnings), twarn)
	}
	gateway, gwarn := isGateway(pod)
	if gwarn != "" {
		warnings = append(slices.Clip(warnings), gwarn)
	}
	r := rt.sidecar
	if gateway {
		r = rt.gateway
	}
	patch, err := buildPatch(pod, prev, r, d.Revision.Name, gateway, i.nativeSidecar(ctx, d.Revision, pod))
	if err != nil {
		return i.fail(log, d.Revision.Name, d.Reason, err, warnings)
	}
	i.count(d.Revision.Name, resultInjected, d.Reason)
	log.V(1).Info("pod injected", "gateway", gateway)
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: stripOwnLabels(patch, pod.Metadata.Labels), PatchType: &jsonPatchType, Warnings: warnings}
}

// ownLabelPrefix marks the labels only meshrev sets: a pod never keeps one
// it set itself (the data-plane report trusts meshrev.io/revision).
const ownLabelPrefix = "meshrev.io/"

// stripOwnLabels appends to patch (a JSON Patch array, or nil) the removal of
// the pod's meshrev.io/* labels that patch does not handle: all of them when
// patch is nil (nothing injected), else all but meshrev.io/revision, which
// the injection patch sets or removes itself. It returns patch unchanged
// when there is nothing to remove (the common case: one prefix test per label).
func stripOwnLabels(patch []byte, labels map[string]string) []byte {
	var keys []string
	for k := range labels {
		if strings.HasPrefix(k, ownLabelPrefix) && (patch == nil || k != revisions.LabelRevision) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return patch
	}
	slices.Sort(keys)
	w := patchWriter{}
	removeKeys(&w, "/metadata/labels/", labels, keys)
	ops := w.bytes()
	if len(patch) <= 2 { // nil or []
		return ops
	}
	out := make([]byte, 0, len(patch)+len(ops))
	out = append(out, patch[:len(patch)-1]...)
	out = append(out, ',')
	return append(out, ops[1:]...)
}

// NoMeshRefusal is the message of a pod refused because no Mesh exists
// (NoMeshDeny), given the decision's own message.
func NoMeshRefusal(decision string) string {
	return decision + "; meshrev refuses such pods rather than start them without their sidecar (the manager's --no-mesh-policy=Allow admits them uninjected)"
}

// fail refuses a pod that cannot be injected correctly: a half-injected pod
// would be worse than a refused one, and its owner retries.
func (i *Injector) fail(log logr.Logger, rev string, reason revisions.Reason, err error, warnings []string) *admissionv1.AdmissionResponse {
	i.count(rev, resultError, reason)
	code := int32(http.StatusInternalServerError)
	if ce := (*conflictError)(nil); errors.As(err, &ce) {
		code = http.StatusBadRequest
		log.Info("pod cannot be injected", "message", err.Error())
	} else {
		log.Error(err, "injection failed")
	}
	resp := refuse(code, "meshrev cannot inject the pod: "+err.Error())
	resp.Warnings = warnings
	return resp
}

func refuse(code int32, msg string) *admissionv1.AdmissionResponse {
	reason := metav1.StatusReasonForbidden
	switch code {
	case http.StatusBadRequest:
		reason = metav1.StatusReasonBadRequest
	case http.StatusServiceUnavailable:
		reason = metav1.StatusReasonServiceUnavailable
	case http.StatusInternalServerError:
		reason = metav1.StatusReasonInternalError
	}
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
}

// isGateway says whether the pod gets the gateway template (the one rule of
// revisions.UsesGatewayTemplate: the annotation, as in Istio), and warns
// about template names the injector does not know.
func isGateway(p *podIn) (bool, string) {
	gateway := revisions.UsesGatewayTemplate(p.Metadata.Annotations)
	v, ok := p.Metadata.Annotations[revisions.AnnotationTemplates]
	if !ok {
		return gateway, ""
	}
	var unknown []string
	for t := range strings.SplitSeq(v, ",") {
		switch t = strings.TrimSpace(t); t {
		case revisions.TemplateGateway, revisions.TemplateSidecar, "":
		default:
			unknown = append(unknown, t)
		}
	}
	if len(unknown) > 0 {
		return gateway, fmt.Sprintf("annotation %s=%q names templates meshrev does not have (%s); only %q and %q exist, so they are ignored",
			revisions.AnnotationTemplates, v, strings.Join(unknown, ", "), revisions.TemplateSidecar, revisions.TemplateGateway)
	}
	return gateway, ""
}

// previousInjection reads the status annotation of an earlier injection.
func previousInjection(p *podIn) (*revisions.InjectionStatus, string) {
	v, ok := p.Metadata.Annotations[revisions.AnnotationStatus]
	if !ok {
		return nil, ""
	}
	var st revisions.InjectionStatus
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		return nil, fmt.Sprintf("annotation %s is not an injection status (%v) and is ignored; remove it from the pod template", revisions.AnnotationStatus, err)
	}
	return &st, ""
}

// revisionData applies the defaults of a revision's fields.
func (i *Injector) revisionData(rev *v1alpha1.Revision) RevisionData {
	d := RevisionData{Name: rev.Name, Version: rev.Version, ProxyImage: rev.ProxyImage, DiscoveryAddress: rev.DiscoveryAddress,
		Proxy: defaultProxy, proxyKey: defaultProxyKey, CNI: rev.TrafficInterception == v1alpha1.TrafficInterceptionCNI}
	if d.ProxyImage == "" {
		d.ProxyImage = i.opts.ProxyImageRepo + ":" + rev.Version
	}
	if d.DiscoveryAddress == "" {
		d.DiscoveryAddress = revisions.DiscoveryAddress(rev.Name, i.opts.MeshNamespace)
	}
	return d
}

// revisionTemplates returns the rendered templates of rev, from the cache
// unless the revision or its template text changed. When the current
// templates cannot be read or do not render but an earlier render of rev
// succeeded (a templates ConfigMap edited or deleted after publish), it keeps
// injecting with that last good render and returns a warning for the
// admission response; the error is logged (once per distinct error) and
// counted in meshrev_template_errors_total. Only a revision that never
// rendered is an error.
func (i *Injector) revisionTemplates(ctx context.Context, log logr.Logger, mesh *v1alpha1.Mesh, rev *v1alpha1.Revision) (rt *revisionTemplates, warning string, err error) {
	rd := i.revisionData(rev)
	if err := i.releaseSettings(ctx, rev, &rd); err != nil {
		return nil, "", err
	}
	key := templateKey{name: rev.Name, version: rev.Version, proxyImage: rd.ProxyImage, discovery: rd.DiscoveryAddress, proxy: rd.proxyKey, templatesCM: rev.Templates, cni: rd.CNI}
	text, err := i.opts.Templates.Templates(ctx, rev)
	if err == nil {
		key.text = text
		rt, err = i.cache.get(key, func() (*revisionTemplates, error) {
			if mesh != nil {
				i.cache.prune(func(name string) bool { return revisions.FindRevision(&mesh.Spec, name) != nil })
			}
			return i.render(rd, text)
		})
		if err == nil {
			i.cache.healed(rev.Name)
			i.metrics.templatesDegraded.WithLabelValues(rev.Name).Set(0)
			return rt, "", nil
		}
	}
	origin := templatesOrigin(i.opts.Templates, rev)
	i.metrics.templateErrors.WithLabelValues(rev.Name).Inc()
	rt = i.lastGoodTemplates(key, rd)
	if i.cache.firstReport(rev.Name, err.Error()) {
		log.Error(err, "templates of a revision do not render", "revision", rev.Name, "configmap", origin, "lastGoodRender", rt != nil)
	}
	if rt != nil {
		i.metrics.templatesDegraded.WithLabelValues(rev.Name).Set(1)
		return rt, fmt.Sprintf("the templates of revision %s (%s) do not render (%v): the pod was injected with their last good render; fix the templates", rev.Name, origin, err), nil
	}
	// The built-in templates are the floor: a templates ConfigMap deleted
	// or broken before this process ever rendered it (a restart) must not
	// refuse pods the built-in templates can serve.
	builtin, berr := i.builtinTemplates(rd)
	if berr != nil {
		return nil, "", fmt.Errorf("the templates of revision %s (%s) do not render and no earlier render of them exists: %w; the built-in templates do not render either: %v; fix the templates", rev.Name, origin, err, berr)
	}
	i.metrics.templatesDegraded.WithLabelValues(rev.Name).Set(1)
	return builtin, fmt.Sprintf("the templates of revision %s (%s) do not render (%v) and this manager never rendered them: the pod was injected with meshrev's built-in templates; fix the templates", rev.Name, origin, err), nil
}

// builtinTemplates renders the built-in templates for rd, once per distinct
// rd (kept apart from the template cache, whose entry keeps the broken
// render's error so that it is not rendered again for every pod).
func (i *Injector) builtinTemplates(rd RevisionData) (*revisionTemplates, error) {
	// RevisionData holds maps: its comparable fields are the key.
	key := templateKey{name: rd.Name, version: rd.Version, proxyImage: rd.ProxyImage, discovery: rd.DiscoveryAddress, proxy: rd.proxyKey}
	if rt, ok := i.builtin.Load(key); ok {
		return rt.(*revisionTemplates), nil
	}
	rt, err := i.render(rd, i.builtinText)
	if err != nil {
		return nil, err
	}
	i.builtin.Store(key, rt)
	return rt, nil
}

// lastGoodTemplates returns the last good render of key's revision. When the
// revision's own fields changed since, the last good text is rendered again
// with the current fields, so that a fallback never injects stale images or
// addresses; nil when there is nothing usable.
func (i *Injector) lastGoodTemplates(key templateKey, rd RevisionData) *revisionTemplates {
	goodKey, good, ok := i.cache.lastGood(key.name)
	if !ok {
		return nil
	}
	key.text = goodKey.text
	if key == goodKey {
		return good
	}
	rt, err := i.render(rd, goodKey.text)
	if err != nil {
		return nil
	}
	i.cache.setGood(key, rt)
	return rt
}

// templateData is what a revision's templates render with: built here only,
// for injection and for the templates validator alike.
func (i *Injector) templateData(rd RevisionData) *TemplateData {
	return &TemplateData{Revision: rd, MeshNamespace: i.opts.MeshNamespace, Values: i.opts.Values}
}

func (i *Injector) render(rd RevisionData, text Templates) (*revisionTemplates, error) {
	data := i.templateData(rd)
	s, err := renderTemplate(revisions.TemplateSidecar, text.Sidecar, data)
	if err != nil {
		return nil, fmt.Errorf("revision %s: %w", rd.Name, err)
	}
	g, err := renderTemplate(revisions.TemplateGateway, text.Gateway, data)
	if err != nil {
		return nil, fmt.Errorf("revision %s: %w", rd.Name, err)
	}
	base, err := newProxyConfigBase(rd.Proxy.DefaultConfig, rd.DiscoveryAddress, rd.Proxy.HoldApplicationUntilProxyStarts)
	if err != nil {
		return nil, fmt.Errorf("revision %s: %w", rd.Name, err)
	}
	s.proxyConfig, g.proxyConfig = base, base
	return &revisionTemplates{sidecar: s, gateway: g}, nil
}

// ValidateRevision renders rev's templates (its own ConfigMap or the
// defaults) as injection would, so that the Mesh validator refuses to publish
// a revision whose templates do not parse or render. It does not touch the
// injection cache.
func (i *Injector) ValidateRevision(ctx context.Context, mesh *v1alpha1.Mesh, rev v1alpha1.Revision) error {
	text, err := i.opts.Templates.Templates(ctx, &rev)
	if err != nil {
		return err
	}
	rd := i.revisionData(&rev)
	key := templateKey{name: rev.Name, version: rev.Version, proxyImage: rd.ProxyImage, discovery: rd.DiscoveryAddress, proxy: rd.proxyKey, templatesCM: rev.Templates, cni: rd.CNI, text: text}
	if last, ok := i.checked.Load(rev.Name); ok && last.(templateKey) == key {
		return nil
	}
	if _, err := i.render(rd, text); err != nil {
		i.checked.Delete(rev.Name)
		return err
	}
	i.checked.Store(rev.Name, key)
	return nil
}

// RenderRevision renders rev's templates and returns the sidecar and gateway
// fragments, for the namespace validator's Pod Security check and tests.
func (i *Injector) RenderRevision(ctx context.Context, rev v1alpha1.Revision) (sidecar, gateway Fragment, err error) {
	text, err := i.opts.Templates.Templates(ctx, &rev)
	if err != nil {
		return Fragment{}, Fragment{}, err
	}
	rt, err := i.render(i.revisionData(&rev), text)
	if err != nil {
		return Fragment{}, Fragment{}, err
	}
	return rt.sidecar.frag, rt.gateway.frag, nil
}

// readBody reads at most max+1 bytes. It allocates as bytes arrive, never
// ahead of them by more than a small first buffer: a client announcing a
// large Content-Length and sending slowly holds only what it sent.
func readBody(r *http.Request, max int64) ([]byte, error) {
	initial := int64(bodyChunk)
	if r.ContentLength > 0 && r.ContentLength < initial {
		initial = r.ContentLength + 1 // room to see the end of the body
	}
	buf := make([]byte, 0, initial)
	body := io.LimitReader(r.Body, max+1)
	for {
		if len(buf) == cap(buf) {
			// Doubles (bounded by what arrived), but never past the
			// announced end: an 80 kB body then costs 32+64+80 kB, not
			// 32+64+128 kB.
			n := len(buf)
			if rest := int(r.ContentLength+1) - len(buf); r.ContentLength > 0 && rest < n {
				n = rest
				if n < 512 {
					n = 512 // longer than announced: found out below
				}
			}
			buf = slices.Grow(buf, n)
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if r.ContentLength > 0 && int64(len(buf)) > r.ContentLength {
		return nil, errors.New("request body is longer than its Content-Length")
	}
	return buf, nil
}

// bodyChunk is the most readBody allocates before bytes arrive.
const bodyChunk = 32 << 10
