package revisions

import "strings"

// IsGateway reports whether a pod (or pod template) with these labels and
// annotations is a gateway workload, for the controller's data-plane report:
// label istio: ingressgateway|egressgateway, or the gateway template
// (UsesGatewayTemplate).
func IsGateway(labels, annotations map[string]string) bool {
	switch labels[LabelIstio] {
	case "ingressgateway", "egressgateway":
		return true
	}
	return UsesGatewayTemplate(annotations)
}

// UsesGatewayTemplate reports whether a pod gets the gateway template: its
// annotation inject.istio.io/templates, a comma-separated list (spaces
// around names ignored), names "gateway". As in Istio's injector, only the
// annotation chooses the template: a pod labelled istio: ingressgateway
// without it gets the sidecar template (Istio's gateway chart sets the
// annotation).
func UsesGatewayTemplate(annotations map[string]string) bool {
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
