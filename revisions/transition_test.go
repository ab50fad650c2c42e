package revisions

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func mesh(stable, canary string, revs ...v1alpha1.Revision) *v1alpha1.Mesh {
	return &v1alpha1.Mesh{
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName},
		Spec:       v1alpha1.MeshSpec{Revisions: revs, Stable: stable, Canary: canary},
	}
}

func forced(m *v1alpha1.Mesh) *v1alpha1.Mesh {
	m = m.DeepCopy()
	m.Annotations = map[string]string{AnnotationForce: "true"}
	return m
}

var (
	r2206 = rev("1-22-6", "1.22.6")
	r2209 = rev("1-22-9", "1.22.9")
	r2300 = rev("1-23-0", "1.23.0")
	r2306 = rev("1-23-6", "1.23.6")
	r2400 = rev("1-24-0", "1.24.0")
	r2119 = rev("1-21-9", "1.21.9")

	stableOnly = mesh("1-22-6", "", r2206)
	withCanary = mesh("1-22-6", "1-23-6", r2206, r2306)
	promoted   = mesh("1-23-6", "", r2206, r2306)
	upgraded   = mesh("1-23-6", "", r2306)

	readyFacts = Facts{ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": true}}
)

func TestValidateTransition(t *testing.T) {
	withPods := Facts{
		ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": true},
		Pods: podsOf("1-22-6", "bookinfo/reviews-v1-a", "bookinfo/reviews-v2-b", "bookinfo/ratings-c", "bookinfo/details-d",
			"bookinfo/productpage-e", "istio-system/ingress-f", "bookinfo/reviews-v3-g"),
	}
	cases := map[string]struct {
		old, new   *v1alpha1.Mesh
		facts      Facts
		wantAction Action
		wantFrom   string
		wantTo     string
		wantErr    []string // substrings of the one error
		wantField  string
		wantWarn   string
	}{
		"install with the stable revision": {
			new: stableOnly, wantAction: ActionInstall, wantTo: "1-22-6",
		},
		"install with a revision that is neither stable nor canary is refused": {
			new:     mesh("1-22-6", "", r2206, r2306),
			wantErr: []string{"revision 1-23-6 is neither stable nor canary"}, wantField: "spec.revisions[1]",
		},
		"a Mesh not named default is refused": {
			new:     &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: stableOnly.Spec},
			wantErr: []string{`a cluster has one Mesh and it is named "default"`}, wantField: "metadata.name",
		},
		"a stable tag naming nothing published is refused": {
			new:     mesh("1-22-7", "", r2206),
			wantErr: []string{"names no published revision (published: 1-22-6)"}, wantField: "spec.stable",
		},
		"a bad version is refused with its field": {
			new:     mesh("1-22-6", "", rev("1-22-6", "1.22")),
			wantErr: []string{`version "1.22" must be MAJOR.MINOR.PATCH`}, wantField: "spec.revisions[0].version",
		},
		"deploy canary to the next minor": {
			old: stableOnly, new: withCanary, wantAction: ActionDeployCanary, wantFrom: "1-22-6", wantTo: "1-23-6",
		},
		"deploy canary to the next minor's first patch": {
			old: stableOnly, new: mesh("1-22-6", "1-23-0", r2206, r2300), wantAction: ActionDeployCanary, wantTo: "1-23-0", wantFrom: "1-22-6",
		},
		"deploy canary to a patch release": {
			old: stableOnly, new: mesh("1-22-6", "1-22-9", r2206, r2209), wantAction: ActionDeployCanary, wantTo: "1-22-9", wantFrom: "1-22-6",
		},
		"deploy canary skipping a minor is refused by the skip policy": {
			old: stableOnly, new: mesh("1-22-6", "1-24-0", r2206, r2400),
			wantErr:   []string{"cannot deploy canary 1-24-0", "1.24.0 is 2 minor versions above stable 1.22.6", "upgrade to 1.23.x first"},
			wantField: "spec.revisions[1].version",
		},
		"deploy canary of an older version is refused": {
			old: stableOnly, new: mesh("1-22-6", "1-21-9", r2206, r2119),
			wantErr: []string{"cannot deploy canary 1-21-9", "1.21.9 is not newer than stable 1.22.6"},
		},
		"deploy canary while one is deployed is refused": {
			old: withCanary, new: mesh("1-22-6", "1-23-0", r2206, r2306, r2300),
			wantErr: []string{"canary 1-23-6 is already deployed: promote it (meshrev promote) or revoke it (meshrev revoke)"}, wantField: "spec.canary",
		},
		"deploy canary before the last upgrade's old revision is unpublished is refused": {
			old: promoted, new: mesh("1-23-6", "1-24-0", r2206, r2306, r2400),
			wantErr: []string{"cannot deploy canary 1-24-0: revision 1-22-6 is still published from the last upgrade", "meshrev unpublish"},
		},
		"publishing a revision without making it the canary is refused": {
			old: stableOnly, new: mesh("1-22-6", "", r2206, r2306),
			wantErr: []string{"cannot publish 1-23-6 without making it the canary"},
		},
		"promote a ready canary": {
			old: withCanary, new: promoted, facts: readyFacts, wantAction: ActionPromote, wantFrom: "1-22-6", wantTo: "1-23-6",
		},
		"promote without a canary is refused": {
			old: stableOnly, new: mesh("1-23-6", "", r2206, r2306),
			wantErr: []string{"cannot set stable from 1-22-6 to 1-23-6: no canary is deployed to promote; deploy one first (meshrev canary deploy VERSION)"},
		},
		"moving stable to an unpublished revision is refused": {
			old: stableOnly, new: mesh("1-23-6", "", r2306),
			wantErr: []string{"cannot set stable from 1-22-6 to 1-23-6: no canary is deployed to promote"},
		},
		"promote while the canary's control plane is not ready is refused": {
			old: withCanary, new: promoted, facts: Facts{ControlPlaneReady: map[string]bool{"1-22-6": true}},
			wantErr:   []string{"cannot promote canary 1-23-6: its control plane is not Ready", "meshrev.io/force=true", "meshrev promote --force"},
			wantField: "spec.stable",
		},
		"promote a canary that is not ready when forced, with a warning": {
			old: withCanary, new: forced(promoted), facts: Facts{}, wantAction: ActionPromote, wantFrom: "1-22-6", wantTo: "1-23-6",
			wantWarn: "although its control plane is not Ready (forced)",
		},
		"a force annotation left over from an earlier update does not force promote": {
			old: forced(withCanary), new: forced(promoted), facts: Facts{},
			wantErr: []string{"cannot promote canary 1-23-6: its control plane is not Ready"},
		},
		"a force annotation left over from an earlier update does not force unpublish": {
			old: forced(promoted), new: forced(upgraded), facts: withPods,
			wantErr: []string{"cannot unpublish 1-22-6"},
		},
		"promote and unpublish in one update is refused": {
			old: withCanary, new: upgraded, facts: readyFacts,
			wantErr: []string{"promotes 1-23-6 and changes the published revisions at once; take one step at a time"},
		},
		"revoke the canary": {
			old: withCanary, new: stableOnly,
			facts:      Facts{Namespaces: map[string]map[string]string{"default": {LabelRev: "stable"}, "shop": {LabelInjection: "enabled"}}},
			wantAction: ActionRevoke, wantFrom: "1-23-6", wantTo: "1-22-6",
		},
		"revoke while a namespace is labelled canary is refused and names it": {
			old: withCanary, new: stableOnly,
			facts: Facts{Namespaces: map[string]map[string]string{"default": {LabelRev: "canary"}, "shop": {LabelInjection: "enabled"}}},
			wantErr: []string{"cannot revoke canary 1-23-6: 1 namespace (default (istio.io/rev=canary)) is still on the canary",
				"meshrev namespace switch default --to stable"},
			wantField: "spec.canary",
		},
		"revoke while a namespace pins the canary by name is refused": {
			old: withCanary, new: stableOnly,
			facts:   Facts{Namespaces: map[string]map[string]string{"a": {LabelRev: "1-23-6"}, "b": {LabelRev: "canary"}}},
			wantErr: []string{"2 namespaces (a (istio.io/rev=1-23-6), b (istio.io/rev=canary)) are still on the canary"},
		},
		"revoke warns about pods still running the canary": {
			old: withCanary, new: stableOnly,
			facts:      Facts{Pods: podsOf("1-23-6", "default/reviews-v2-x")},
			wantAction: ActionRevoke, wantFrom: "1-23-6", wantTo: "1-22-6",
			wantWarn: "1 pod (default/reviews-v2-x) still run the sidecar of revoked revision 1-23-6",
		},
		"dropping the canary tag but keeping its revision is refused": {
			old: withCanary, new: mesh("1-22-6", "", r2206, r2306),
			wantErr: []string{"to revoke canary 1-23-6, remove its revision too (meshrev revoke)"},
		},
		"unpublish the old revision": {
			old: promoted, new: upgraded, wantAction: ActionUnpublish, wantFrom: "1-22-6", wantTo: "1-23-6",
		},
		"unpublish while pods run the revision is refused with a count and a few names": {
			old: promoted, new: upgraded, facts: withPods,
			wantErr: []string{"cannot unpublish 1-22-6: 7 pods (bookinfo/details-d, bookinfo/productpage-e, bookinfo/ratings-c, bookinfo/reviews-v1-a, bookinfo/reviews-v2-b, and 2 more) still run the sidecar of 1-22-6",
				"meshrev dataplane upgrade --all", "meshrev unpublish --force"},
			wantField: "spec.revisions",
		},
		"unpublish while pods run the revision when forced, with a warning": {
			old: promoted, new: forced(upgraded), facts: withPods, wantAction: ActionUnpublish, wantFrom: "1-22-6", wantTo: "1-23-6",
			wantWarn: "7 pods",
		},
		"unpublish while a namespace pins the revision is refused": {
			old: promoted, new: upgraded,
			facts:   Facts{Namespaces: map[string]map[string]string{"legacy": {LabelRev: "1-22-6"}}},
			wantErr: []string{"cannot unpublish 1-22-6: 1 namespace (legacy) is pinned to it (istio.io/rev=1-22-6)", "meshrev namespace switch legacy --to stable"},
		},
		"setting stable back after a promotion is refused": {
			old: promoted, new: mesh("1-22-6", "", r2206, r2306),
			wantErr:   []string{"cannot set stable from 1-23-6 to 1-22-6", "after a promotion the upgrade cannot be revoked"},
			wantField: "spec.stable",
		},
		"editing a published version in place is refused": {
			old: stableOnly, new: mesh("1-22-6", "", rev("1-22-6", "1.22.7")),
			wantErr:   []string{"revision 1-22-6 is published and its version (\"1.22.6\") cannot be edited in place"},
			wantField: "spec.revisions[0].version",
		},
		"editing a published proxy image in place is refused": {
			old: stableOnly, new: mesh("1-22-6", "", v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6", ProxyImage: "evil/proxy:1"}),
			wantErr: []string{"its proxyImage"},
		},
		"scaling a control plane is an edit": {
			old:        mesh("1-22-6", "", v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6", ControlPlane: &v1alpha1.ControlPlane{Image: "pilot:1.22.6"}}),
			new:        mesh("1-22-6", "", v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6", ControlPlane: &v1alpha1.ControlPlane{Image: "pilot:1.22.6", Replicas: ptr(int32(3))}}),
			wantAction: ActionEdit,
		},
		"changing the unknown-revision policy is an edit": {
			old: stableOnly,
			new: func() *v1alpha1.Mesh {
				m := stableOnly.DeepCopy()
				m.Spec.UnknownRevisionPolicy = v1alpha1.UnknownRevisionDeny
				return m
			}(),
			wantAction: ActionEdit,
		},
		"a status-only update is no step": {
			old: withCanary, new: withCanary, wantAction: ActionNone,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			tr, errs := ValidateTransition(c.old, c.new, c.facts)
			if len(c.wantErr) > 0 {
				require.Len(t, errs, 1, "errors: %v", errs)
				for _, s := range c.wantErr {
					assert.Contains(t, errs[0].Error(), s)
				}
				if c.wantField != "" {
					assert.Equal(t, c.wantField, errs[0].Field)
				}
				assert.Empty(t, tr.Action)
				return
			}
			require.Empty(t, errs)
			assert.Equal(t, c.wantAction, tr.Action)
			assert.Equal(t, c.wantFrom, tr.From)
			assert.Equal(t, c.wantTo, tr.To)
			if c.wantWarn == "" {
				assert.Empty(t, tr.Warnings)
			} else {
				require.Len(t, tr.Warnings, 1)
				assert.Contains(t, tr.Warnings[0], c.wantWarn)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestPhaseAndNext(t *testing.T) {
	cases := map[string]struct {
		spec        *v1alpha1.MeshSpec
		outdated    int32
		wantPhase   v1alpha1.MeshPhase
		wantCommand string
	}{
		"one revision is stable":                   {spec: &stableOnly.Spec, wantPhase: v1alpha1.PhaseStable, wantCommand: "meshrev canary deploy VERSION"},
		"a canary is deployed":                     {spec: &withCanary.Spec, outdated: 3, wantPhase: v1alpha1.PhaseCanaryDeployed, wantCommand: "meshrev namespace switch NS --to canary"},
		"promoted with outdated pods is upgrading": {spec: &promoted.Spec, outdated: 2, wantPhase: v1alpha1.PhaseDataPlaneUpgrading, wantCommand: "meshrev dataplane upgrade --all --gateways --wait"},
		"promoted with every pod up to date":       {spec: &promoted.Spec, wantPhase: v1alpha1.PhaseReadyToUnpublish, wantCommand: "meshrev unpublish"},
		"after unpublish the mesh is stable again": {spec: &upgraded.Spec, wantPhase: v1alpha1.PhaseStable, wantCommand: "meshrev canary deploy VERSION"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := Phase(c.spec, c.outdated)
			assert.Equal(t, c.wantPhase, p)
			assert.Contains(t, Next(c.spec, p).Command, c.wantCommand)
		})
	}
}

// podsOf makes the facts' pods "namespace/name" that run rev's sidecar.
func podsOf(rev string, names ...string) []Pod {
	var out []Pod
	for _, n := range names {
		ns, name, _ := strings.Cut(n, "/")
		out = append(out, Pod{Namespace: ns, Name: name, Labels: map[string]string{LabelRevision: rev}, Annotations: map[string]string{AnnotationStatus: statusOf(rev)}, Containers: []string{"app", ProxyContainer, "istio-init"}})
	}
	return out
}
