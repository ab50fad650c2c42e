//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/webhook"
)

// A namespace that enforces Pod Security baseline refuses pods injected
// with the built-in template (istio-init adds NET_ADMIN and NET_RAW).
// Labelling it for injection warns with the failing checks, meshrev
// check-inject says the same through a server-side dry run, and the API
// server really refuses such a pod.
func TestPodSecurityWarnsWhenTheNamespaceRefusesInjectedPods(t *testing.T) {
	startManager(t)
	createMesh(t, stableOnly())
	bin := cliBinary(t)
	ns := NewNamespace(t, "psa", map[string]string{webhook.LabelPodSecurityEnforce: "baseline"})

	warnings := labelNamespace(t, ns, map[string]*string{revisions.LabelInjection: new(revisions.InjectionEnabled)})
	var ps []string
	for _, w := range warnings {
		if strings.Contains(w, "Pod Security") {
			ps = append(ps, w)
		}
	}
	require.Len(t, ps, 1, "warnings: %q", warnings)
	assert.Contains(t, ps[0], `enforces Pod Security "baseline:latest"`)
	assert.Contains(t, ps[0], `non-default capabilities (container "istio-init" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)`)
	assert.Contains(t, ps[0], "trafficInterception: CNI")

	ci := meshrev(t, bin, "check-inject", "-n", ns).ok(t)
	assert.Contains(t, ci.stdout, "revision:   1-22-6")
	assert.Contains(t, ci.stdout, `warning:    namespace `+ns+` enforces Pod Security (label pod-security.kubernetes.io/enforce): the API server refuses the injected pod`)
	assert.Contains(t, ci.stdout, `violates PodSecurity "baseline:latest": non-default capabilities (container "istio-init" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)`)

	_, _, err := createPod(t, ns, testPod("web", nil))
	require.Error(t, err, "the API server refuses the injected pod, as warned")
	assert.Contains(t, err.Error(), `violates PodSecurity "baseline:latest"`)

	// Privileged: nothing to warn about, and check-inject's dry run is admitted.
	warnings = labelNamespace(t, ns, map[string]*string{webhook.LabelPodSecurityEnforce: new("privileged")})
	for _, w := range warnings {
		assert.NotContains(t, w, "Pod Security")
	}
	ci = meshrev(t, bin, "check-inject", "-n", ns).ok(t)
	assert.NotContains(t, ci.stdout, "Pod Security")
}
