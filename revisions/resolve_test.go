package revisions

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

const ownNS = "meshrev-system"

func rev(name, version string) v1alpha1.Revision {
	return v1alpha1.Revision{Name: name, Version: version}
}

// The three tables of the upgrade: before, during and after the canary.
var (
	tableStableOnly = &v1alpha1.MeshSpec{Revisions: []v1alpha1.Revision{rev("1-22-6", "1.22.6")}, Stable: "1-22-6"}
	tableCanary     = &v1alpha1.MeshSpec{Revisions: []v1alpha1.Revision{rev("1-22-6", "1.22.6"), rev("1-23-6", "1.23.6")}, Stable: "1-22-6", Canary: "1-23-6"}
	tablePromoted   = &v1alpha1.MeshSpec{Revisions: []v1alpha1.Revision{rev("1-22-6", "1.22.6"), rev("1-23-6", "1.23.6")}, Stable: "1-23-6"}
)

// Label sets of the truth table below, in its row and column order.
var (
	nsLabelSets = []struct {
		name   string
		labels map[string]string
	}{
		{"no labels", nil},
		{"istio-injection=enabled", map[string]string{LabelInjection: "enabled"}},
		{"istio-injection=disabled", map[string]string{LabelInjection: "disabled"}},
		{"istio.io/rev=stable", map[string]string{LabelRev: "stable"}},
		{"istio.io/rev=canary", map[string]string{LabelRev: "canary"}},
		{"istio.io/rev=1-22-6", map[string]string{LabelRev: "1-22-6"}},
		{"istio.io/rev=1-20-0 (unknown)", map[string]string{LabelRev: "1-20-0"}},
		{"istio-injection=enabled and istio.io/rev=canary", map[string]string{LabelInjection: "enabled", LabelRev: "canary"}},
	}
	podLabelSets = []struct {
		name   string
		labels map[string]string
	}{
		{"no labels", nil},
		{"sidecar.istio.io/inject=true", map[string]string{LabelSidecarInject: "true"}},
		{"sidecar.istio.io/inject=false", map[string]string{LabelSidecarInject: "false"}},
		{"istio.io/rev=stable", map[string]string{LabelRev: "stable"}},
		{"istio.io/rev=canary", map[string]string{LabelRev: "canary"}},
		{"istio.io/rev=1-22-6", map[string]string{LabelRev: "1-22-6"}},
		{"istio.io/rev=1-20-0 (unknown)", map[string]string{LabelRev: "1-20-0"}},
	}
)

// The expected outcome of every combination, written out by hand from
// docs/design.md's decision table: one grid per table, a row per namespace label
// set, a column per pod label set. "22" and "23" are revisions 1-22-6 and
// 1-23-6, "-" is no injection, "?" is an unknown revision (no injection, a
// warning).
var truthTables = []struct {
	name  string
	table *v1alpha1.MeshSpec
	grid  string
}{
	{"stable 1-22-6 only", tableStableOnly, `
		-  22 -  22 22 22 ?
		22 22 -  22 22 22 ?
		-  -  -  -  -  -  -
		22 22 -  22 22 22 ?
		22 22 -  22 22 22 ?
		22 22 -  22 22 22 ?
		?  ?  -  22 22 22 ?
		22 22 -  22 22 22 ?`},
	{"stable 1-22-6 with canary 1-23-6", tableCanary, `
		-  22 -  22 23 22 ?
		22 22 -  22 23 22 ?
		-  -  -  -  -  -  -
		22 22 -  22 23 22 ?
		23 23 -  22 23 22 ?
		22 22 -  22 23 22 ?
		?  ?  -  22 23 22 ?
		22 22 -  22 23 22 ?`},
	{"promoted to 1-23-6 with 1-22-6 still published", tablePromoted, `
		-  23 -  23 23 22 ?
		23 23 -  23 23 22 ?
		-  -  -  -  -  -  -
		23 23 -  23 23 22 ?
		23 23 -  23 23 22 ?
		22 22 -  23 23 22 ?
		?  ?  -  23 23 22 ?
		23 23 -  23 23 22 ?`},
}

func TestResolveTruthTable(t *testing.T) {
	type tc struct {
		table  *v1alpha1.MeshSpec
		ns     map[string]string
		pod    map[string]string
		expect string
	}
	cases := map[string]tc{}
	for _, tt := range truthTables {
		rows := strings.Split(strings.TrimSpace(tt.grid), "\n")
		require.Len(t, rows, len(nsLabelSets), "grid %q", tt.name)
		for i, row := range rows {
			cells := strings.Fields(row)
			require.Len(t, cells, len(podLabelSets), "grid %q row %d", tt.name, i)
			for j, cell := range cells {
				name := fmt.Sprintf("table %s, namespace %s, pod %s", tt.name, nsLabelSets[i].name, podLabelSets[j].name)
				cases[name] = tc{table: tt.table, ns: nsLabelSets[i].labels, pod: podLabelSets[j].labels, expect: cell}
			}
		}
	}
	require.Len(t, cases, 3*8*7)

	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := Resolve(c.table, ownNS, Subject{Namespace: "bookinfo", NamespaceLabels: c.ns, Labels: c.pod})
			switch c.expect {
			case "-":
				assert.False(t, d.Inject, d.Message)
				assert.Nil(t, d.Revision)
				assert.Contains(t, []Reason{ReasonNotSelected, ReasonPodOptOut, ReasonNamespaceDisabled}, d.Reason)
			case "?":
				assert.False(t, d.Inject, d.Message)
				assert.Equal(t, ReasonUnknownRevision, d.Reason)
				assert.Contains(t, d.Message, "1-20-0")
				assert.NotEmpty(t, d.Warnings, "an unknown revision is warned about")
			default:
				require.True(t, d.Inject, d.Message)
				assert.Equal(t, "1-"+c.expect+"-6", d.RevisionName())
				assert.NotEmpty(t, d.Selector)
			}
			assert.False(t, d.Deny, "the default policy never denies")
			assert.NotEmpty(t, d.Message)
		})
	}
}

func TestResolveReasonsAndWarnings(t *testing.T) {
	deny := tableCanary.DeepCopy()
	deny.UnknownRevisionPolicy = v1alpha1.UnknownRevisionDeny
	cases := map[string]struct {
		table        *v1alpha1.MeshSpec
		subject      Subject
		wantReason   Reason
		wantRevision string
		wantDeny     bool
		wantWarnings []string // substrings, one per warning, in order
		wantMessage  string   // substring
	}{
		"kube-system is never injected, even when it asks": {
			table:      tableCanary,
			subject:    Subject{Namespace: "kube-system", NamespaceLabels: map[string]string{LabelInjection: "enabled"}, Labels: map[string]string{LabelRev: "canary"}},
			wantReason: ReasonSystemNamespace, wantMessage: "kube-system is a system namespace",
		},
		"kube-public and kube-node-lease are never injected": {
			table:      tableCanary,
			subject:    Subject{Namespace: "kube-node-lease", NamespaceLabels: map[string]string{LabelRev: "stable"}},
			wantReason: ReasonSystemNamespace,
		},
		"meshrev's own namespace is never injected": {
			table:      tableCanary,
			subject:    Subject{Namespace: ownNS, Labels: map[string]string{LabelSidecarInject: "true"}},
			wantReason: ReasonSystemNamespace,
		},
		"a host-network pod is skipped before any label is read": {
			table:      tableCanary,
			subject:    Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelInjection: "enabled"}, HostNetwork: true},
			wantReason: ReasonHostNetwork,
		},
		"the opt-out annotation skips like the label": {
			table:      tableCanary,
			subject:    Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelInjection: "enabled"}, Annotations: map[string]string{LabelSidecarInject: "false"}},
			wantReason: ReasonPodOptOut, wantMessage: "annotation",
		},
		"pod opt-out wins over a disabled namespace": {
			table:      tableCanary,
			subject:    Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelInjection: "disabled"}, Labels: map[string]string{LabelSidecarInject: "false"}},
			wantReason: ReasonPodOptOut,
		},
		"a disabled namespace wins over the pod's own revision label": {
			table:      tableCanary,
			subject:    Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelInjection: "disabled"}, Labels: map[string]string{LabelRev: "canary"}},
			wantReason: ReasonNamespaceDisabled,
		},
		"a pod canaries itself in an enabled namespace": {
			table:        tableCanary,
			subject:      Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelInjection: "enabled"}, Labels: map[string]string{LabelRev: "canary"}},
			wantReason:   ReasonPodRevisionLabel,
			wantRevision: "1-23-6", wantMessage: "pod istio.io/rev=canary: canary resolves to revision 1-23-6",
		},
		"istio-injection wins over istio.io/rev on the namespace, with a warning": {
			table:        tableCanary,
			subject:      Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelInjection: "enabled", LabelRev: "canary"}},
			wantReason:   ReasonNamespaceInjectionEnabled,
			wantRevision: "1-22-6",
			wantWarnings: []string{"sets both istio-injection=enabled and istio.io/rev=canary: istio-injection wins"},
		},
		"istio-injection=disabled wins over istio.io/rev on the namespace, with a warning": {
			table:        tableCanary,
			subject:      Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelInjection: "disabled", LabelRev: "canary"}},
			wantReason:   ReasonNamespaceDisabled,
			wantWarnings: []string{"sets both istio-injection=disabled and istio.io/rev=canary: istio-injection wins and pods get no sidecar"},
		},
		"the canary tag falls back to stable when no canary is published, with a warning": {
			table:        tablePromoted,
			subject:      Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelRev: "canary"}},
			wantReason:   ReasonNamespaceRevisionLabel,
			wantRevision: "1-23-6",
			wantWarnings: []string{"no canary is published, so the pod gets the stable revision 1-23-6"},
		},
		"default is an alias of stable": {
			table:        tableCanary,
			subject:      Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelRev: "default"}},
			wantReason:   ReasonNamespaceRevisionLabel,
			wantRevision: "1-22-6",
		},
		"an unknown revision is named with the published ones": {
			table:        tableCanary,
			subject:      Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelRev: "1-24-0"}},
			wantReason:   ReasonUnknownRevision,
			wantWarnings: []string{`namespace istio.io/rev=1-24-0 names revision "1-24-0", which is not published (published: 1-22-6 (stable), 1-23-6 (canary)); the pod gets no sidecar`},
		},
		"an unknown revision is refused under policy Deny": {
			table:       deny,
			subject:     Subject{Namespace: "bookinfo", Labels: map[string]string{LabelRev: "1-24-0"}},
			wantReason:  ReasonUnknownRevision,
			wantDeny:    true,
			wantMessage: `pod istio.io/rev=1-24-0 names revision "1-24-0", which is not published (published: 1-22-6 (stable), 1-23-6 (canary)); the pod is refused (unknownRevisionPolicy: Deny)`,
		},
		"a namespace asking for injection before any Mesh exists is warned": {
			table:        nil,
			subject:      Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelInjection: "enabled"}},
			wantReason:   ReasonNoMesh,
			wantWarnings: []string{`no Mesh "default" is installed`},
		},
		"an istio-injection value other than enabled or disabled is ignored with a warning": {
			table:        tableCanary,
			subject:      Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelInjection: "true"}},
			wantReason:   ReasonNotSelected,
			wantWarnings: []string{`istio-injection="true" is neither "enabled" nor "disabled"`},
		},
		"an empty istio.io/rev label counts as absent": {
			table:      tableCanary,
			subject:    Subject{Namespace: "bookinfo", NamespaceLabels: map[string]string{LabelRev: ""}},
			wantReason: ReasonNotSelected,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := Resolve(c.table, ownNS, c.subject)
			assert.Equal(t, c.wantReason, d.Reason, d.Message)
			assert.Equal(t, c.wantRevision, d.RevisionName())
			assert.Equal(t, c.wantRevision != "", d.Inject)
			assert.Equal(t, c.wantDeny, d.Deny)
			assert.Contains(t, d.Message, c.wantMessage)
			require.Len(t, d.Warnings, len(c.wantWarnings), "warnings: %q", d.Warnings)
			for i, w := range c.wantWarnings {
				assert.Contains(t, d.Warnings[i], w)
			}
		})
	}
}
