package webhook

import (
	"encoding/json"
	"fmt"
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

// ownProxy is the pod's own istio-proxy: the container to merge over the
// template's, and the overrides annotation to record (nil when the pod
// already records it).
type ownProxy struct {
	overlay   []byte
	container corev1.Container
	record    []byte
}

// findOwnProxy returns the pod's own istio-proxy among apps (its index, -1
// if none) or, on re-invocation, the one recorded in the overrides
// annotation.
// native records it as Istio does for a native sidecar, under initContainers.
func findOwnProxy(p *podIn, apps []*containerIn, reinvoked, native bool) (*ownProxy, int, error) {
	idx := -1
	var raw []byte
	for j, c := range apps {
		if c.Name == proxyContainerName {
			idx, raw = j, c.Raw
			break
		}
	}
	recorded, hasRecord := p.Metadata.Annotations[annotationProxyOverrides]
	if raw == nil && hasRecord {
		var o struct {
			Containers     []json.RawMessage `json:"containers"`
			InitContainers []json.RawMessage `json:"initContainers"`
		}
		if err := json.Unmarshal([]byte(recorded), &o); err != nil {
			return nil, -1, &conflictError{fmt.Sprintf("annotation %s is not a list of containers: %v", annotationProxyOverrides, err)}
		}
		for _, c := range append(o.Containers, o.InitContainers...) {
			var n namedIn
			if json.Unmarshal(c, &n) == nil && n.Name == proxyContainerName {
				raw = c
			}
		}
	}
	if raw == nil {
		return nil, -1, nil
	}
	op := &ownProxy{}
	if err := json.Unmarshal(raw, &op.container); err != nil {
		return nil, -1, &conflictError{fmt.Sprintf("the pod's own %s container: %v", proxyContainerName, err)}
	}
	if op.container.Image == autoImage {
		op.container.Image = ""
	}
	b, err := json.Marshal(op.container)
	if err != nil {
		return nil, -1, err
	}
	op.overlay = b
	if !hasRecord && !reinvoked {
		var rec []byte
		var err error
		if native {
			rec, err = json.Marshal(struct {
				InitContainers []corev1.Container `json:"initContainers"`
			}{[]corev1.Container{op.container}})
		} else {
			rec, err = json.Marshal(struct {
				Containers []corev1.Container `json:"containers"`
			}{[]corev1.Container{op.container}})
		}
		if err != nil {
			return nil, -1, err
		}
		op.record = rec
	}
	return op, idx, nil
}

// merge lays the pod's own container over the template's (marshalled) one.
func (o *ownProxy) merge(template []byte) ([]byte, error) {
	out, err := strategicpatch.StrategicMergePatch(template, o.overlay, corev1.Container{})
	if err != nil {
		return nil, &conflictError{fmt.Sprintf("the pod's own %s container cannot be merged with the sidecar: %v", proxyContainerName, err)}
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
