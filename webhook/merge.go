package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// A pod may bring its own istio-proxy container: a gateway Deployment with
// image: auto, or a pod that overrides some of the sidecar's fields. Istio
// merges the template's container under the pod's own fields (a strategic
// merge of the pod's container over the template's, image "auto" meaning
// the template's image), records the pod's container in
// proxy.istio.io/overrides so that a re-injection can merge it again, and
// runs istio-init's iptables rules for the pod's proxy user.

const annotationProxyOverrides = "proxy.istio.io/overrides"

// autoImage asks for the injected image.
const autoImage = "auto"

// ownProxy is a container the pod brings itself (istio-proxy, istio-init):
// the overlay to merge over the template's.
type ownProxy struct {
	overlay   []byte
	container corev1.Container
}

// merge lays the pod's own container over the template's (marshalled) one
// as Istio does: the template merged over the pod's container, then the
// pod's container over that, so that the pod's fields win and the pod's
// list entries (volume mounts, env, ports) come first.
func (o *ownProxy) merge(template []byte) ([]byte, error) {
	out, err := strategicpatch.StrategicMergePatch(o.overlay, template, corev1.Container{})
	if err == nil {
		out, err = strategicpatch.StrategicMergePatch(out, o.overlay, corev1.Container{})
	}
	if err != nil {
		return nil, &conflictError{fmt.Sprintf("the pod's own %s container cannot be merged with the template's: %v", o.container.Name, err)}
	}
	return out, nil
}

// proxyUID is the user istio-init must exempt from capture: the pod's own
// proxy's runAsUser, when set and not root (Istio's adjustInitContainerUser).
func (o *ownProxy) proxyUID() string {
	if o == nil || o.container.SecurityContext == nil || o.container.SecurityContext.RunAsUser == nil || *o.container.SecurityContext.RunAsUser == 0 {
		return ""
	}
	return strconv.FormatInt(*o.container.SecurityContext.RunAsUser, 10)
}

// initContainerName is the init container that programs iptables;
// validationContainerName the one that, with istio-cni, only checks them.
const (
	initContainerName       = "istio-init"
	validationContainerName = "istio-validation"
)

// findOwn returns the pod's own container called name among list (its
// index there, -1 if none) or, on re-invocation, the one recorded in the
// overrides annotation (index -1).
func findOwn(p *podIn, name string, list []*containerIn) (*ownProxy, int, error) {
	idx := -1
	var raw []byte
	for j, c := range list {
		if c.Name == name {
			idx, raw = j, c.Raw
			break
		}
	}
	if raw == nil {
		rec, err := recordedOverrides(p)
		if err != nil {
			return nil, -1, err
		}
		for _, c := range append(rec.Containers, rec.InitContainers...) {
			var n namedIn
			if json.Unmarshal(c, &n) == nil && n.Name == name {
				raw = c
			}
		}
	}
	if raw == nil {
		return nil, -1, nil
	}
	op := &ownProxy{}
	if err := json.Unmarshal(raw, &op.container); err != nil {
		return nil, -1, &conflictError{fmt.Sprintf("the pod's own %s container: %v", name, err)}
	}
	if op.container.Image == autoImage {
		op.container.Image = ""
	}
	b, err := json.Marshal(op.container)
	if err != nil {
		return nil, -1, err
	}
	op.overlay = b
	return op, idx, nil
}

// overridesRecord is the proxy.istio.io/overrides annotation.
type overridesRecord struct {
	Containers     []json.RawMessage `json:"containers"`
	InitContainers []json.RawMessage `json:"initContainers"`
}

// recordedOverrides reads the overrides annotation (empty when absent).
func recordedOverrides(p *podIn) (overridesRecord, error) {
	var o overridesRecord
	v, ok := p.Metadata.Annotations[annotationProxyOverrides]
	if !ok {
		return o, nil
	}
	if err := json.Unmarshal([]byte(v), &o); err != nil {
		return o, &conflictError{fmt.Sprintf("annotation %s is not a list of containers: %v", annotationProxyOverrides, err)}
	}
	return o, nil
}

// recordOverrides is the overrides annotation Istio writes for the pod's own
// istio-init and istio-proxy (either may be nil): the init containers first,
// istio-proxy among them when it is a native sidecar.
func recordOverrides(init, proxy *ownProxy, native bool) ([]byte, error) {
	var rec struct {
		Containers     []corev1.Container `json:"containers,omitempty"`
		InitContainers []corev1.Container `json:"initContainers,omitempty"`
	}
	if init != nil {
		rec.InitContainers = append(rec.InitContainers, init.container)
	}
	if proxy != nil {
		if native {
			rec.InitContainers = append(rec.InitContainers, proxy.container)
		} else {
			rec.Containers = append(rec.Containers, proxy.container)
		}
	}
	return json.Marshal(rec)
}

// mergeOwnInit returns pc's init containers with the pod's own istio-init
// merged over the template's, its -u pointed at the pod's proxy user uid
// (when set, and not for TPROXY), as Istio's adjustInitContainerUser does.
func mergeOwnInit(pc *podContainers, own *ownProxy, uid, mode string) ([][]byte, error) {
	out := make([][]byte, len(pc.initJSON))
	copy(out, pc.initJSON)
	for j, n := range pc.initNames {
		if n != initContainerName {
			continue
		}
		b, err := own.merge(out[j])
		if err != nil {
			return nil, err
		}
		if uid != "" && mode != "TPROXY" {
			var c corev1.Container
			if err := json.Unmarshal(b, &c); err != nil {
				return nil, err
			}
			for k := 0; k+1 < len(c.Args); k++ {
				if c.Args[k] == "-u" {
					c.Args[k+1] = uid
					break
				}
			}
			if b, err = json.Marshal(c); err != nil {
				return nil, err
			}
		}
		out[j] = b
	}
	return out, nil
}

// restoreOverrides puts back, when an injection is removed, the pod's own
// containers recorded in the overrides annotation (image "auto" again when
// the injected image replaced it); nContainers and nInits are the lengths of
// the pod's lists after the removal of what injection added.
func restoreOverrides(w *patchWriter, p *podIn, nContainers, nInits int) error {
	rec, err := recordedOverrides(p)
	if err != nil {
		return err
	}
	put := func(path string, n int, items []json.RawMessage) error {
		for j, raw := range items {
			var c corev1.Container
			if err := json.Unmarshal(raw, &c); err != nil {
				return &conflictError{fmt.Sprintf("annotation %s: %v", annotationProxyOverrides, err)}
			}
			if c.Image == "" {
				c.Image = autoImage
			}
			b, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if n == 0 && j == 0 {
				w.add(path, jsonArray([][]byte{b}))
				continue
			}
			w.addIndexed("add", path+"/", -1, b)
		}
		return nil
	}
	if err := put("/spec/containers", nContainers, rec.Containers); err != nil {
		return err
	}
	return put("/spec/initContainers", nInits, rec.InitContainers)
}

// indexAfter maps index k of a list from which the indices gone were removed
// back to the index in the list before the removal.
func indexAfter(gone []int, k int) int {
	j := 0
	for n := 0; ; j++ {
		if slices.Contains(gone, j) {
			continue
		}
		if n == k {
			return j
		}
		n++
	}
}

// mergeSecurityContext lays the template's pod security context over the
// pod's (raw, absent or null), as Istio's strategic merge of the template
// over the pod does: the template's fields win, the pod's others stay.
func mergeSecurityContext(pod json.RawMessage, tmpl []byte) ([]byte, error) {
	if len(pod) == 0 || string(pod) == "null" {
		return tmpl, nil
	}
	out, err := strategicpatch.StrategicMergePatch(pod, tmpl, corev1.PodSecurityContext{})
	if err != nil {
		return nil, &conflictError{fmt.Sprintf("the pod's securityContext cannot be merged with the template's: %v", err)}
	}
	return out, nil
}
