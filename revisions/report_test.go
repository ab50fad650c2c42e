package revisions

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// reportSpec is a Mesh spec publishing the revisions named.
func reportSpec(stable, canary string, names ...string) v1alpha1.MeshSpec {
	s := v1alpha1.MeshSpec{Stable: stable, Canary: canary}
	for _, n := range names {
		v, err := VersionFromRevisionName(n)
		if err != nil {
			panic(err)
		}
		s.Revisions = append(s.Revisions, v1alpha1.Revision{Name: n, Version: v.String()})
	}
	return s
}

// pod is an injected pod of the facts.
func pod(ns, name, revision string, owner Owner, labels, annotations map[string]string) Pod {
	p := Pod{Namespace: ns, Name: name, Labels: map[string]string{}, Annotations: map[string]string{}, Owner: owner}
	for k, v := range labels {
		p.Labels[k] = v
	}
	if revision != "" {
		p.Labels[LabelRevision] = revision
		p.Annotations[AnnotationStatus] = statusOf(revision)
		p.Containers = []string{"app", ProxyContainer, "istio-init"}
	}
	for k, v := range annotations {
		p.Annotations[k] = v
	}
	return p
}

func TestDataPlaneReport(t *testing.T) {
	promoted := reportSpec("1-23-6", "", "1-22-6", "1-23-6")
	canary := reportSpec("1-22-6", "1-23-6", "1-22-6", "1-23-6")
	tests := map[string]struct {
		spec       v1alpha1.MeshSpec
		namespaces map[string]map[string]string
		pods       []Pod
		want       v1alpha1.DataPlaneStatus
		perRev     map[string]int32
	}{
		"after a promotion pods of the old stable are outdated and grouped by Deployment across ReplicaSets": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": {LabelInjection: "enabled"}},
			pods: []Pod{
				pod("shop", "reviews-v1-aaa-1", "1-22-6", Owner{Kind: "Deployment", Name: "reviews-v1"}, nil, nil),
				pod("shop", "reviews-v1-bbb-1", "1-22-6", Owner{Kind: "Deployment", Name: "reviews-v1"}, nil, nil),
				pod("shop", "ratings-ccc-1", "1-23-6", Owner{Kind: "Deployment", Name: "ratings"}, nil, nil),
				pod("shop", "mysql-0", "1-22-6", Owner{Kind: "StatefulSet", Name: "mysql"}, nil, nil),
			},
			want: v1alpha1.DataPlaneStatus{Pods: 4, UpToDate: 1, Outdated: 3, OutdatedWorkloads: []v1alpha1.WorkloadStatus{
				{Kind: "Deployment", Namespace: "shop", Name: "reviews-v1", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 2},
				{Kind: "StatefulSet", Namespace: "shop", Name: "mysql", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1},
			}},
			perRev: map[string]int32{"1-22-6": 3, "1-23-6": 1},
		},
		"gateways are marked by label or by template annotation": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"gw": {LabelRev: "stable"}},
			pods: []Pod{
				pod("gw", "ingressgateway-ddd-1", "1-22-6", Owner{Kind: "Deployment", Name: "ingressgateway"}, map[string]string{LabelIstio: "ingressgateway"}, nil),
				pod("gw", "custom-gw", "1-22-6", Owner{Kind: "Pod", Name: "custom-gw"}, nil, map[string]string{AnnotationTemplates: "gateway"}),
				pod("gw", "plain", "1-22-6", Owner{Kind: "Pod", Name: "plain"}, nil, nil),
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
				"shop": {LabelRev: "canary"},
				"web":  {LabelInjection: "enabled"},
			},
			pods: []Pod{
				pod("shop", "reviews-v2-1", "1-23-6", Owner{Kind: "Pod", Name: "reviews-v2-1"}, nil, nil),
				pod("web", "productpage-1", "1-22-6", Owner{Kind: "Pod", Name: "productpage-1"}, nil, nil),
				pod("shop", "details-1", "1-22-6", Owner{Kind: "Pod", Name: "details-1"}, nil, nil),
			},
			want: v1alpha1.DataPlaneStatus{Pods: 3, UpToDate: 2, Outdated: 1, OutdatedWorkloads: []v1alpha1.WorkloadStatus{
				{Kind: "Pod", Namespace: "shop", Name: "details-1", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1},
			}},
			perRev: map[string]int32{"1-22-6": 2, "1-23-6": 1},
		},
		"a pod that pins a revision with its own label is up to date on it": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": {LabelInjection: "enabled"}},
			pods: []Pod{
				pod("shop", "pinned", "1-22-6", Owner{Kind: "Pod", Name: "pinned"}, map[string]string{LabelRev: "1-22-6"}, nil),
			},
			want:   v1alpha1.DataPlaneStatus{Pods: 1, UpToDate: 1},
			perRev: map[string]int32{"1-22-6": 1},
		},
		"a sidecar pod in a namespace that no longer asks for injection is outdated with no wanted revision": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": {}},
			pods:       []Pod{pod("shop", "left", "1-23-6", Owner{Kind: "Pod", Name: "left"}, nil, nil)},
			want: v1alpha1.DataPlaneStatus{Pods: 1, Outdated: 1, OutdatedWorkloads: []v1alpha1.WorkloadStatus{
				{Kind: "Pod", Namespace: "shop", Name: "left", Revisions: []string{"1-23-6"}, Want: "", Pods: 1},
			}},
			perRev: map[string]int32{"1-23-6": 1},
		},
		"pods of a namespace being deleted are left out of the report": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": nil},
			pods: []Pod{
				pod("terminating", "a", "1-22-6", Owner{Kind: "Pod", Name: "a"}, nil, nil),
				pod("shop", "b", "1-23-6", Owner{Kind: "Pod", Name: "b"}, map[string]string{LabelSidecarInject: "true"}, nil),
			},
			want:   v1alpha1.DataPlaneStatus{Pods: 1, UpToDate: 1},
			perRev: map[string]int32{"1-23-6": 1},
		},
		"a namespace still labelled canary after a promotion resolves to stable, so its new pods are up to date": {
			spec:       promoted,
			namespaces: map[string]map[string]string{"shop": {LabelRev: "canary"}},
			pods:       []Pod{pod("shop", "reviews-v2-1", "1-23-6", Owner{Kind: "Pod", Name: "reviews-v2-1"}, nil, nil)},
			want:       v1alpha1.DataPlaneStatus{Pods: 1, UpToDate: 1},
			perRev:     map[string]int32{"1-23-6": 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dp, perRev := DataPlaneReport(&tc.spec, "meshrev-system", &Facts{Namespaces: tc.namespaces, Pods: tc.pods})
			assert.Equal(t, tc.want, dp)
			assert.Equal(t, tc.perRev, perRev)
		})
	}
}

// statusOf is the status annotation injection writes for rev.
func statusOf(rev string) string {
	return `{"revision":"` + rev + `","containers":["istio-proxy"],"initContainers":["istio-init"]}`
}

func TestDataPlaneReportCountsWhatAPodReallyRuns(t *testing.T) {
	spec := reportSpec("1-22-6", "", "1-22-6")
	facts := &Facts{
		Namespaces: map[string]map[string]string{"shop": {LabelInjection: InjectionEnabled}, "plain": {}},
		Pods: []Pod{
			pod("shop", "web-1", "1-22-6", Owner{Kind: "Pod", Name: "web-1"}, nil, nil),
			// Labels set by the pods themselves, no sidecar: even naming an
			// unpublished revision, they run nothing.
			{Namespace: "plain", Name: "liar", Labels: map[string]string{LabelRevision: "1-22-6"}},
			{Namespace: "plain", Name: "ghost", Labels: map[string]string{LabelRevision: "9-9-9"}},
		},
	}
	dp, perRev := DataPlaneReport(&spec, "meshrev-system", facts)
	assert.Equal(t, int32(1), dp.Pods)
	assert.Equal(t, map[string]int32{"1-22-6": 1}, perRev)
	assert.Equal(t, []string{"shop/web-1"}, facts.PodsOf("1-22-6"))
}

func TestRunningRevision(t *testing.T) {
	injected := map[string]string{LabelRevision: "1-22-6"}
	classic := []string{"app", ProxyContainer, "istio-init"}
	tests := map[string]struct {
		labels, annotations map[string]string
		containers          []string
		want                string
	}{
		"an injected pod runs the revision its label and status name, with the proxy container": {
			labels: injected, annotations: map[string]string{AnnotationStatus: statusOf("1-22-6")}, containers: classic, want: "1-22-6",
		},
		"a native sidecar (the proxy an init container) runs its revision": {
			labels:      injected,
			annotations: map[string]string{AnnotationStatus: `{"revision":"1-22-6","containers":[],"initContainers":["istio-init","istio-proxy"]}`},
			containers:  classic, want: "1-22-6",
		},
		"a gateway whose proxy container injection filled runs its revision": {
			labels:      injected,
			annotations: map[string]string{AnnotationStatus: `{"revision":"1-22-6","template":"gateway","containers":["istio-proxy"],"initContainers":[]}`},
			containers:  []string{ProxyContainer}, want: "1-22-6",
		},
		"a pod with the label and a copied status but no proxy container runs nothing": {
			labels: injected, annotations: map[string]string{AnnotationStatus: statusOf("1-22-6")}, containers: []string{"app"},
		},
		"a pod whose init container injection added is missing runs nothing": {
			labels: injected, annotations: map[string]string{AnnotationStatus: statusOf("1-22-6")}, containers: []string{"app", ProxyContainer},
		},
		"a pod that set the label itself, without a sidecar, runs nothing": {
			labels: injected, containers: classic,
		},
		"a label naming another revision than the status runs nothing": {
			labels: map[string]string{LabelRevision: "9-9-9"}, annotations: map[string]string{AnnotationStatus: statusOf("1-22-6")}, containers: classic,
		},
		"a native sidecar (istio-proxy among the init containers) runs the revision": {
			labels: map[string]string{LabelRevision: "1-22-6"}, annotations: map[string]string{AnnotationStatus: `{"revision":"1-22-6","containers":[],"initContainers":["istio-init","istio-proxy"]}`},
			containers: []string{"istio-init", "istio-proxy", "app"}, want: "1-22-6",
		},
		"a status that lists only istio-init runs nothing": {
			labels: map[string]string{LabelRevision: "1-22-6"}, annotations: map[string]string{AnnotationStatus: `{"revision":"1-22-6","containers":[],"initContainers":["istio-init"]}`},
			containers: []string{"istio-init", "app"},
		},
		"a status that lists no container runs nothing": {
			labels: injected, annotations: map[string]string{AnnotationStatus: `{"revision":"1-22-6","containers":[]}`}, containers: classic,
		},
		"a status that is not JSON runs nothing": {
			labels: injected, annotations: map[string]string{AnnotationStatus: `{`}, containers: classic,
		},
		"an uninjected pod runs nothing": {containers: []string{"app"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, RunningRevision(tc.labels, tc.annotations, tc.containers))
		})
	}
}
