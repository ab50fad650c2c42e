package revisions

import "strings"

// IsGateway reports whether a pod (or pod template) with these labels and
// annotations is a gateway and gets the gateway template: label
// istio: ingressgateway|egressgateway, or annotation inject.istio.io/templates
// whose comma-separated list names "gateway" (spaces around names ignored).
// The injector and the controller's data-plane report both use this one rule.
func IsGateway(labels, annotations map[string]string) bool {
	switch labels[LabelIstio] {
	case "ingressgateway", "egressgateway":
		return true
	}
	v, ok := annotations[AnnotationTemplates]
	if !ok {
		return false
	}
	for t := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(t) == TemplateGateway {
			return true
		}
	}
	return false
}
