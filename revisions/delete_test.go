package revisions

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateDelete(t *testing.T) {
	tests := map[string]struct {
		facts        Facts
		force        bool
		wantErr      []string
		wantWarnings []string
	}{
		"a Mesh nothing depends on may be deleted": {
			facts: Facts{Namespaces: map[string]map[string]string{"plain": nil, "off": {LabelInjection: InjectionDisabled, LabelRev: "1-22-6"}}},
		},
		"a namespace with istio-injection=enabled refuses the delete, with the remedy and the override": {
			facts:   Facts{Namespaces: map[string]map[string]string{"shop": {LabelInjection: InjectionEnabled}}},
			wantErr: []string{"cannot delete Mesh default: 1 namespace (shop with istio-injection=enabled) asks for injection", "meshrev namespace disable", "kubectl annotate mesh default meshrev.io/force=true"},
		},
		"a namespace pinned with istio.io/rev, even to an unknown revision, refuses the delete": {
			facts:   Facts{Namespaces: map[string]map[string]string{"a": {LabelRev: "stable"}, "b": {LabelRev: "9-9-9"}}},
			wantErr: []string{"2 namespaces (a with istio.io/rev=stable, b with istio.io/rev=9-9-9) ask for injection"},
		},
		"pods running a revision refuse the delete although no namespace asks any more": {
			facts:   Facts{Pods: []Pod{injectedPod("shop", "web-1", "1-23-6"), injectedPod("shop", "db-0", "1-22-6")}},
			wantErr: []string{"2 pods (shop/db-0, shop/web-1) run its sidecars"},
		},
		"pods of a revision the Mesh does not publish are not its dependents": {
			facts: Facts{Pods: []Pod{injectedPod("old", "x", "1-19-0")}},
		},
		"forced, the dependents become a warning": {
			facts:        Facts{Namespaces: map[string]map[string]string{"shop": {LabelInjection: InjectionEnabled}}, Pods: []Pod{injectedPod("shop", "web-1", "1-22-6")}},
			force:        true,
			wantWarnings: []string{"deleting Mesh default although 1 namespace (shop with istio-injection=enabled) asks for injection and 1 pod (shop/web-1) runs its sidecars (forced)"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := withCanary
			if tc.force {
				m = forced(m)
			}
			warnings, errs := ValidateDelete(m, tc.facts)
			if len(tc.wantErr) > 0 {
				require.Len(t, errs, 1)
				assert.Equal(t, "metadata.name", errs[0].Field)
				for _, want := range tc.wantErr {
					assert.Contains(t, errs[0].Detail, want)
				}
				return
			}
			require.Empty(t, errs)
			require.Len(t, warnings, len(tc.wantWarnings))
			for i, want := range tc.wantWarnings {
				assert.Contains(t, warnings[i], want)
			}
		})
	}
}

// injectedPod is a pod as injection leaves it: label, status annotation and proxy container.
func injectedPod(ns, name, rev string) Pod {
	return Pod{Namespace: ns, Name: name,
		Labels:      map[string]string{LabelRevision: rev},
		Annotations: map[string]string{AnnotationStatus: `{"revision":"` + rev + `","containers":["istio-proxy"]}`},
		Containers:  []string{"app", ProxyContainer}}
}
