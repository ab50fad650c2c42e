package webhook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/revisions"
)

// A pod that sets meshrev.io/revision itself would be reported as running
// that revision; the injector never lets it keep a meshrev.io/* label.
func TestInjectorStripsMeshrevLabelsAPodSetItself(t *testing.T) {
	const forged = `{"metadata":{"generateName":"web-","labels":{"app":"web","meshrev.io/revision":"9-9-9","meshrev.io/other":"x"}},"spec":{"containers":[{"name":"web","image":"nginx"}]}}`
	tests := map[string]struct {
		nsLabels     map[string]string
		podJSON      string
		wantRevision string
		wantPatch    bool
	}{
		"a pod the injector skips loses both labels": {
			nsLabels: map[string]string{}, podJSON: forged, wantPatch: true,
		},
		"an injected pod gets the real revision and loses the other label": {
			nsLabels: map[string]string{revisions.LabelInjection: revisions.InjectionEnabled}, podJSON: forged, wantRevision: "1-22-6", wantPatch: true,
		},
		"a skipped pod without meshrev labels gets no patch": {
			nsLabels: map[string]string{}, podJSON: plainPod,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			state := &fixedState{mesh: meshOf(stableCanary()), namespaces: map[string]map[string]string{"shop": tc.nsLabels}}
			inj := newTestInjector(t, state)
			_, _, review := serve(t, inj, reviewFor(t, "shop", []byte(tc.podJSON)))
			require.True(t, review.Response.Allowed)
			if !tc.wantPatch {
				assert.Empty(t, review.Response.Patch)
				return
			}
			pod := mustPod(t, applyPatch(t, []byte(tc.podJSON), review.Response.Patch))
			assert.Equal(t, tc.wantRevision, pod.Labels[revisions.LabelRevision])
			assert.NotContains(t, pod.Labels, "meshrev.io/other")
			assert.Equal(t, "web", pod.Labels["app"], "the pod's own labels stay")
		})
	}
}
