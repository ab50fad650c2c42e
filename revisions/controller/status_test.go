package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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

// podMeta is an injected pod as the metadata cache holds it.
func podMeta(ns, name, revision string, owner *metav1.OwnerReference, labels, annotations map[string]string) metav1.PartialObjectMetadata {
	p := metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{}, Annotations: annotations}}
	for k, v := range labels {
		p.Labels[k] = v
	}
	if revision != "" {
		p.Labels[revisions.LabelRevision] = revision
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p
}

func controllerRef(apiVersion, kind, name string) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: ptr.To(true)}
}

func TestTopOwner(t *testing.T) {
	rsOwners := map[string]*metav1.OwnerReference{
		"shop/reviews-v1-7d9f": controllerRef("apps/v1", "Deployment", "reviews-v1"),
	}
	tests := map[string]struct {
		pod  metav1.PartialObjectMetadata
		want Owner
	}{
		"a pod of a Deployment's ReplicaSet belongs to the Deployment": {
			pod:  podMeta("shop", "reviews-v1-7d9f-abcde", "1-22-6", controllerRef("apps/v1", "ReplicaSet", "reviews-v1-7d9f"), nil, nil),
			want: Owner{Kind: "Deployment", Name: "reviews-v1"},
		},
		"a pod of a bare ReplicaSet belongs to the ReplicaSet": {
			pod:  podMeta("shop", "legacy-x1", "1-22-6", controllerRef("apps/v1", "ReplicaSet", "legacy"), nil, nil),
			want: Owner{Kind: "ReplicaSet", Name: "legacy"},
		},
		"a ReplicaSet of the same name in another namespace does not lend its owner": {
			pod:  podMeta("other", "reviews-v1-7d9f-abcde", "1-22-6", controllerRef("apps/v1", "ReplicaSet", "reviews-v1-7d9f"), nil, nil),
			want: Owner{Kind: "ReplicaSet", Name: "reviews-v1-7d9f"},
		},
		"a StatefulSet pod belongs to the StatefulSet": {
			pod:  podMeta("shop", "mysql-0", "1-22-6", controllerRef("apps/v1", "StatefulSet", "mysql"), nil, nil),
			want: Owner{Kind: "StatefulSet", Name: "mysql"},
		},
		"a DaemonSet pod belongs to the DaemonSet": {
			pod:  podMeta("shop", "agent-x7", "1-22-6", controllerRef("apps/v1", "DaemonSet", "agent"), nil, nil),
			want: Owner{Kind: "DaemonSet", Name: "agent"},
		},
		"a bare pod is its own workload": {
			pod:  podMeta("shop", "debug", "1-22-6", nil, nil, nil),
			want: Owner{Kind: "Pod", Name: "debug"},
		},
		"an owner that is not the controller is not followed": {
			pod: func() metav1.PartialObjectMetadata {
				p := podMeta("shop", "debug", "1-22-6", nil, nil, nil)
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x"}}
				return p
			}(),
			want: Owner{Kind: "Pod", Name: "debug"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, TopOwner(&tc.pod, rsOwners))
		})
	}
}

func TestDataPlaneReport(t *testing.T) {
	promoted := meshSpec("1-23-6", "", "1-22-6", "1-23-6")
	canary := meshSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6")
	rs := func(name string) *metav1.OwnerReference { return controllerRef("apps/v1", "ReplicaSet", name) }
	rsOwners := map[string]*metav1.OwnerReference{
		"shop/reviews-v1-aaa":   controllerRef("apps/v1", "Deployment", "reviews-v1"),
		"shop/reviews-v1-bbb":   controllerRef("apps/v1", "Deployment", "reviews-v1"),
		"shop/ratings-ccc":      controllerRef("apps/v1", "Deployment", "ratings"),
		"gw/ingressgateway-ddd": controllerRef("apps/v1", "Deployment", "ingressgateway"),
	}
	tests := map[string]struct {
		spec       v1alpha1.MeshSpec
		namespaces map[string]map[string]string
		pods       []metav1.PartialObjectMetadata
		want       v1alpha1.DataPlaneStatus
		perRev     map[string]int32
	}{
		"after a promotion pods of the old stable are outdated and grouped by Deployment across ReplicaSets": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": {revisions.LabelInjection: "enabled"}},
			pods: []metav1.PartialObjectMetadata{
				podMeta("shop", "reviews-v1-aaa-1", "1-22-6", rs("reviews-v1-aaa"), nil, nil),
				podMeta("shop", "reviews-v1-bbb-1", "1-22-6", rs("reviews-v1-bbb"), nil, nil),
				podMeta("shop", "ratings-ccc-1", "1-23-6", rs("ratings-ccc"), nil, nil),
				podMeta("shop", "mysql-0", "1-22-6", controllerRef("apps/v1", "StatefulSet", "mysql"), nil, nil),
			},
			want: v1alpha1.DataPlaneStatus{Pods: 4, UpToDate: 1, Outdated: 3, OutdatedWorkloads: []v1alpha1.WorkloadStatus{
				{Kind: "Deployment", Namespace: "shop", Name: "reviews-v1", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 2},
				{Kind: "StatefulSet", Namespace: "shop", Name: "mysql", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1},
			}},
			perRev: map[string]int32{"1-22-6": 3, "1-23-6": 1},
		},
		"gateways are marked by label or by template annotation": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"gw": {revisions.LabelRev: "stable"}},
			pods: []metav1.PartialObjectMetadata{
				podMeta("gw", "ingressgateway-ddd-1", "1-22-6", rs("ingressgateway-ddd"), map[string]string{revisions.LabelIstio: "ingressgateway"}, nil),
				podMeta("gw", "custom-gw", "1-22-6", nil, nil, map[string]string{revisions.AnnotationTemplates: "gateway"}),
				podMeta("gw", "plain", "1-22-6", nil, nil, nil),
			},
			want: v1alpha1.DataPlaneStatus{Pods: 3, Outdated: 3, OutdatedWorkloads: []v1alpha1.WorkloadStatus{
				{Kind: "Deployment", Namespace: "gw", Name: "ingressgateway", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1, Gateway: true},
				{Kind: "Pod", Namespace: "gw", Name: "custom-gw", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1, Gateway: true},
				{Kind: "Pod", Namespace: "gw", Name: "plain", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1},
			}},
			perRev: map[string]int32{"1-22-6": 3},
		},
		"during a canary a canary namespace's canary pods and a stable namespace's stable pods are all up to date": {
			spec: canary,
			namespaces: map[string]map[string]string{
				"shop": {revisions.LabelRev: "canary"},
				"web":  {revisions.LabelInjection: "enabled"},
			},
			pods: []metav1.PartialObjectMetadata{
				podMeta("shop", "reviews-v2-1", "1-23-6", nil, nil, nil),
				podMeta("web", "productpage-1", "1-22-6", nil, nil, nil),
				podMeta("shop", "details-1", "1-22-6", nil, nil, nil),
			},
			want: v1alpha1.DataPlaneStatus{Pods: 3, UpToDate: 2, Outdated: 1, OutdatedWorkloads: []v1alpha1.WorkloadStatus{
				{Kind: "Pod", Namespace: "shop", Name: "details-1", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1},
			}},
			perRev: map[string]int32{"1-22-6": 2, "1-23-6": 1},
		},
		"a pod that pins a revision with its own label is up to date on it": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": {revisions.LabelInjection: "enabled"}},
			pods: []metav1.PartialObjectMetadata{
				podMeta("shop", "pinned", "1-22-6", nil, map[string]string{revisions.LabelRev: "1-22-6"}, nil),
			},
			want:   v1alpha1.DataPlaneStatus{Pods: 1, UpToDate: 1},
			perRev: map[string]int32{"1-22-6": 1},
		},
		"a sidecar pod in a namespace that no longer asks for injection is outdated with no wanted revision": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": {}},
			pods:       []metav1.PartialObjectMetadata{podMeta("shop", "left", "1-23-6", nil, nil, nil)},
			want: v1alpha1.DataPlaneStatus{Pods: 1, Outdated: 1, OutdatedWorkloads: []v1alpha1.WorkloadStatus{
				{Kind: "Pod", Namespace: "shop", Name: "left", Revisions: []string{"1-23-6"}, Want: "", Pods: 1},
			}},
			perRev: map[string]int32{"1-23-6": 1},
		},
		"pods of a namespace being deleted are left out of the report": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": nil},
			pods: []metav1.PartialObjectMetadata{
				podMeta("terminating", "a", "1-22-6", nil, nil, nil),
				podMeta("shop", "b", "1-23-6", nil, map[string]string{revisions.LabelSidecarInject: "true"}, nil),
			},
			want:   v1alpha1.DataPlaneStatus{Pods: 1, UpToDate: 1},
			perRev: map[string]int32{"1-23-6": 1},
		},
		"a namespace still labelled canary after a promotion resolves to stable, so its new pods are up to date": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": {revisions.LabelRev: "canary"}},
			pods:       []metav1.PartialObjectMetadata{podMeta("shop", "reviews-v2-1", "1-23-6", nil, nil, nil)},
			want:       v1alpha1.DataPlaneStatus{Pods: 1, UpToDate: 1},
			perRev:     map[string]int32{"1-23-6": 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dp, perRev := DataPlaneReport(&tc.spec, "meshrev-system", Snapshot{Namespaces: tc.namespaces, Pods: tc.pods, ReplicaSetOwners: rsOwners})
			assert.Equal(t, tc.want, dp)
			assert.Equal(t, tc.perRev, perRev)
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
		snap   Snapshot
		want   want
	}{
		"a canary whose control plane is starting is CanaryDeployed and not Ready": {
			spec:   canarySpec,
			status: recorded(meshSpec("1-22-6", "", "1-22-6"), install),
			snap: Snapshot{Namespaces: namespaces, ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": false},
				Pods: []metav1.PartialObjectMetadata{podMeta("web", "a", "1-22-6", nil, nil, nil), podMeta("bookinfo", "b", "1-23-6", nil, nil, nil)}},
			want: want{
				phase: v1alpha1.PhaseCanaryDeployed,
				revisions: []v1alpha1.RevisionStatus{
					{Name: "1-22-6", Version: "1.22.6", Tags: []string{"stable"}, ControlPlaneReady: true, Namespaces: []string{"web"}, Pods: 1},
					{Name: "1-23-6", Version: "1.23.6", Tags: []string{"canary"}, ControlPlaneReady: false, Namespaces: []string{"bookinfo"}, Pods: 1},
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
			snap: Snapshot{Namespaces: namespaces, ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": true},
				Pods: []metav1.PartialObjectMetadata{podMeta("web", "a", "1-22-6", nil, nil, nil)}},
			want: want{
				phase:    v1alpha1.PhaseDataPlaneUpgrading,
				previous: "1-22-6",
				revisions: []v1alpha1.RevisionStatus{
					{Name: "1-22-6", Version: "1.22.6", ControlPlaneReady: true, Pods: 1},
					{Name: "1-23-6", Version: "1.23.6", Tags: []string{"stable"}, ControlPlaneReady: true, Namespaces: []string{"bookinfo", "web"}},
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
			snap: Snapshot{Namespaces: map[string]map[string]string{"web": {revisions.LabelRev: "stable"}}, ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": true},
				Pods: []metav1.PartialObjectMetadata{podMeta("web", "a", "1-23-6", nil, nil, nil)}},
			want: want{
				phase:    v1alpha1.PhaseReadyToUnpublish,
				previous: "1-22-6",
				revisions: []v1alpha1.RevisionStatus{
					{Name: "1-22-6", Version: "1.22.6", ControlPlaneReady: true},
					{Name: "1-23-6", Version: "1.23.6", Tags: []string{"stable"}, ControlPlaneReady: true, Namespaces: []string{"web"}, Pods: 1},
				},
				history:     []v1alpha1.HistoryEntry{install},
				ready:       metav1.ConditionTrue,
				readyReason: "ControlPlanesReady",
				progressing: metav1.ConditionTrue,
				progReason:  "ReadyToUnpublish",
			},
		},
		"a fresh stable mesh is Stable, Ready and not Progressing": {
			spec: meshSpec("1-22-6", "", "1-22-6"),
			snap: Snapshot{Namespaces: map[string]map[string]string{"web": {revisions.LabelInjection: "enabled"}}, ControlPlaneReady: map[string]bool{"1-22-6": true}},
			want: want{
				phase:       v1alpha1.PhaseStable,
				revisions:   []v1alpha1.RevisionStatus{{Name: "1-22-6", Version: "1.22.6", Tags: []string{"stable"}, ControlPlaneReady: true, Namespaces: []string{"web"}}},
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
			st, _ := ComputeStatus(mesh, StatusInput{OwnNamespace: "meshrev-system", Now: t1}, tc.snap)
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
			again, steps := ComputeStatus(mesh, StatusInput{OwnNamespace: "meshrev-system", Now: metav1.NewTime(t1.Add(time.Hour))}, tc.snap)
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
	got, steps := ComputeStatus(mesh, StatusInput{HistoryLimit: 3, Now: t1}, Snapshot{})
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

func TestDeploymentAvailable(t *testing.T) {
	available := appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}
	unavailable := appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse}
	dep := func(replicas int32, gen, observed int64, avail int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: observed, AvailableReplicas: avail, Conditions: conds},
		}
	}
	tests := map[string]struct {
		d    *appsv1.Deployment
		want bool
	}{
		"an available rolled-out deployment is ready":               {d: dep(1, 2, 2, 1, available), want: true},
		"a deployment scaled to zero is not ready":                  {d: dep(0, 2, 2, 0, available)},
		"a deployment whose condition is stale is not ready":        {d: dep(1, 3, 2, 1, available)},
		"a deployment with no available replica is not ready":       {d: dep(1, 2, 2, 0, available)},
		"a deployment whose Available condition is False not ready": {d: dep(1, 2, 2, 1, unavailable)},
		"a deployment without conditions yet is not ready":          {d: dep(1, 1, 1, 1)},
		"a missing deployment is not ready":                         {d: nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, DeploymentAvailable(tc.d))
		})
	}
}

// BenchmarkComputeStatus measures one status computation over a large data
// plane: 10,000 injected pods in 100 namespaces, half of them outdated.
func BenchmarkComputeStatus(b *testing.B) {
	spec := meshSpec("1-23-6", "", "1-22-6", "1-23-6")
	snap := Snapshot{Namespaces: map[string]map[string]string{}, ReplicaSetOwners: map[string]*metav1.OwnerReference{}, ControlPlaneReady: map[string]bool{"1-22-6": true, "1-23-6": true}}
	for n := range 100 {
		ns := fmt.Sprintf("ns-%03d", n)
		snap.Namespaces[ns] = map[string]string{revisions.LabelInjection: "enabled"}
		for d := range 10 {
			rs := fmt.Sprintf("app-%d-5f7c9", d)
			snap.ReplicaSetOwners[ns+"/"+rs] = controllerRef("apps/v1", "Deployment", fmt.Sprintf("app-%d", d))
			for p := range 10 {
				rev := "1-23-6"
				if p%2 == 0 {
					rev = "1-22-6"
				}
				snap.Pods = append(snap.Pods, podMeta(ns, fmt.Sprintf("%s-%d", rs, p), rev, controllerRef("apps/v1", "ReplicaSet", rs), map[string]string{"app": "x"}, nil))
			}
		}
	}
	mesh := &v1alpha1.Mesh{Spec: spec, Status: recorded(spec)}
	b.ReportAllocs()
	for b.Loop() {
		st, _ := ComputeStatus(mesh, StatusInput{OwnNamespace: "meshrev-system", Now: t1}, snap)
		if st.DataPlane.Outdated != 5000 || len(st.DataPlane.OutdatedWorkloads) != 1000 {
			b.Fatalf("unexpected report: %d outdated in %d workloads", st.DataPlane.Outdated, len(st.DataPlane.OutdatedWorkloads))
		}
	}
}
