package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

var (
	t0 = metav1.NewTime(time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC))
	t1 = metav1.NewTime(t0.Add(time.Minute))
)

func rev(name string) v1alpha1.Revision {
	v, err := revisions.VersionFromRevisionName(name)
	if err != nil {
		panic(err)
	}
	return v1alpha1.Revision{Name: name, Version: v.String()}
}

func meshSpec(stable, canary string, names ...string) v1alpha1.MeshSpec {
	s := v1alpha1.MeshSpec{Stable: stable, Canary: canary}
	for _, n := range names {
		s.Revisions = append(s.Revisions, rev(n))
	}
	return s
}

// recorded is the status the controller writes for spec: its revisions with tags.
func recorded(spec v1alpha1.MeshSpec, history ...v1alpha1.HistoryEntry) v1alpha1.MeshStatus {
	st := v1alpha1.MeshStatus{History: history}
	for _, r := range spec.Revisions {
		st.Revisions = append(st.Revisions, v1alpha1.RevisionStatus{Name: r.Name, Version: r.Version, Tags: revisions.Tags(&spec, r.Name)})
	}
	return st
}

func step(a revisions.Action, from, to string) v1alpha1.HistoryEntry {
	return v1alpha1.HistoryEntry{Time: t1, Action: string(a), From: from, To: to}
}

func TestDetectSteps(t *testing.T) {
	install := v1alpha1.HistoryEntry{Time: t0, Action: "Install", To: "1-22-6"}
	tests := map[string]struct {
		spec   v1alpha1.MeshSpec
		status v1alpha1.MeshStatus
		want   []v1alpha1.HistoryEntry
	}{
		"a new mesh records its install": {
			spec: meshSpec("1-22-6", "", "1-22-6"),
			want: []v1alpha1.HistoryEntry{step(revisions.ActionInstall, "", "1-22-6")},
		},
		"a new mesh created with a canary records the install and the canary": {
			spec: meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6"),
			want: []v1alpha1.HistoryEntry{step(revisions.ActionInstall, "", "1-22-6"), step(revisions.ActionDeployCanary, "1-22-6", "1-23-6")},
		},
		"nothing changed since the last record, so nothing is recorded again": {
			spec:   meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6"),
			status: recorded(meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6"), install),
		},
		"a canary added to a stable mesh is a deploy": {
			spec:   meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6"),
			status: recorded(meshSpec("1-22-6", "", "1-22-6"), install),
			want:   []v1alpha1.HistoryEntry{step(revisions.ActionDeployCanary, "1-22-6", "1-23-6")},
		},
		"stable moving to the recorded canary is a promotion from the old stable": {
			spec:   meshSpec("1-23-6", "", "1-22-6", "1-23-6"),
			status: recorded(meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6"), install),
			want:   []v1alpha1.HistoryEntry{step(revisions.ActionPromote, "1-22-6", "1-23-6")},
		},
		"the canary and its revision removed is a revoke": {
			spec:   meshSpec("1-22-6", "", "1-22-6"),
			status: recorded(meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6"), install),
			want:   []v1alpha1.HistoryEntry{step(revisions.ActionRevoke, "1-23-6", "1-22-6")},
		},
		"the old stable removed after a promotion is an unpublish": {
			spec:   meshSpec("1-23-6", "", "1-23-6"),
			status: recorded(meshSpec("1-23-6", "", "1-22-6", "1-23-6"), install),
			want:   []v1alpha1.HistoryEntry{step(revisions.ActionUnpublish, "1-22-6", "1-23-6")},
		},
		"a promotion and an unpublish made while the controller was down are both recorded, in order": {
			spec:   meshSpec("1-23-6", "", "1-23-6"),
			status: recorded(meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6"), install),
			want:   []v1alpha1.HistoryEntry{step(revisions.ActionPromote, "1-22-6", "1-23-6"), step(revisions.ActionUnpublish, "1-22-6", "1-23-6")},
		},
		"a revoke and a new canary made while the controller was down are both recorded, in order": {
			spec:   meshSpec("1-22-6", "1-23-7", "1-22-6", "1-23-7"),
			status: recorded(meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6"), install),
			want:   []v1alpha1.HistoryEntry{step(revisions.ActionRevoke, "1-23-6", "1-22-6"), step(revisions.ActionDeployCanary, "1-22-6", "1-23-7")},
		},
		"a control-plane edit is not a lifecycle step": {
			spec: func() v1alpha1.MeshSpec {
				s := meshSpec("1-22-6", "", "1-22-6")
				s.Revisions[0].ControlPlane = &v1alpha1.ControlPlane{Image: "pilot:1.22.6", Replicas: ptr.To[int32](3)}
				return s
			}(),
			status: recorded(meshSpec("1-22-6", "", "1-22-6"), install),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := DetectSteps(&tc.spec, &tc.status, t1)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestComputeStatus(t *testing.T) {
	install := v1alpha1.HistoryEntry{Time: t0, Action: "Install", To: "1-22-6"}
	canarySpec := meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6")
	promotedSpec := meshSpec("1-23-6", "", "1-22-6", "1-23-6")
	namespaces := map[string]map[string]string{
		"kube-system":    {revisions.LabelInjection: "enabled"},
		"meshrev-system": {},
		"bookinfo":       {revisions.LabelRev: "canary"},
		"web":            {revisions.LabelInjection: "enabled"},
		"plain":          {},
	}
	type want struct {
		phase       v1alpha1.MeshPhase
		previous    string
		revisions   []v1alpha1.RevisionStatus
		history     []v1alpha1.HistoryEntry
		ready       metav1.ConditionStatus
		readyReason string
		progressing metav1.ConditionStatus
		progReason  string
	}
	tests := map[string]struct {
		spec   v1alpha1.MeshSpec
		status v1alpha1.MeshStatus
		facts  revisions.Facts
		want   want
	}{
		"a canary whose control plane is starting is CanaryDeployed and not Ready": {
			spec:   canarySpec,
			status: recorded(meshSpec("1-22-6", "", "1-22-6"), install),
			facts: revisions.Facts{Namespaces: namespaces, ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": false},
				Pods: []revisions.Pod{injected("web", "a", "1-22-6"), injected("bookinfo", "b", "1-23-6")}},
			want: want{
				phase: v1alpha1.PhaseCanaryDeployed,
				revisions: []v1alpha1.RevisionStatus{
					{Name: "1-22-6", Version: "1.22.6", Tags: []string{"stable"}, ControlPlaneReady: true, Namespaces: []string{"web"}, NamespaceCount: 1, Pods: 1},
					{Name: "1-23-6", Version: "1.23.6", Tags: []string{"canary"}, ControlPlaneReady: false, Namespaces: []string{"bookinfo"}, NamespaceCount: 1, Pods: 1},
				},
				history:     []v1alpha1.HistoryEntry{install, step(revisions.ActionDeployCanary, "1-22-6", "1-23-6")},
				ready:       metav1.ConditionFalse,
				readyReason: "ControlPlaneNotReady",
				progressing: metav1.ConditionTrue,
				progReason:  "CanaryDeployed",
			},
		},
		"just promoted with a namespace still labelled canary: the step is on record and the relabel is pending": {
			spec:   promotedSpec,
			status: recorded(canarySpec, install),
			facts: revisions.Facts{Namespaces: namespaces, ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": true},
				Pods: []revisions.Pod{injected("web", "a", "1-22-6")}},
			want: want{
				phase:    v1alpha1.PhaseDataPlaneUpgrading,
				previous: "1-22-6",
				revisions: []v1alpha1.RevisionStatus{
					{Name: "1-22-6", Version: "1.22.6", ControlPlaneReady: true, Pods: 1, OutdatedWorkloads: 1},
					{Name: "1-23-6", Version: "1.23.6", Tags: []string{"stable"}, ControlPlaneReady: true, Namespaces: []string{"bookinfo", "web"}, NamespaceCount: 2},
				},
				history:     []v1alpha1.HistoryEntry{install, step(revisions.ActionPromote, "1-22-6", "1-23-6")},
				ready:       metav1.ConditionFalse,
				readyReason: "Relabelling",
				progressing: metav1.ConditionTrue,
				progReason:  "Relabelling",
			},
		},
		"promoted and every pod rolled: ReadyToUnpublish": {
			spec:   promotedSpec,
			status: recorded(promotedSpec, install),
			facts: revisions.Facts{Namespaces: map[string]map[string]string{"web": {revisions.LabelRev: "stable"}}, ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": true},
				Pods: []revisions.Pod{injected("web", "a", "1-23-6")}},
			want: want{
				phase:    v1alpha1.PhaseReadyToUnpublish,
				previous: "1-22-6",
				revisions: []v1alpha1.RevisionStatus{
					{Name: "1-22-6", Version: "1.22.6", ControlPlaneReady: true},
					{Name: "1-23-6", Version: "1.23.6", Tags: []string{"stable"}, ControlPlaneReady: true, Namespaces: []string{"web"}, NamespaceCount: 1, Pods: 1},
				},
				history:     []v1alpha1.HistoryEntry{install},
				ready:       metav1.ConditionTrue,
				readyReason: "ControlPlanesReady",
				progressing: metav1.ConditionTrue,
				progReason:  "ReadyToUnpublish",
			},
		},
		"a fresh stable mesh is Stable, Ready and not Progressing": {
			spec:  meshSpec("1-22-6", "", "1-22-6"),
			facts: revisions.Facts{Namespaces: map[string]map[string]string{"web": {revisions.LabelInjection: "enabled"}}, ControlPlaneReady: map[string]bool{"1-22-6": true}},
			want: want{
				phase:       v1alpha1.PhaseStable,
				revisions:   []v1alpha1.RevisionStatus{{Name: "1-22-6", Version: "1.22.6", Tags: []string{"stable"}, ControlPlaneReady: true, Namespaces: []string{"web"}, NamespaceCount: 1}},
				history:     []v1alpha1.HistoryEntry{step(revisions.ActionInstall, "", "1-22-6")},
				ready:       metav1.ConditionTrue,
				readyReason: "ControlPlanesReady",
				progressing: metav1.ConditionFalse,
				progReason:  "Stable",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			mesh := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: "default", Generation: 7}, Spec: tc.spec, Status: tc.status}
			st, _ := ComputeStatus(mesh, StatusInput{OwnNamespace: "meshrev-system", Now: t1}, &tc.facts)
			assert.Equal(t, int64(7), st.ObservedGeneration)
			assert.Equal(t, tc.want.phase, st.Phase)
			assert.Equal(t, tc.want.previous, st.Previous)
			assert.Equal(t, tc.want.revisions, st.Revisions)
			assert.Equal(t, tc.want.history, st.History)
			ready := meta.FindStatusCondition(st.Conditions, ConditionReady)
			require.NotNil(t, ready)
			assert.Equal(t, tc.want.ready, ready.Status)
			assert.Equal(t, tc.want.readyReason, ready.Reason)
			assert.Equal(t, int64(7), ready.ObservedGeneration)
			assert.NotEmpty(t, ready.Message)
			prog := meta.FindStatusCondition(st.Conditions, ConditionProgressing)
			require.NotNil(t, prog)
			assert.Equal(t, tc.want.progressing, prog.Status)
			assert.Equal(t, tc.want.progReason, prog.Reason)
			assert.NotEmpty(t, prog.Message)

			// The controller writes only when something changed: a second
			// computation over the written status is identical and records no step again.
			mesh.Status = st
			again, steps := ComputeStatus(mesh, StatusInput{OwnNamespace: "meshrev-system", Now: metav1.NewTime(t1.Add(time.Hour))}, &tc.facts)
			assert.Empty(t, steps)
			assert.Equal(t, st, again)
		})
	}
}

func TestComputeStatusBoundsHistory(t *testing.T) {
	spec := meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6")
	st := recorded(meshSpec("1-22-6", "", "1-22-6"))
	for i := range 5 {
		st.History = append(st.History, v1alpha1.HistoryEntry{Time: t0, Action: "Install", To: fmt.Sprint(i)})
	}
	mesh := &v1alpha1.Mesh{Spec: spec, Status: st}
	got, steps := ComputeStatus(mesh, StatusInput{HistoryLimit: 3, Now: t1}, &revisions.Facts{})
	require.Len(t, steps, 1)
	require.Len(t, got.History, 3)
	assert.Equal(t, "3", got.History[0].To, "the oldest entries go first")
	assert.Equal(t, step(revisions.ActionDeployCanary, "1-22-6", "1-23-6"), got.History[2])
}

func TestPendingRelabel(t *testing.T) {
	namespaces := map[string]map[string]string{
		"a": {revisions.LabelRev: "canary"},
		"b": {revisions.LabelRev: "stable"},
		"c": {revisions.LabelRev: "canary", revisions.LabelInjection: "enabled"},
		"d": {revisions.LabelRev: "1-23-6"},
	}
	tests := map[string]struct {
		spec v1alpha1.MeshSpec
		want []string
	}{
		"while a canary is published the canary label means it and nothing is relabelled": {
			spec: meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6"),
		},
		"after a promotion every namespace labelled canary is relabelled, in name order": {
			spec: meshSpec("1-23-6", "", "1-22-6", "1-23-6"),
			want: []string{"a", "c"},
		},
		"before any canary a namespace labelled canary ahead of time is left alone": {
			spec: meshSpec("1-22-6", "", "1-22-6"),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, PendingRelabel(&tc.spec, namespaces))
		})
	}
}

func BenchmarkComputeStatus(b *testing.B) {
	spec := meshSpec("1-23-6", "", "1-22-6", "1-23-6")
	facts := &revisions.Facts{Namespaces: map[string]map[string]string{}, ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": true}}
	for n := range 100 {
		ns := fmt.Sprintf("ns-%03d", n)
		facts.Namespaces[ns] = map[string]string{revisions.LabelInjection: "enabled"}
		for d := range 10 {
			rs := fmt.Sprintf("app-%d-5f7c9", d)
			for p := range 10 {
				rev := "1-23-6"
				if p%2 == 0 {
					rev = "1-22-6"
				}
				facts.Pods = append(facts.Pods, revisions.Pod{Namespace: ns, Name: fmt.Sprintf("%s-%d", rs, p),
					Labels: map[string]string{"app": "x", revisions.LabelRevision: rev}, Annotations: statusAnnotation(rev), Containers: proxyContainers, Owner: revisions.Owner{Kind: "Deployment", Name: fmt.Sprintf("app-%d", d)}})
			}
		}
	}
	mesh := &v1alpha1.Mesh{Spec: spec, Status: recorded(spec)}
	b.ReportAllocs()
	for b.Loop() {
		st, _ := ComputeStatus(mesh, StatusInput{OwnNamespace: "meshrev-system", Now: t1}, facts)
		if st.DataPlane.Outdated != 5000 || st.DataPlane.OutdatedWorkloadCount != 1000 || len(st.DataPlane.OutdatedWorkloads) != v1alpha1.MaxListedOutdatedWorkloads {
			b.Fatalf("unexpected report: %d outdated in %d workloads, %d listed", st.DataPlane.Outdated, st.DataPlane.OutdatedWorkloadCount, len(st.DataPlane.OutdatedWorkloads))
		}
	}
}

// injected is a bare injected pod of the facts.
func injected(ns, name, revision string) revisions.Pod {
	return revisions.Pod{Namespace: ns, Name: name, Labels: map[string]string{revisions.LabelRevision: revision}, Annotations: statusAnnotation(revision), Containers: proxyContainers, Owner: revisions.Owner{Kind: "Pod", Name: name}}
}

// statusAnnotation is the status annotation injection writes for rev.
func statusAnnotation(rev string) map[string]string {
	return map[string]string{revisions.AnnotationStatus: `{"revision":"` + rev + `","containers":["istio-proxy"]}`}
}

func TestComputeStatusBoundsNamespaces(t *testing.T) {
	spec := meshSpec("1-23-6", "", "1-22-6", "1-23-6")
	facts := &revisions.Facts{Namespaces: map[string]map[string]string{}, ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": true}}
	for n := range 2000 {
		facts.Namespaces[fmt.Sprintf("ns-%04d", n)] = map[string]string{revisions.LabelRev: "canary"}
	}
	mesh := &v1alpha1.Mesh{Spec: spec, Status: recorded(spec)}
	st, _ := ComputeStatus(mesh, StatusInput{OwnNamespace: "meshrev-system", Now: t1}, facts)

	rev := st.Revisions[1]
	assert.Equal(t, int32(2000), rev.NamespaceCount, "every namespace is counted")
	assert.Equal(t, []string{"ns-0000", "ns-0001", "ns-0002", "ns-0003", "ns-0004", "ns-0005", "ns-0006", "ns-0007", "ns-0008", "ns-0009"}, rev.Namespaces,
		"the first MaxListedNamespaces are listed, in name order")
	ready := meta.FindStatusCondition(st.Conditions, ConditionReady)
	require.NotNil(t, ready)
	assert.Contains(t, ready.Message, "2000 namespaces still labelled")
	assert.Less(t, len(ready.Message), 400, "the pending relabels are listed up to the same bound")
}

func TestCountsOnly(t *testing.T) {
	base := func() v1alpha1.MeshStatus {
		return v1alpha1.MeshStatus{
			Phase:     v1alpha1.PhaseDataPlaneUpgrading,
			Revisions: []v1alpha1.RevisionStatus{{Name: "1-22-6", Pods: 30, OutdatedWorkloads: 3, ControlPlaneReady: true}, {Name: "1-23-6", Tags: []string{"stable"}, Pods: 10, ControlPlaneReady: true}},
			DataPlane: v1alpha1.DataPlaneStatus{Pods: 40, UpToDate: 10, Outdated: 30, OutdatedWorkloadCount: 3},
			Conditions: []metav1.Condition{
				{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "ControlPlanesReady", Message: "ok"},
				{Type: ConditionProgressing, Status: metav1.ConditionTrue, Reason: "DataPlaneUpgrading", Message: "30 pods in 3 workloads still run an outdated sidecar"},
			},
		}
	}
	tests := map[string]struct {
		change func(*v1alpha1.MeshStatus)
		want   bool
	}{
		"nothing changed": {change: func(*v1alpha1.MeshStatus) {}, want: true},
		"pods rolled over: the data-plane counts, the per-revision counts and the Progressing message change": {
			change: func(s *v1alpha1.MeshStatus) {
				s.DataPlane = v1alpha1.DataPlaneStatus{Pods: 40, UpToDate: 20, Outdated: 20, OutdatedWorkloadCount: 2}
				s.Revisions[0].Pods, s.Revisions[0].OutdatedWorkloads, s.Revisions[1].Pods = 20, 2, 20
				s.Conditions[1].Message = "20 pods in 2 workloads still run an outdated sidecar"
			},
			want: true,
		},
		"the phase changed": {change: func(s *v1alpha1.MeshStatus) {
			s.Phase = v1alpha1.PhaseReadyToUnpublish
			s.Conditions[1].Reason = "ReadyToUnpublish"
		}},
		"a control plane became unavailable": {change: func(s *v1alpha1.MeshStatus) { s.Revisions[1].ControlPlaneReady = false }},
		"a namespace was labelled":           {change: func(s *v1alpha1.MeshStatus) { s.Revisions[1].NamespaceCount = 1 }},
		"the Ready message changed":          {change: func(s *v1alpha1.MeshStatus) { s.Conditions[0].Message = "relabelling" }},
		"a new generation was observed":      {change: func(s *v1alpha1.MeshStatus) { s.ObservedGeneration = 8 }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			was, now := base(), base()
			tc.change(&now)
			assert.Equal(t, tc.want, CountsOnly(&was, &now))
		})
	}
}

// proxyContainers are the containers of a pod injection left its sidecar in.
var proxyContainers = []string{"app", revisions.ProxyContainer}
