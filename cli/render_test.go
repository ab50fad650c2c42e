package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func revision(name, version string, withControlPlane bool) v1alpha1.Revision {
	r := v1alpha1.Revision{Name: name, Version: version, ProxyImage: "docker.io/istio/proxyv2:" + version}
	if withControlPlane {
		r.ControlPlane = &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:" + version, Replicas: ptr.To[int32](1)}
	}
	return r
}

// Fixed cluster states along the seed's path, as the controller reports them.
type fixture struct {
	mesh     *v1alpha1.Mesh
	nsLabels map[string]map[string]string
	pods     map[string]map[string]int32
}

func seedNamespaces(defaultLabels map[string]string) map[string]map[string]string {
	return map[string]map[string]string{
		"default":     defaultLabels,
		"shop":        {"istio-injection": "enabled"},
		"legacy":      {"istio.io/rev": "1-22-6"},
		"batch":       {"istio-injection": "disabled"},
		"plain":       {},
		"kube-system": {},
	}
}

func fixtures() map[string]fixture {
	stableOnly := &v1alpha1.Mesh{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Generation: 1},
		Spec: v1alpha1.MeshSpec{
			Revisions: []v1alpha1.Revision{revision("1-22-6", "1.22.6", true)},
			Stable:    "1-22-6",
		},
		Status: v1alpha1.MeshStatus{
			ObservedGeneration: 1,
			Phase:              v1alpha1.PhaseStable,
			Revisions:          []v1alpha1.RevisionStatus{{Name: "1-22-6", Version: "1.22.6", Tags: []string{"stable"}, ControlPlaneReady: true, Pods: 6}},
			DataPlane:          v1alpha1.DataPlaneStatus{Pods: 6, UpToDate: 6},
		},
	}

	canary := stableOnly.DeepCopy()
	canary.Generation = 2
	lb := revision("1-23-6", "1.23.6", true)
	lb.ControlPlane.ServiceType = corev1.ServiceTypeLoadBalancer
	canary.Spec.Revisions = append(canary.Spec.Revisions, lb)
	canary.Spec.Canary = "1-23-6"
	canary.Status.ObservedGeneration = 2
	canary.Status.Phase = v1alpha1.PhaseCanaryDeployed
	canary.Status.Revisions = append(canary.Status.Revisions, v1alpha1.RevisionStatus{Name: "1-23-6", Version: "1.23.6", Tags: []string{"canary"}, ControlPlaneReady: true, Pods: 1})

	promoted := canary.DeepCopy()
	promoted.Generation = 3
	promoted.Spec.Stable, promoted.Spec.Canary = "1-23-6", ""
	promoted.Status.ObservedGeneration = 3
	promoted.Status.Phase = v1alpha1.PhaseDataPlaneUpgrading
	promoted.Status.Previous = "1-22-6"
	promoted.Status.DataPlane = v1alpha1.DataPlaneStatus{Pods: 8, UpToDate: 2, Outdated: 6, OutdatedWorkloads: []v1alpha1.WorkloadStatus{
		{Kind: "Deployment", Namespace: "default", Name: "productpage-v1", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1},
		{Kind: "Deployment", Namespace: "default", Name: "reviews-v1", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 2},
		{Kind: "Deployment", Namespace: "istio-gateways", Name: "istio-ingressgateway", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1, Gateway: true},
		{Kind: "StatefulSet", Namespace: "shop", Name: "cart", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1},
		{Kind: "Pod", Namespace: "shop", Name: "debug", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1},
	}}

	done := promoted.DeepCopy()
	done.Status.Phase = v1alpha1.PhaseReadyToUnpublish
	done.Status.DataPlane = v1alpha1.DataPlaneStatus{Pods: 8, UpToDate: 8}

	// The canary was just deployed: the controller has not reported on it,
	// and the stable control plane went unready.
	pending := canary.DeepCopy()
	pending.Status.ObservedGeneration = 1
	pending.Status.Revisions = []v1alpha1.RevisionStatus{{Name: "1-22-6", Version: "1.22.6", Tags: []string{"stable"}, ControlPlaneReady: false, Pods: 6}}

	return map[string]fixture{
		"stable": {
			mesh:     stableOnly,
			nsLabels: seedNamespaces(map[string]string{"istio-injection": "enabled"}),
			pods:     map[string]map[string]int32{"default": {"1-22-6": 4}, "shop": {"1-22-6": 2}},
		},
		"canary-deployed": {
			mesh:     canary,
			nsLabels: seedNamespaces(map[string]string{"istio.io/rev": "canary"}),
			pods:     map[string]map[string]int32{"default": {"1-22-6": 3, "1-23-6": 1}, "shop": {"1-22-6": 2}},
		},
		"dataplane-upgrading": {
			mesh:     promoted,
			nsLabels: seedNamespaces(map[string]string{"istio.io/rev": "stable"}),
			pods:     map[string]map[string]int32{"default": {"1-22-6": 3, "1-23-6": 1}, "shop": {"1-22-6": 2}, "istio-gateways": {"1-22-6": 1}},
		},
		"ready-to-unpublish": {
			mesh:     done,
			nsLabels: seedNamespaces(map[string]string{"istio.io/rev": "stable"}),
			pods:     map[string]map[string]int32{"default": {"1-23-6": 4}, "shop": {"1-23-6": 3}, "istio-gateways": {"1-23-6": 1}},
		},
		"canary-not-reported-yet": {
			mesh:     pending,
			nsLabels: seedNamespaces(map[string]string{"istio-injection": "enabled"}),
			pods:     map[string]map[string]int32{"default": {"1-22-6": 4}},
		},
	}
}

func TestStatusRendersEachPhase(t *testing.T) {
	for name, fx := range fixtures() {
		t.Run(name, func(t *testing.T) {
			v := buildStatusView(fx.mesh, fx.nsLabels, fx.pods, defaultOwnNamespace)

			var table bytes.Buffer
			require.NoError(t, renderStatus(&table, v, false))
			assertGolden(t, "status-"+name+".golden", table.Bytes())

			var js bytes.Buffer
			require.NoError(t, printStructured(&js, outputJSON, v))
			assertGolden(t, "status-"+name+".json.golden", js.Bytes())
		})
	}
}

func TestStatusColoursOnlyOnATerminal(t *testing.T) {
	fx := fixtures()["canary-deployed"]
	v := buildStatusView(fx.mesh, fx.nsLabels, fx.pods, defaultOwnNamespace)

	var coloured, plain bytes.Buffer
	require.NoError(t, renderStatus(&coloured, v, true))
	require.NoError(t, renderStatus(&plain, v, false))
	assertGolden(t, "status-canary-deployed.color.golden", coloured.Bytes())
	require.Contains(t, coloured.String(), "\x1b[")
	require.NotContains(t, plain.String(), "\x1b[")
	// Colour codes must not shift the columns: stripped, both are the same.
	require.Equal(t, plain.String(), stripANSI(coloured.String()))
}

func stripANSI(s string) string {
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			for i < len(s) && s[i] != 'm' {
				i++
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestDataPlaneStatusRenders(t *testing.T) {
	cases := map[string]struct {
		fixture   string
		namespace string
	}{
		"the whole mesh while upgrading":         {fixture: "dataplane-upgrading"},
		"one namespace while upgrading":          {fixture: "dataplane-upgrading", namespace: "default"},
		"a namespace without outdated workloads": {fixture: "dataplane-upgrading", namespace: "legacy"},
		"the mesh after the upgrade":             {fixture: "ready-to-unpublish"},
		"a report the controller has not redone": {fixture: "canary-not-reported-yet"},
	}
	fx := fixtures()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			m := fx[tc.fixture].mesh
			v := buildDataPlaneView(m, m.Status.DataPlane.OutdatedWorkloads, tc.namespace)
			file := "dataplane-" + tc.fixture
			if tc.namespace != "" {
				file += "-ns-" + tc.namespace
			}

			var table bytes.Buffer
			require.NoError(t, renderDataPlane(&table, v))
			assertGolden(t, file+".golden", table.Bytes())

			var js bytes.Buffer
			require.NoError(t, printStructured(&js, outputJSON, v))
			assertGolden(t, file+".json.golden", js.Bytes())
		})
	}
}

func TestCheckInjectRenders(t *testing.T) {
	cases := map[string]struct {
		fixture   string
		namespace string
		nsLabels  map[string]string
		podLabels map[string]string
	}{
		"a namespace switched to the canary":           {fixture: "canary-deployed", namespace: "default", nsLabels: map[string]string{"istio.io/rev": "canary"}},
		"a pod pinned to a revision":                   {fixture: "canary-deployed", namespace: "shop", nsLabels: map[string]string{"istio-injection": "enabled"}, podLabels: map[string]string{"app": "cart", "istio.io/rev": "1-23-6"}},
		"both namespace labels, istio-injection wins":  {fixture: "canary-deployed", namespace: "mixed", nsLabels: map[string]string{"istio-injection": "enabled", "istio.io/rev": "canary"}},
		"a canary label after promotion":               {fixture: "dataplane-upgrading", namespace: "late", nsLabels: map[string]string{"istio.io/rev": "canary"}},
		"a revision that is not published":             {fixture: "stable", namespace: "old", nsLabels: map[string]string{"istio.io/rev": "1-21-0"}},
		"a pod that opts out":                          {fixture: "stable", namespace: "default", nsLabels: map[string]string{"istio-injection": "enabled"}, podLabels: map[string]string{"sidecar.istio.io/inject": "false"}},
		"meshrev's own namespace is never injected":    {fixture: "stable", namespace: defaultOwnNamespace, nsLabels: map[string]string{"istio-injection": "enabled"}},
		"a namespace without labels gets no sidecar":   {fixture: "stable", namespace: "plain"},
		"a pod asking for a sidecar with no namespace": {fixture: "stable", namespace: "plain", podLabels: map[string]string{"sidecar.istio.io/inject": "true"}},
		"a namespace enforcing Pod Security baseline":  {fixture: "stable", namespace: "strict", nsLabels: map[string]string{"istio-injection": "enabled", "pod-security.kubernetes.io/enforce": "baseline"}},
	}
	fx := fixtures()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			v := checkInjectView(fx[tc.fixture].mesh, tc.namespace, tc.nsLabels, tc.podLabels, defaultOwnNamespace)
			var out bytes.Buffer
			require.NoError(t, renderCheckInject(&out, v))
			assertGolden(t, "check-inject-"+goldenName(name)+".golden", out.Bytes())
		})
	}
}

func TestVerifyRenders(t *testing.T) {
	mesh := fixtures()["canary-deployed"].mesh
	ready := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	pod := func(name string, labels map[string]string, conds []corev1.PodCondition) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels}, Status: corev1.PodStatus{Conditions: conds}}
	}
	nsLabels := map[string]string{"istio.io/rev": "canary"}
	passed := &VerifyView{Namespace: "default", Pods: []PodCheck{
		checkPod(&mesh.Spec, defaultOwnNamespace, nsLabels, pod("reviews-v2-7d9-a", map[string]string{"meshrev.io/revision": "1-23-6"}, ready), "deployment/reviews-v2"),
		checkPod(&mesh.Spec, defaultOwnNamespace, nsLabels, pod("reviews-v2-7d9-b", map[string]string{"meshrev.io/revision": "1-23-6"}, ready), "deployment/reviews-v2"),
	}}
	passed.OK = countProblems(passed) == 0
	failed := &VerifyView{Namespace: "default", Pods: []PodCheck{
		checkPod(&mesh.Spec, defaultOwnNamespace, nsLabels, pod("reviews-v1-5c4-a", map[string]string{"meshrev.io/revision": "1-22-6"}, ready), ""),
		checkPod(&mesh.Spec, defaultOwnNamespace, nsLabels, pod("reviews-v2-7d9-a", map[string]string{"meshrev.io/revision": "1-23-6"}, nil), ""),
		checkPod(&mesh.Spec, defaultOwnNamespace, nsLabels, pod("legacy-0", nil, ready), ""),
	}, Problems: []string{"deployment/ratings has no running pods to verify"}}
	failed.OK = countProblems(failed) == 0
	require.True(t, passed.OK)
	require.False(t, failed.OK)

	for name, v := range map[string]*VerifyView{"passed": passed, "failed": failed} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, renderVerify(&out, v))
			assertGolden(t, "verify-"+name+".golden", out.Bytes())
		})
	}
}

// goldenName turns a case name into a file name.
func goldenName(s string) string {
	return strings.NewReplacer(" ", "-", ",", "", "'", "").Replace(s)
}

func TestStatusWithoutCountingPodsTakesTheMeshCounts(t *testing.T) {
	fx := fixtures()["canary-deployed"]
	v := buildStatusView(fx.mesh, fx.nsLabels, nil, defaultOwnNamespace)
	require.False(t, v.PodsCounted)
	for _, r := range v.Revisions {
		for _, rs := range fx.mesh.Status.Revisions {
			if rs.Name == r.Name {
				require.Equal(t, rs.Pods, r.Pods, "revision %s counts what the Mesh status reports", r.Name)
			}
		}
	}
	var table bytes.Buffer
	require.NoError(t, renderStatus(&table, v, false))
	require.NotContains(t, table.String(), "PODS BY REVISION")
	assertGolden(t, "status-canary-deployed-mesh-counts.golden", table.Bytes())
}
