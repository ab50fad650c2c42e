package webhook

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshrev/meshrev/revisions"
)

// podIn is the part of a pod the injector reads: the request decodes only
// this, never a whole corev1.Pod.
type podIn struct {
	// Metadata and Spec are nil when absent or null: such an object is not
	// a pod and cannot be patched.
	Metadata *podMeta `json:"metadata"`
	Spec     *podSpec `json:"spec"`
}

type podMeta struct {
	Name            string            `json:"name"`
	GenerateName    string            `json:"generateName"`
	Namespace       string            `json:"namespace"`
	Labels          map[string]string `json:"labels"`
	Annotations     map[string]string `json:"annotations"`
	OwnerReferences []ownerIn         `json:"ownerReferences"`
}

type podSpec struct {
	HostNetwork bool `json:"hostNetwork"`
	// NodeName is set on a pod created already bound to a node: Auto
	// sidecar mode then reads that node's kubelet.
	NodeName       string    `json:"nodeName"`
	InitContainers []namedIn `json:"initContainers"`
	// InitFull are the init containers as containers (a native sidecar's
	// env is read on re-invocation); the walker decodes both at once.
	InitFull   []containerIn `json:"-"`
	Containers []containerIn `json:"containers"`
	Volumes    []namedIn     `json:"volumes"`
	// SecurityContext is the pod's, raw: a template's is merged over it.
	SecurityContext json.RawMessage `json:"securityContext"`
}

type ownerIn struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Controller *bool  `json:"controller"`
}

type namedIn struct {
	Name string `json:"name"`
}

// containerIn keeps env and volumeMounts raw: they are decoded only for the
// gateway container, so a pod with thousands of env vars costs one scan.
type containerIn struct {
	Name         string                 `json:"name"`
	Ports        []corev1.ContainerPort `json:"ports"`
	Env          json.RawMessage        `json:"env"`
	VolumeMounts json.RawMessage        `json:"volumeMounts"`
	// Probes and lifecycle hooks, rewritten to the agent (probes.go).
	LivenessProbe  *corev1.Probe     `json:"livenessProbe"`
	ReadinessProbe *corev1.Probe     `json:"readinessProbe"`
	StartupProbe   *corev1.Probe     `json:"startupProbe"`
	Lifecycle      *corev1.Lifecycle `json:"lifecycle"`
	// Raw is the container's JSON (a pod's own istio-proxy is merged).
	Raw json.RawMessage `json:"-"`
}

// patchWriter appends JSON Patch operations to a byte slice.
type patchWriter struct {
	buf []byte
	n   int
}

func (w *patchWriter) begin(op string) {
	if w.n == 0 {
		w.buf = append(w.buf, '[')
	} else {
		w.buf = append(w.buf, ',')
	}
	w.n++
	w.buf = append(w.buf, `{"op":"`...)
	w.buf = append(w.buf, op...)
	w.buf = append(w.buf, `","path":`...)
}

// remove writes a remove of path + index.
func (w *patchWriter) remove(path string, index int) {
	w.begin("remove")
	w.buf = append(w.buf, '"')
	w.buf = append(w.buf, path...)
	w.buf = strconv.AppendInt(w.buf, int64(index), 10)
	w.buf = append(w.buf, `"}`...)
}

// removeKey writes a remove of an already JSON-encoded path.
func (w *patchWriter) removeKey(pathJSON []byte) {
	w.begin("remove")
	w.buf = append(w.buf, pathJSON...)
	w.buf = append(w.buf, '}')
}

// addIndexed writes op of path + index ("-" when index < 0) with a value.
func (w *patchWriter) addIndexed(op, path string, index int, value ...[]byte) {
	w.begin(op)
	w.buf = append(w.buf, '"')
	w.buf = append(w.buf, path...)
	if index < 0 {
		w.buf = append(w.buf, '-')
	} else {
		w.buf = strconv.AppendInt(w.buf, int64(index), 10)
	}
	w.buf = append(w.buf, `","value":`...)
	for _, v := range value {
		w.buf = append(w.buf, v...)
	}
	w.buf = append(w.buf, '}')
}

// add writes an add of a literal path (no index).
func (w *patchWriter) add(path string, value ...[]byte) {
	w.begin("add")
	w.buf = append(w.buf, '"')
	w.buf = append(w.buf, path...)
	w.buf = append(w.buf, `","value":`...)
	for _, v := range value {
		w.buf = append(w.buf, v...)
	}
	w.buf = append(w.buf, '}')
}

// addKey writes an add of an already JSON-encoded path.
func (w *patchWriter) addKey(pathJSON, value []byte) {
	w.begin("add")
	w.buf = append(w.buf, pathJSON...)
	w.buf = append(w.buf, `,"value":`...)
	w.buf = append(w.buf, value...)
	w.buf = append(w.buf, '}')
}

func (w *patchWriter) bytes() []byte {
	if w.n == 0 {
		return nil
	}
	return append(w.buf, ']')
}

// buildPatch builds the JSON Patch that takes pod to its injected form for
// revision rev with template r, or — r nil — removes an earlier injection.
// prev is the earlier injection's status (nil if none): what it added is
// removed first, highest index first, so that injection is never doubled.
func buildPatch(p *podIn, prev *revisions.InjectionStatus, r *rendered, rev string, gateway, native bool) ([]byte, error) {
	w := patchWriter{buf: make([]byte, 0, 8192)}
	spec := p.Spec

	// 1. Remove what an earlier injection added.
	var goneC, goneI, goneV []int
	if prev != nil {
		goneC = indicesOf(spec.Containers, func(c containerIn) string { return c.Name }, prev.Containers)
		goneI = indicesOf(spec.InitContainers, func(c namedIn) string { return c.Name }, prev.InitContainers)
		goneV = indicesOf(spec.Volumes, func(v namedIn) string { return v.Name }, prev.Volumes)
		for _, j := range slices.Backward(goneC) {
			w.remove("/spec/containers/", j)
		}
		for _, j := range slices.Backward(goneI) {
			w.remove("/spec/initContainers/", j)
		}
		for _, j := range slices.Backward(goneV) {
			w.remove("/spec/volumes/", j)
		}
	}

	if r == nil {
		var lp, ap []string
		if prev != nil {
			lp, ap = prev.Labels, prev.Annotations
			// The pod's own istio-proxy / istio-init (a gateway's container)
			// were merged into what is removed: put them back as written.
			if err := restoreOverrides(&w, p, len(spec.Containers)-len(goneC), len(spec.InitContainers)-len(goneI)); err != nil {
				return nil, err
			}
			ap = append(slices.Clip(ap), annotationProxyOverrides)
		}
		removeKeys(&w, "/metadata/labels/", p.Metadata.Labels, append(slices.Clip(lp), revisions.LabelRevision))
		removeKeys(&w, "/metadata/annotations/", p.Metadata.Annotations, append(slices.Clip(ap), revisions.AnnotationRev, revisions.AnnotationStatus))
		return w.bytes(), nil
	}

	// Istio refuses a pod whose annotations it cannot apply.
	if err := validateAnnotations(p.Metadata.Annotations); err != nil {
		return nil, err
	}
	pc := &podContainers{initJSON: r.initJSON, initNames: r.initNames, proxyHead: r.proxyHead, proxyTail: r.proxyTail, volumeJSON: r.volumeJSON, volumeNames: r.volumeNames}

	// The pod's own containers after the removals (new index = position).
	apps := make([]*containerIn, 0, len(spec.Containers))
	for j := range spec.Containers {
		if !slices.Contains(goneC, j) {
			apps = append(apps, &spec.Containers[j])
		}
	}
	inits := make([]*containerIn, 0, len(spec.InitFull))
	for j := range spec.InitFull {
		if !slices.Contains(goneI, j) {
			inits = append(inits, &spec.InitFull[j])
		}
	}
	// A gateway's proxy is a container: Istio's gateway template has no
	// init-container sidecar to move.
	native = native && !gateway && r.proxyIndex >= 0
	// The pod's own istio-proxy and istio-init (merge.go) are merged under
	// the template's, and the pod's variant of the template's containers
	// (podcontainers.go).
	var own, ownInit *ownProxy
	ownIdx, ownInitIdx := -1, -1
	if r.proxyIndex >= 0 {
		var err error
		if own, ownIdx, err = findOwn(p, proxyContainerName, apps); err != nil {
			return nil, err
		}
		initOwn := own
		if r.cni && slices.ContainsFunc(inits, func(c *containerIn) bool { return c.Name == initContainerName }) {
			// Istio adjusts the pod's own istio-init to its proxy user,
			// and then leaves istio-validation alone.
			initOwn = nil
		}
		if pc, err = r.podContainersFor(p.Metadata.Annotations, initOwn); err != nil {
			return nil, err
		}
	}
	if slices.Contains(pc.initNames, initContainerName) {
		var err error
		if ownInit, ownInitIdx, err = findOwn(p, initContainerName, inits); err != nil {
			return nil, err
		}
	}
	gi := goneI
	if ownInitIdx >= 0 {
		gi = append(slices.Clip(goneI), indexAfter(goneI, ownInitIdx))
	}
	if err := checkConflicts("init container", spec.InitContainers, gi, pc.initNames); err != nil {
		return nil, err
	}
	if err := checkConflicts("volume", spec.Volumes, goneV, pc.volumeNames); err != nil {
		return nil, err
	}
	names := make([]namedIn, 0, len(apps))
	for _, c := range apps {
		if c.Name != proxyContainerName || r.proxyIndex < 0 {
			names = append(names, namedIn{c.Name})
		}
	}
	if err := checkConflicts("container", names, nil, r.containerNames); err != nil {
		return nil, err
	}
	var overrides []byte
	if own != nil || ownInit != nil {
		if _, recorded := p.Metadata.Annotations[annotationProxyOverrides]; !recorded && prev == nil {
			var err error
			if overrides, err = recordOverrides(ownInit, own, native); err != nil {
				return nil, err
			}
		}
	}
	if ownInit != nil {
		// Istio merges the pod's istio-init over the template's, then points
		// its -u at the pod's proxy user.
		var err error
		if pc.initJSON, err = mergeOwnInit(pc, ownInit, own.proxyUID(), p.Metadata.Annotations[annInterceptionMode]); err != nil {
			return nil, err
		}
	}
	proxyJSON := func(env [][]byte) ([]byte, error) {
		b := spliceEnv(pc.proxyHead, pc.proxyTail, env)
		if own != nil {
			return own.merge(b)
		}
		return b, nil
	}

	dm := podDeployMeta(p.Metadata)
	envApps := apps
	if own != nil && ownIdx < 0 {
		// Re-invoked: the pod's own istio-proxy, removed with the injection,
		// is read from the overrides annotation, as Istio re-inserts it.
		envApps = append(slices.Clip(apps), &containerIn{Name: proxyContainerName, Ports: own.container.Ports})
	}
	podEnv, hold, err := perPodEnv(p, envApps, dm, r.proxyConfig)
	if err != nil {
		return nil, err
	}
	if pe := rewriteProbes(&w, p.Metadata.Annotations, apps, inits, injectedEnv(spec, goneC, goneI, envAppProbers)); pe != nil {
		podEnv = append(podEnv, pe)
	}
	promRemove, promSet, promEnv, err := prometheusMerge(p.Metadata.Annotations, defaultStatusPort)
	if err != nil {
		return nil, err
	}
	if promEnv == nil && promSet == nil {
		// Merged before (re-invocation): keep what the agent was told.
		if v := injectedEnv(spec, goneC, goneI, envPrometheusAnnotations); v != "" {
			promEnv = envVar(envPrometheusAnnotations, v)
		}
	}
	if promEnv != nil {
		podEnv = append(podEnv, promEnv)
	}
	if native {
		hold = false // a native sidecar starts before the app anyway
	}

	// 2. Init containers: in classic mode after the pod's own (Istio's
	// order: an init container that needs the network runs before traffic
	// is captured); with a native sidecar first, followed by istio-proxy, so
	// that the pod's init containers are in the mesh.
	initJSON := pc.initJSON
	if native {
		b, err := proxyJSON(podEnv)
		if err != nil {
			return nil, err
		}
		initJSON = append(slices.Clip(initJSON), nativeProxy(b, p.Metadata.Annotations))
	}
	if ownIdx >= 0 {
		// The pod's own istio-proxy is replaced by the merged sidecar.
		w.remove("/spec/containers/", ownIdx)
	}
	if ownInitIdx >= 0 {
		// So is its own istio-init by the merged one.
		w.remove("/spec/initContainers/", ownInitIdx)
	}
	if len(initJSON) > 0 {
		switch {
		case spec.InitContainers == nil:
			w.add("/spec/initContainers", jsonArray(initJSON))
		case native:
			at := 0
			if r.cni && ownInitIdx < 0 {
				// The pod's own istio-init (kept with istio-cni) goes first,
				// in front of the sidecar (Istio's reorderPod).
				if k := slices.IndexFunc(inits, func(c *containerIn) bool { return c.Name == initContainerName }); k > 0 {
					w.remove("/spec/initContainers/", k)
					w.addIndexed("add", "/spec/initContainers/", 0, inits[k].Raw)
				}
				if slices.ContainsFunc(inits, func(c *containerIn) bool { return c.Name == initContainerName }) {
					at = 1
				}
			}
			for j, b := range initJSON {
				w.addIndexed("add", "/spec/initContainers/", at+j, b)
			}
		default:
			// istio-validation first, so that no container of the pod runs
			// before the check; istio-init last (Istio's reorderPod).
			first := 0
			for j, b := range initJSON {
				if pc.initNames[j] == validationContainerName {
					w.addIndexed("add", "/spec/initContainers/", first, b)
					first++
					continue
				}
				w.addIndexed("add", "/spec/initContainers/", -1, b)
			}
		}
	}

	// 3. Containers: appended; the pod's own istio-proxy was merged into
	// the template's (merge.go). Empty lists, not null: Istio's tools read
	// the same annotation.
	status := revisions.InjectionStatus{Revision: rev, Template: revisions.TemplateSidecar, InitContainers: orEmpty(pc.initNames), Volumes: orEmpty(pc.volumeNames)}
	if gateway {
		status.Template = revisions.TemplateGateway
	}
	status.Containers = r.containerNames
	containers := make([][]byte, 0, len(r.containerJSON))
	var first []byte
	for j, b := range r.containerJSON {
		if j == r.proxyIndex {
			if native {
				status.InitContainers = append(slices.Clip(status.InitContainers), proxyContainerName)
				status.Containers = slices.DeleteFunc(slices.Clone(status.Containers), func(n string) bool { return n == proxyContainerName })
				continue
			}
			if b, err = proxyJSON(podEnv); err != nil {
				return nil, err
			}
			if hold {
				// holdApplicationUntilProxyStarts: the proxy first,
				// and the kubelet waits for it before the next container.
				first = withFields(b, holdLifecycle)
				continue
			}
		}
		containers = append(containers, b)
	}
	podHas := spec.Containers != nil
	if first != nil {
		if !podHas {
			containers = append([][]byte{first}, containers...)
		} else {
			w.addIndexed("add", "/spec/containers/", 0, first)
		}
	}
	if !podHas {
		w.add("/spec/containers", jsonArray(containers))
	} else {
		for _, b := range containers {
			w.addIndexed("add", "/spec/containers/", -1, b)
		}
	}

	// The template's pod security context (the gateway's sysctl).
	if r.securityJSON != nil {
		sc, err := mergeSecurityContext(spec.SecurityContext, r.securityJSON)
		if err != nil {
			return nil, err
		}
		w.add("/spec/securityContext", sc)
	}

	// 4. Volumes.
	if len(pc.volumeJSON) > 0 {
		if spec.Volumes == nil {
			w.add("/spec/volumes", jsonArray(pc.volumeJSON))
		} else {
			// In front of the pod's own, where Istio's merge puts them.
			for j, b := range pc.volumeJSON {
				w.addIndexed("add", "/spec/volumes/", j, b)
			}
		}
	}

	// 5. Labels and annotations: the template's only where the pod has none
	// of its own (or injection set them before), meshrev's always.
	var prevL, prevA []string
	if prev != nil {
		prevL, prevA = prev.Labels, prev.Annotations
	}
	annots, labels := r.annots, r.labels
	if r.cni {
		// istio-cni reads the excluded inbound ports from the annotation:
		// Istio's template writes the pod's own with the status port added.
		annots, promSet = cniExcludeInbound(p.Metadata.Annotations, prevA, annots, promSet)
	}
	if app := firstApp(apps); app != "" {
		annots = append(annots[:len(annots):len(annots)], kv(annotationsPrefix, annotationDefaultLogs, app), kv(annotationsPrefix, defaultContainerAnnotation, app))
	}
	labels = append(labels[:len(labels):len(labels)], canonicalLabels(p.Metadata.Labels, dm)...)
	lplan := planMap(p.Metadata.Labels, labels, prevL)
	aplan := planMap(p.Metadata.Annotations, annots, prevA)
	status.Labels, status.Annotations = lplan.owned, aplan.owned
	statusJSON, err := json.Marshal(status)
	if err != nil {
		return nil, fmt.Errorf("encode injection status: %w", err)
	}
	revJSON := appendJSONString(nil, rev)
	lplan.write(&w, "/metadata/labels", kvJSON{key: revisions.LabelRevision, raw: rev, path: pathLabelRevision, value: revJSON})
	if aplan.have != nil {
		// The Prometheus merge replaces the pod's own scrape settings.
		removeKeys(&w, annotationsPrefix, aplan.have, slices.DeleteFunc(promRemove, func(k string) bool {
			return slices.Contains(aplan.remove, k) || slices.ContainsFunc(promSet, func(e kvJSON) bool { return e.key == k })
		}))
	}
	if overrides != nil {
		promSet = append(promSet, kv(annotationsPrefix, annotationProxyOverrides, string(overrides)))
	}
	aplan.write(&w, "/metadata/annotations", append(promSet,
		kvJSON{key: revisions.AnnotationRev, raw: rev, path: pathAnnotationRev, value: revJSON},
		kvJSON{key: revisions.AnnotationStatus, raw: string(statusJSON), path: pathAnnotationStatus, value: appendJSONString(nil, string(statusJSON))})...)
	return w.bytes(), nil
}

// Paths of the keys meshrev always writes, encoded once.
var (
	pathLabelRevision    = appendJSONString(nil, "/metadata/labels/"+escapePointer(revisions.LabelRevision))
	pathAnnotationRev    = appendJSONString(nil, annotationsPrefix+escapePointer(revisions.AnnotationRev))
	pathAnnotationStatus = appendJSONString(nil, annotationsPrefix+escapePointer(revisions.AnnotationStatus))
)

const annotationsPrefix = "/metadata/annotations/"

// defaultContainerAnnotation tells kubectl which container logs and exec
// go to by default: the app's, not the sidecar's.
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// meshrevKey reports the keys meshrev itself sets, which templates may not.
func meshrevKey(k string) bool {
	return k == revisions.LabelRevision || k == revisions.AnnotationRev || k == revisions.AnnotationStatus
}

// mapPlan is what injection does to the pod's labels or annotations.
type mapPlan struct {
	have   map[string]string
	set    []kvJSON
	remove []string
	owned  []string
}

// planMap decides which template keys to set: those the pod lacks, and
// those an earlier injection set (prevOwned), which follow the new template
// or are removed when it no longer has them.
func planMap(have map[string]string, tmpl []kvJSON, prevOwned []string) mapPlan {
	m := mapPlan{have: have}
	for _, e := range tmpl {
		v, ok := have[e.key]
		if ok && !slices.Contains(prevOwned, e.key) {
			continue // the pod's own value wins
		}
		m.owned = append(m.owned, e.key)
		if !ok || v != e.raw {
			m.set = append(m.set, e)
		}
	}
	for _, k := range prevOwned {
		if _, ok := have[k]; ok && !slices.Contains(m.owned, k) {
			m.remove = append(m.remove, k)
		}
	}
	return m
}

func (m *mapPlan) write(w *patchWriter, path string, meshrev ...kvJSON) {
	if m.have == nil {
		// No map yet: add it whole.
		obj := []byte{'{'}
		for _, e := range append(slices.Clip(m.set), meshrev...) {
			if len(obj) > 1 {
				obj = append(obj, ',')
			}
			obj = appendJSONString(obj, e.key)
			obj = append(obj, ':')
			obj = append(obj, e.value...)
		}
		w.add(path, append(obj, '}'))
		return
	}
	removeKeys(w, path+"/", m.have, m.remove)
	for _, e := range m.set {
		w.addKey(keyPath(e, path), e.value)
	}
	for _, e := range meshrev {
		if v, ok := m.have[e.key]; ok && v == e.raw {
			continue
		}
		w.addKey(keyPath(e, path), e.value)
	}
}

func keyPath(e kvJSON, path string) []byte {
	if e.path != nil {
		return e.path
	}
	return appendJSONString(nil, path+"/"+escapePointer(e.key))
}

// removeKeys removes the keys of have that are listed.
func removeKeys(w *patchWriter, prefix string, have map[string]string, keys []string) {
	for _, k := range keys {
		if _, ok := have[k]; ok {
			w.removeKey(appendJSONString(nil, prefix+escapePointer(k)))
		}
	}
}

// decodeNames returns the names of a raw array of named objects; nil when
// the array is absent or null.
func decodeNames(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []namedIn
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	names := make([]string, len(items))
	for j, it := range items {
		names[j] = it.Name
	}
	return names, nil
}

func indicesOf[T any](items []T, name func(T) string, names []string) []int {
	var out []int
	for j, it := range items {
		if slices.Contains(names, name(it)) {
			out = append(out, j)
		}
	}
	return out
}

func checkConflicts(kind string, have []namedIn, gone []int, adding []string) error {
	for j, h := range have {
		if slices.Contains(gone, j) {
			continue
		}
		if slices.Contains(adding, h.Name) {
			return &conflictError{fmt.Sprintf("the pod already has a %s named %s that meshrev did not inject; rename it, or opt the pod out with the label %s=false", kind, h.Name, revisions.LabelSidecarInject)}
		}
	}
	return nil
}

// conflictError is a pod that cannot be injected as it is: the person who
// wrote it must change it.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

// perPodEnv builds the env vars the injector computes for each pod, as
// Istio's template does: app containers, their ports, the workload and its
// owner, the pod's ProxyConfig over the revision's base; hold says whether that ProxyConfig holds
// the application until the proxy starts.
func perPodEnv(p *podIn, apps []*containerIn, dm deployMeta, base *proxyConfigBase) (env [][]byte, hold bool, err error) {
	names := make([]string, 0, len(apps))
	var ports []corev1.ContainerPort
	for _, c := range apps {
		if c.Name != proxyContainerName {
			names = append(names, c.Name)
		}
		ports = append(ports, c.Ports...)
	}
	env = make([][]byte, 0, 6)
	env = append(env, envVar("ISTIO_META_APP_CONTAINERS", strings.Join(names, ",")))
	if ports == nil {
		ports = []corev1.ContainerPort{}
	}
	if b, merr := json.Marshal(ports); merr == nil {
		env = append(env, envVar("ISTIO_META_POD_PORTS", string(b)))
	}
	if wl := firstNonEmpty(p.Metadata.Labels[labelWorkloadName], dm.name); wl != "" {
		env = append(env, envVar("ISTIO_META_WORKLOAD_NAME", wl))
	}
	if o := ownerEnv(dm, p.Metadata.Namespace); o != nil {
		env = append(env, o)
	}
	pc, hold, err := proxyConfig(base, p.Metadata.Annotations)
	if err != nil {
		return nil, false, err
	}
	return append(env, pc), hold, nil
}

// firstApp is the first of the pod's own containers that is not a proxy:
// the default container of kubectl exec and logs.
func firstApp(apps []*containerIn) string {
	for _, c := range apps {
		if c.Name != proxyContainerName {
			return c.Name
		}
	}
	return ""
}

// spliceEnv puts the per-pod env entries into the pre-marshalled
// istio-proxy container at the sentinel's place.
func spliceEnv(head, tail []byte, env [][]byte) []byte {
	n := len(head) + len(tail)
	for _, e := range env {
		n += len(e) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, head...)
	for j, e := range env {
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, tail...)
}

func jsonArray(items [][]byte) []byte {
	n := 2
	for _, it := range items {
		n += len(it) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for j, it := range items {
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, it...)
	}
	return append(b, ']')
}

// escapePointer escapes a map key for a JSON pointer (RFC 6901): ~ → ~0, / → ~1.
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for j := 0; j < len(s); {
		c := s[j]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				j++
				continue
			}
			b = append(b, s[start:j]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			j++
			start = j
			continue
		}
		r, size := utf8.DecodeRuneInString(s[j:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:j]...)
			b = append(b, `\ufffd`...)
			j += size
			start = j
			continue
		}
		j += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// sortedKeys returns m's keys in order, for deterministic patches.
func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// cniExcludeInbound gives the excluded inbound ports annotation of a pod
// injected for istio-cni its per-pod value (Istio's excludeInboundPort of
// the status port and the pod's own list): in annots (set by injection) when
// the pod has none, in force (set over the pod's own) when it differs. On
// re-invocation, a value an earlier injection set (listed in prevA) is not
// the pod's own.
func cniExcludeInbound(a map[string]string, prevA []string, annots, force []kvJSON) ([]kvJSON, []kvJSON) {
	_, hasStatus := a[annotationStatusPort]
	own, hasOwn := a[annExcludeInbound]
	if hasOwn && slices.Contains(prevA, annExcludeInbound) {
		own, hasOwn = "", false
	}
	if !hasStatus && !hasOwn {
		return annots, force // the template's value is the pod's
	}
	v := excludeInboundPort(ann(a, annotationStatusPort, strconv.Itoa(defaultStatusPort)), own)
	j := slices.IndexFunc(annots, func(e kvJSON) bool { return e.key == annExcludeInbound })
	if hasOwn {
		if j >= 0 {
			annots = slices.Delete(slices.Clone(annots), j, j+1)
		}
		if v != own {
			force = append(slices.Clip(force), kv(annotationsPrefix, annExcludeInbound, v))
		}
		return annots, force
	}
	if j >= 0 {
		annots = slices.Clone(annots)
		annots[j] = kv(annotationsPrefix, annExcludeInbound, v)
	}
	return annots, force
}
