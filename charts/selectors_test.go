package charts

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// webhookSelector is one webhook's namespaceSelector and objectSelector, parsed
// the way the apiserver does.
type webhookSelector struct {
	name      string
	namespace labels.Selector
	object    labels.Selector
}

func parseSelectors(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration) []webhookSelector {
	t.Helper()
	var out []webhookSelector
	for _, w := range mwc.Webhooks {
		// An absent selector matches everything, as in the apiserver.
		ns, obj := labels.Everything(), labels.Everything()
		var err error
		if w.NamespaceSelector != nil {
			ns, err = metav1.LabelSelectorAsSelector(w.NamespaceSelector)
			require.NoError(t, err)
		}
		if w.ObjectSelector != nil {
			obj, err = metav1.LabelSelectorAsSelector(w.ObjectSelector)
			require.NoError(t, err)
		}
		out = append(out, webhookSelector{name: w.Name, namespace: ns, object: obj})
	}
	return out
}

// labelSet is a named set of labels, one value of a dimension of the matrix.
type labelSet struct {
	name   string
	labels map[string]string
}

// TestSelectorsSendEveryCandidate proves that the MutatingWebhookConfiguration's
// selectors are a faithful filter in front of revisions.Resolve: for every
// combination of namespace, namespace labels, pod labels and pod annotations,
// and for every shape of the Mesh, a pod that Resolve would inject, refuse or
// warn about (no Mesh, unknown revision) reaches the router exactly once, a pod
// in a system namespace or meshrev's own never does, and a pod that Resolve
// skips on its labels is not sent at all (it does not depend on meshrev being
// up). Only the pod annotation opt-out cannot be selected on: those pods are
// sent and skipped by the router.
func TestSelectorsSendEveryCandidate(t *testing.T) {
	namespaces := []string{"default", "shop", "payments-prod", "kube-system", "kube-public", "kube-node-lease", releaseNamespace}
	nsLabels := []labelSet{
		{"no labels", nil},
		{"istio-injection=enabled", map[string]string{revisions.LabelInjection: "enabled"}},
		{"istio-injection=disabled", map[string]string{revisions.LabelInjection: "disabled"}},
		{"istio-injection=yes (neither enabled nor disabled)", map[string]string{revisions.LabelInjection: "yes"}},
		{"istio.io/rev=stable", map[string]string{revisions.LabelRev: "stable"}},
		{"istio.io/rev=default", map[string]string{revisions.LabelRev: "default"}},
		{"istio.io/rev=canary", map[string]string{revisions.LabelRev: "canary"}},
		{"istio.io/rev=1-22-6", map[string]string{revisions.LabelRev: "1-22-6"}},
		{"istio.io/rev=1-23-6", map[string]string{revisions.LabelRev: "1-23-6"}},
		{"istio.io/rev=9-9-9 (unknown)", map[string]string{revisions.LabelRev: "9-9-9"}},
		{"istio-injection=enabled and istio.io/rev=canary", map[string]string{revisions.LabelInjection: "enabled", revisions.LabelRev: "canary"}},
		{"istio-injection=disabled and istio.io/rev=canary", map[string]string{revisions.LabelInjection: "disabled", revisions.LabelRev: "canary"}},
		{"istio-injection=yes and istio.io/rev=stable", map[string]string{revisions.LabelInjection: "yes", revisions.LabelRev: "stable"}},
		{"unrelated labels", map[string]string{"team": "shop", "istio.io/dataplane-mode": "ambient"}},
	}
	podLabels := []labelSet{
		{"no labels", nil},
		{"sidecar.istio.io/inject=true", map[string]string{revisions.LabelSidecarInject: "true"}},
		{"sidecar.istio.io/inject=false", map[string]string{revisions.LabelSidecarInject: "false"}},
		{"sidecar.istio.io/inject=maybe", map[string]string{revisions.LabelSidecarInject: "maybe"}},
		{"istio.io/rev=stable", map[string]string{revisions.LabelRev: "stable"}},
		{"istio.io/rev=canary", map[string]string{revisions.LabelRev: "canary"}},
		{"istio.io/rev=1-22-6", map[string]string{revisions.LabelRev: "1-22-6"}},
		{"istio.io/rev=1-23-6", map[string]string{revisions.LabelRev: "1-23-6"}},
		{"istio.io/rev=9-9-9 (unknown)", map[string]string{revisions.LabelRev: "9-9-9"}},
		{"sidecar.istio.io/inject=true and istio.io/rev=canary", map[string]string{revisions.LabelSidecarInject: "true", revisions.LabelRev: "canary"}},
		{"sidecar.istio.io/inject=false and istio.io/rev=canary", map[string]string{revisions.LabelSidecarInject: "false", revisions.LabelRev: "canary"}},
		{"a gateway (istio=ingressgateway)", map[string]string{revisions.LabelIstio: "ingressgateway"}},
		{"an already injected pod (meshrev.io/revision=1-22-6)", map[string]string{revisions.LabelRevision: "1-22-6"}},
	}
	podAnnotations := []labelSet{
		{"no annotations", nil},
		{"annotation sidecar.istio.io/inject=false", map[string]string{revisions.LabelSidecarInject: "false"}},
		{"annotation sidecar.istio.io/inject=true", map[string]string{revisions.LabelSidecarInject: "true"}},
	}
	stable := v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6"}
	canary := v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6"}
	meshes := map[string]*v1alpha1.MeshSpec{
		"no Mesh installed":                           nil,
		"stable only":                                 {Revisions: []v1alpha1.Revision{stable}, Stable: stable.Name},
		"stable and canary":                           {Revisions: []v1alpha1.Revision{stable, canary}, Stable: stable.Name, Canary: canary.Name},
		"promoted, previous still published":          {Revisions: []v1alpha1.Revision{stable, canary}, Stable: canary.Name},
		"stable and canary, unknown revisions denied": {Revisions: []v1alpha1.Revision{stable, canary}, Stable: stable.Name, Canary: canary.Name, UnknownRevisionPolicy: v1alpha1.UnknownRevisionDeny},
	}
	// Skips the selectors must filter out: they decide on labels alone.
	labelSkips := []revisions.Reason{revisions.ReasonSystemNamespace, revisions.ReasonNamespaceDisabled, revisions.ReasonNotSelected}

	cases := map[string]map[string]any{
		"the default install":                         nil,
		"a manager outside the cluster (webhook.url)": {"manager": map[string]any{"enabled": false}, "webhook": map[string]any{"url": "https://127.0.0.1:9443"}},
		"cert-manager mode":                           {"certManager": map[string]any{"enabled": true}},
	}
	for name, values := range cases {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, values)
			mwc := find[*admissionregistrationv1.MutatingWebhookConfiguration](r, "meshrev")
			require.NotNil(t, mwc)
			hooks := parseSelectors(t, mwc)

			var combos, sent, injected, denied int
			for _, meshName := range slices.Sorted(maps.Keys(meshes)) {
				mesh := meshes[meshName]
				for _, ns := range namespaces {
					for _, nsl := range nsLabels {
						// The apiserver sets kubernetes.io/metadata.name on every namespace.
						nsSet := labels.Set{corev1.LabelMetadataName: ns}
						maps.Copy(nsSet, nsl.labels)
						for _, pl := range podLabels {
							for _, pa := range podAnnotations {
								combos++
								d := revisions.Resolve(mesh, releaseNamespace, revisions.Subject{
									Namespace: ns, NamespaceLabels: nsSet, Labels: pl.labels, Annotations: pa.labels,
								})
								var matched []string
								for _, h := range hooks {
									if h.namespace.Matches(nsSet) && h.object.Matches(labels.Set(pl.labels)) {
										matched = append(matched, h.name)
									}
								}
								what := fmt.Sprintf("Mesh %q, namespace %s (%s), pod %s, %s: Resolve says %s (%s); webhooks %v",
									meshName, ns, nsl.name, pl.name, pa.name, d.Reason, d.Message, matched)

								assert.LessOrEqual(t, len(matched), 1, "a pod must reach the router once: %s", what)
								if len(matched) > 0 {
									sent++
								}
								if d.Inject {
									injected++
								}
								if d.Deny {
									denied++
								}
								if ns == releaseNamespace || slices.Contains(revisions.SystemNamespaces, ns) {
									assert.Empty(t, matched, "system and meshrev namespaces are never sent: %s", what)
									continue
								}
								mustSee := d.Inject || d.Deny || d.Reason == revisions.ReasonNoMesh || d.Reason == revisions.ReasonUnknownRevision
								if mustSee {
									assert.Len(t, matched, 1, "a pod the router injects, refuses or warns about must be sent: %s", what)
								}
								if slices.Contains(labelSkips, d.Reason) || (d.Reason == revisions.ReasonPodOptOut && pl.labels[revisions.LabelSidecarInject] == "false") {
									assert.Empty(t, matched, "a pod skipped on its labels must not depend on the router: %s", what)
								}
							}
						}
					}
				}
			}
			t.Logf("%d combinations: %d sent to the router, %d injected, %d denied", combos, sent, injected, denied)
			assert.Positive(t, injected)
			assert.Positive(t, denied)
		})
	}
}
