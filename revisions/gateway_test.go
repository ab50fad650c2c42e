package revisions

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIsGateway(t *testing.T) {
	tests := map[string]struct {
		labels      map[string]string
		annotations map[string]string
		want        bool
	}{
		"a pod with neither label nor annotation is not a gateway": {},
		"the label istio: ingressgateway makes a gateway": {
			labels: map[string]string{LabelIstio: "ingressgateway"}, want: true,
		},
		"the label istio: egressgateway makes a gateway": {
			labels: map[string]string{LabelIstio: "egressgateway"}, want: true,
		},
		"another istio label value is not a gateway": {
			labels: map[string]string{LabelIstio: "pilot"},
		},
		"the annotation naming only gateway makes a gateway": {
			annotations: map[string]string{AnnotationTemplates: "gateway"}, want: true,
		},
		"the annotation listing gateway among other templates makes a gateway": {
			annotations: map[string]string{AnnotationTemplates: "sidecar,gateway"}, want: true,
		},
		"spaces around the listed names are ignored": {
			annotations: map[string]string{AnnotationTemplates: " custom , gateway "}, want: true,
		},
		"the annotation naming only sidecar is not a gateway": {
			annotations: map[string]string{AnnotationTemplates: "sidecar"},
		},
		"a name that only contains gateway is not the gateway template": {
			annotations: map[string]string{AnnotationTemplates: "gateways,my-gateway"},
		},
		"an empty annotation is not a gateway": {
			annotations: map[string]string{AnnotationTemplates: ""},
		},
		"the label is read from labels, not from annotations": {
			annotations: map[string]string{LabelIstio: "ingressgateway"},
		},
		"nil maps are not a gateway": {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, IsGateway(tc.labels, tc.annotations))
		})
	}
}

func TestUsesGatewayTemplate(t *testing.T) {
	tests := map[string]struct {
		annotations map[string]string
		want        bool
	}{
		"no annotation is the sidecar template":                 {},
		"the annotation naming gateway is the gateway template": {annotations: map[string]string{AnnotationTemplates: "gateway"}, want: true},
		"gateway among other names is the gateway template":     {annotations: map[string]string{AnnotationTemplates: "sidecar, gateway"}, want: true},
		"the annotation naming sidecar is the sidecar template": {annotations: map[string]string{AnnotationTemplates: "sidecar"}},
		"the label istio: ingressgateway alone does not choose the gateway template (Istio's rule)": {
			annotations: map[string]string{LabelIstio: "ingressgateway"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, UsesGatewayTemplate(tc.annotations))
		})
	}
}
