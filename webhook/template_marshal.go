// Pre-marshalling: a rendered template turned once into the JSON bytes the
// patch is concatenated from, so that a request does not marshal.

package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// podEnvSentinel marks, in the pre-marshalled istio-proxy container, where
// the per-pod env vars are spliced in.
const podEnvSentinel = "__MESHREV_POD_ENV__"

// proxyContainerName is the container that receives the per-pod env vars.
const proxyContainerName = "istio-proxy"

// rendered is one template of one revision, rendered and pre-marshalled.
type rendered struct {
	frag Fragment
	// initJSON and containerJSON are the marshalled init containers and
	// containers; for the container named istio-proxy, proxyHead/proxyTail
	// surround the place where per-pod env entries go.
	initJSON      [][]byte
	containerJSON [][]byte
	proxyIndex    int // index in frag.Containers of istio-proxy, or -1
	proxyHead     []byte
	proxyTail     []byte
	volumeJSON    [][]byte
	// securityJSON is the template's pod security context (nil if none).
	securityJSON []byte
	// variants caches the per-pod variants of the containers (podcontainers.go).
	variants variantCache
	// cni is set when the template injects istio-validation (istio-cni):
	// the excluded inbound ports annotation then follows the pod's.
	cni bool
	// proxyConfig is the revision's PROXY_CONFIG before the pod's
	// annotation (nil outside a revision's injection: Istio's defaults).
	proxyConfig *proxyConfigBase
	labels      []kvJSON
	annots      []kvJSON
	// names of what is added, for the status annotation
	initNames, containerNames, volumeNames []string
}

// kvJSON is a label or annotation with its patch path and value pre-encoded.
type kvJSON struct {
	key   string
	raw   string // the value
	path  []byte // JSON string of /metadata/labels/<escaped key>
	value []byte // JSON string of raw
}

// kv builds a kvJSON; prefix is /metadata/labels/ or /metadata/annotations/.
func kv(prefix, key, value string) kvJSON {
	return kvJSON{key: key, raw: value, path: appendJSONString(nil, prefix+escapePointer(key)), value: appendJSONString(nil, value)}
}

// prepare pre-marshals everything the patch needs, so that a request only
// concatenates bytes.
func prepare(f *Fragment) (*rendered, error) {
	r := &rendered{frag: *f, proxyIndex: -1}
	for _, c := range f.InitContainers {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		r.initJSON = append(r.initJSON, b)
		r.initNames = append(r.initNames, c.Name)
	}
	for i, c := range f.Containers {
		r.containerNames = append(r.containerNames, c.Name)
		if c.Name == proxyContainerName {
			c.Env = append(c.Env[:len(c.Env):len(c.Env)], corev1.EnvVar{Name: podEnvSentinel})
			b, err := json.Marshal(c)
			if err != nil {
				return nil, err
			}
			marker := []byte(`{"name":"` + podEnvSentinel + `"}`)
			at := bytes.Index(b, marker)
			if at < 0 {
				return nil, errors.New("internal error: per-pod env marker lost in marshalled istio-proxy container")
			}
			r.proxyIndex = i
			r.proxyHead, r.proxyTail = b[:at], b[at+len(marker):]
			r.containerJSON = append(r.containerJSON, nil)
			continue
		}
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		r.containerJSON = append(r.containerJSON, b)
	}
	for _, v := range f.Volumes {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		r.volumeJSON = append(r.volumeJSON, b)
		r.volumeNames = append(r.volumeNames, v.Name)
	}
	r.cni = slices.Contains(r.initNames, validationContainerName)
	if f.SecurityContext != nil {
		b, err := json.Marshal(f.SecurityContext)
		if err != nil {
			return nil, err
		}
		r.securityJSON = b
	}
	r.labels = kvs("/metadata/labels/", f.Labels)
	r.annots = kvs("/metadata/annotations/", f.Annotations)
	return r, nil
}

// kvs pre-encodes the labels or annotations m, in key order.
func kvs(prefix string, m map[string]string) []kvJSON {
	out := make([]kvJSON, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, kv(prefix, k, m[k]))
	}
	return out
}
