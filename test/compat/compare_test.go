package compat

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// The one normalisation applied to both injectors' pods before comparing
// (COMPAT.md explains each):
//   - image references of the injected containers (istio-proxy, istio-init,
//     istio-validation) keep only the image's name (proxyv2): the registry and
//     tag are each revision's setting, not injection behaviour;
//   - env lists are compared as sets by name (order is not meaningful to the
//     kubelet except for $(VAR) references, which the templates do not use
//     between injected vars);
//   - meshrev's own metadata (labels and annotations meshrev.io/*) is dropped;
//   - in the sidecar.istio.io/status annotation, meshrev's own keys
//     (template, labels, annotations: what meshrev must remove on
//     re-injection) are dropped, and a null list is the same as an empty
//     one ("containers": null for a native sidecar, "imagePullSecrets": null);
//   - values that are JSON documents (the sidecar.istio.io/status annotation,
//     env vars holding JSON such as ISTIO_KUBE_APP_PROBERS) are compared as
//     JSON, not as text, so that key order does not count.

var injectedContainers = []string{"istio-proxy", "istio-init", "istio-validation"}

// normalise decodes a pod and applies the normalisation.
func normalise(pod []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(pod, &m); err != nil {
		return nil, err
	}
	meta, _ := m["metadata"].(map[string]any)
	for _, k := range []string{"labels", "annotations"} {
		kv, _ := meta[k].(map[string]any)
		for key, v := range kv {
			if strings.HasPrefix(key, "meshrev.io/") {
				delete(kv, key)
				continue
			}
			if s, ok := v.(string); ok && key == "sidecar.istio.io/status" {
				st := jsonOrString(s)
				if m, ok := st.(map[string]any); ok {
					// meshrev's own keys, and Istio's null pull secrets.
					delete(m, "template")
					delete(m, "labels")
					delete(m, "annotations")
					for k, v := range m {
						if l, ok := v.([]any); v == nil || ok && len(l) == 0 {
							delete(m, k) // null and [] say the same
						}
					}
				}
				kv[key] = st
			}
		}
		if kv != nil && len(kv) == 0 {
			delete(meta, k)
		}
	}
	spec, _ := m["spec"].(map[string]any)
	for _, list := range []string{"containers", "initContainers"} {
		cs, _ := spec[list].([]any)
		for _, c := range cs {
			cm, _ := c.(map[string]any)
			if name, _ := cm["name"].(string); slices.Contains(injectedContainers, name) {
				if img, ok := cm["image"].(string); ok {
					cm["image"] = imageName(img)
				}
			}
			env, _ := cm["env"].([]any)
			for _, e := range env {
				em, _ := e.(map[string]any)
				if s, ok := em["value"].(string); ok && (strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[")) {
					em["value"] = jsonOrString(s)
				}
			}
			sort.SliceStable(env, func(a, b int) bool { return nameOf(env[a]) < nameOf(env[b]) })
		}
	}
	return m, nil
}

// imageName keeps the last path element of an image reference, without tag
// or digest: docker.io/istio/proxyv2:1.31.0 → proxyv2.
func imageName(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		ref = ref[i+1:]
	}
	if i := strings.Index(ref, ":"); i >= 0 {
		ref = ref[:i]
	}
	return ref
}

func jsonOrString(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return s
	}
	return v
}

func nameOf(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["name"].(string)
	return s
}

// diff lists the paths where want (Istio) and got (meshrev) differ. Lists of
// named objects are compared by name, with their order compared separately
// (path ending in [order]).
func diff(path string, want, got any, out *[]string) {
	if reflect.DeepEqual(want, got) {
		return
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*out = append(*out, path)
			return
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		for _, k := range sortedKeys(keys) {
			diff(path+"."+k, w[k], g[k], out)
		}
		return
	case []any:
		g, ok := got.([]any)
		if !ok || !named(w) || !named(g) {
			*out = append(*out, path)
			return
		}
		var wn, gn []string
		byName := map[string][2]any{}
		for _, e := range w {
			wn = append(wn, nameOf(e))
			p := byName[nameOf(e)]
			p[0] = e
			byName[nameOf(e)] = p
		}
		for _, e := range g {
			gn = append(gn, nameOf(e))
			p := byName[nameOf(e)]
			p[1] = e
			byName[nameOf(e)] = p
		}
		common := func(a, b []string) []string {
			var c []string
			for _, n := range a {
				if slices.Contains(b, n) {
					c = append(c, n)
				}
			}
			return c
		}
		if !slices.Equal(common(wn, gn), common(gn, wn)) {
			*out = append(*out, path+"[order]")
		}
		names := map[string]bool{}
		for n := range byName {
			names[n] = true
		}
		for _, n := range sortedKeys(names) {
			p := byName[n]
			switch {
			case p[0] == nil:
				*out = append(*out, path+"["+n+"]+")
			case p[1] == nil:
				*out = append(*out, path+"["+n+"]-")
			default:
				diff(path+"["+n+"]", p[0], p[1], out)
			}
		}
		return
	}
	*out = append(*out, path)
}

func named(l []any) bool {
	for _, e := range l {
		if m, ok := e.(map[string]any); !ok || m["name"] == nil {
			return false
		}
	}
	return len(l) > 0
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Aspects a difference is counted under in the table.
const (
	aspRefusal     = "refusal (one admits, the other refuses)"
	aspInjected    = "injection decision (injected vs not)"
	aspNative      = "native sidecar (istio-proxy as init container)"
	aspOrder       = "container / init container order"
	aspProbes      = "app probes and lifecycle hooks rewritten"
	aspInit        = "istio-init / istio-validation"
	aspProxyEnv    = "istio-proxy env"
	aspProxy       = "istio-proxy container (args, resources, probes, ...)"
	aspPrometheus  = "prometheus annotations / merge"
	aspStatus      = "sidecar.istio.io/status"
	aspAnnotations = "other annotations"
	aspLabels      = "labels"
	aspVolumes     = "volumes"
	aspOther       = "other pod fields"
)

var aspects = []string{aspRefusal, aspInjected, aspNative, aspOrder, aspProbes, aspInit, aspProxyEnv, aspProxy, aspPrometheus, aspStatus, aspAnnotations, aspLabels, aspVolumes, aspOther}

// aspectOf classifies one diff path.
func aspectOf(p string) string {
	switch {
	case strings.HasSuffix(p, "[order]"):
		return aspOrder
	case strings.Contains(p, "[istio-proxy].restartPolicy"),
		p == ".spec.initContainers[istio-proxy]+", p == ".spec.initContainers[istio-proxy]-",
		p == ".spec.containers[istio-proxy]+", p == ".spec.containers[istio-proxy]-":
		return aspNative
	case strings.Contains(p, "ISTIO_KUBE_APP_PROBERS"):
		return aspProbes
	case strings.Contains(p, "ISTIO_PROMETHEUS_ANNOTATIONS"), strings.HasPrefix(p, ".metadata.annotations.prometheus.io"):
		return aspPrometheus
	case strings.HasPrefix(p, ".metadata.annotations.sidecar.istio.io/status"):
		return aspStatus
	case strings.HasPrefix(p, ".metadata.annotations"):
		return aspAnnotations
	case strings.HasPrefix(p, ".metadata.labels"):
		return aspLabels
	case strings.HasPrefix(p, ".spec.volumes"):
		return aspVolumes
	case strings.Contains(p, "[istio-init]"), strings.Contains(p, "[istio-validation]"):
		return aspInit
	case strings.Contains(p, "[istio-proxy].env"):
		return aspProxyEnv
	case strings.Contains(p, "[istio-proxy]"):
		return aspProxy
	case strings.Contains(p, "Probe"), strings.Contains(p, ".lifecycle"):
		return aspProbes
	}
	return aspOther
}

// comparison is the verdict on one input in one sidecar mode.
type comparison struct {
	Same    bool
	Aspects map[string]bool
	Paths   []string
}

func compare(istio, meshrev outcome) (comparison, error) {
	c := comparison{Aspects: map[string]bool{}}
	if istio.Refused != meshrev.Refused {
		c.Aspects[aspRefusal] = true
		c.Paths = []string{fmt.Sprintf("refused: istio=%v (%s) meshrev=%v (%s)", istio.Refused, istio.Message, meshrev.Refused, meshrev.Message)}
		return c, nil
	}
	if istio.Refused {
		c.Same = true
		return c, nil
	}
	w, err := normalise(istio.Pod)
	if err != nil {
		return c, fmt.Errorf("istio's pod: %w", err)
	}
	g, err := normalise(meshrev.Pod)
	if err != nil {
		return c, fmt.Errorf("meshrev's pod: %w", err)
	}
	diff("", w, g, &c.Paths)
	if len(c.Paths) == 0 {
		c.Same = true
		return c, nil
	}
	if injected(w) != injected(g) {
		c.Aspects[aspInjected] = true
		return c, nil
	}
	for _, p := range c.Paths {
		c.Aspects[aspectOf(p)] = true
	}
	return c, nil
}

func injected(pod map[string]any) bool {
	meta, _ := pod["metadata"].(map[string]any)
	a, _ := meta["annotations"].(map[string]any)
	_, ok := a["sidecar.istio.io/status"]
	return ok
}
