package webhook

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// nodesState is a fixedState that also answers NativeSidecarSupport, as
// CacheState does from the Node informer, and records the node it was asked
// about.
type nodesState struct {
	fixedState
	allNative bool
	perNode   map[string]bool
	askedFor  []string
}

func (s *nodesState) NativeSidecars(_ context.Context, nodeName string) bool {
	s.askedFor = append(s.askedFor, nodeName)
	if v, ok := s.perNode[nodeName]; ok {
		return v
	}
	return s.allNative
}

func TestSidecarModeDecidesWhereIstioProxyGoes(t *testing.T) {
	const bound = `{"metadata":{"name":"static"},"spec":{"nodeName":"old-node","containers":[{"name":"web","image":"nginx"}]}}`
	annotated := func(v string) string {
		return `{"metadata":{"generateName":"web-","annotations":{"sidecar.istio.io/nativeSidecar":"` + v + `"}},"spec":{"containers":[{"name":"web","image":"nginx"}]}}`
	}
	cases := map[string]struct {
		mode      v1alpha1.SidecarMode
		noNodes   bool // the State cannot tell (no NativeSidecarSupport)
		allNative bool
		pod       string
		native    bool
		askedFor  []string
	}{
		"Auto on a cluster whose kubelets are all ≥ 1.33 injects a native sidecar": {
			mode: v1alpha1.SidecarModeAuto, allNative: true, pod: plainPod, native: true, askedFor: []string{""},
		},
		"Auto with one node on an older kubelet injects a classic sidecar": {
			mode: v1alpha1.SidecarModeAuto, allNative: false, pod: plainPod, native: false, askedFor: []string{""},
		},
		"an empty mode is Auto": {
			allNative: true, pod: plainPod, native: true, askedFor: []string{""},
		},
		"Auto without node information injects a classic sidecar": {
			mode: v1alpha1.SidecarModeAuto, noNodes: true, pod: plainPod, native: false,
		},
		"a pod bound to a node asks about that node": {
			mode: v1alpha1.SidecarModeAuto, allNative: true, pod: bound, native: false, askedFor: []string{"old-node"},
		},
		"Native injects a native sidecar whatever the nodes run, without asking": {
			mode: v1alpha1.SidecarModeNative, allNative: false, pod: plainPod, native: true,
		},
		"Classic injects a classic sidecar whatever the nodes run, without asking": {
			mode: v1alpha1.SidecarModeClassic, allNative: true, pod: plainPod, native: false,
		},
		"the annotation false outranks Auto on new nodes": {
			mode: v1alpha1.SidecarModeAuto, allNative: true, pod: annotated("false"), native: false,
		},
		"the annotation true outranks Classic": {
			mode: v1alpha1.SidecarModeClassic, pod: annotated("true"), native: true,
		},
		"the annotation true outranks Auto on old nodes": {
			mode: v1alpha1.SidecarModeAuto, allNative: false, pod: annotated("true"), native: true,
		},
		"any annotation value but false means native, as Istio's template reads it": {
			mode: v1alpha1.SidecarModeClassic, pod: annotated("yes"), native: true,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			spec := &v1alpha1.MeshSpec{Revisions: []v1alpha1.Revision{{Name: "1-23-6", Version: "1.23.6", SidecarMode: c.mode}}, Stable: "1-23-6"}
			fixed := fixedState{mesh: meshOf(spec), namespaces: map[string]map[string]string{"shop": {"istio-injection": "enabled"}}}
			var state State = &fixed
			nodes := &nodesState{fixedState: fixed, allNative: c.allNative, perNode: map[string]bool{"old-node": false}}
			if !c.noNodes {
				state = nodes
			}
			code, body, review := serve(t, newTestInjector(t, state), reviewFor(t, "shop", []byte(c.pod)))
			require.Equal(t, 200, code, "%s", body)
			require.True(t, review.Response.Allowed, "%s", body)
			var pod corev1.Pod
			require.NoError(t, json.Unmarshal(applyPatch(t, []byte(c.pod), review.Response.Patch), &pod))

			var proxy *corev1.Container
			inInit := false
			for i, ic := range pod.Spec.InitContainers {
				if ic.Name == "istio-proxy" {
					proxy, inInit = &pod.Spec.InitContainers[i], true
				}
			}
			for i, ct := range pod.Spec.Containers {
				if ct.Name == "istio-proxy" {
					require.Nil(t, proxy, "istio-proxy injected twice")
					proxy = &pod.Spec.Containers[i]
				}
			}
			require.NotNil(t, proxy, "istio-proxy injected")
			assert.Equal(t, c.native, inInit, "istio-proxy among the init containers")
			if c.native {
				require.NotNil(t, proxy.RestartPolicy)
				assert.Equal(t, corev1.ContainerRestartPolicyAlways, *proxy.RestartPolicy)
			} else {
				assert.Nil(t, proxy.RestartPolicy)
			}
			assert.Equal(t, c.askedFor, nodes.askedFor, "the nodes asked about")
		})
	}
}

func TestNodeKubeletsFollowNodeEvents(t *testing.T) {
	node := func(name, version string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: version}}}
	}
	type event struct {
		node    *corev1.Node
		deleted bool
		// tombstone delivers the deletion as the informer does after a
		// missed watch event.
		tombstone bool
	}
	cases := map[string]struct {
		events []event
		want   bool
	}{
		"a cluster without nodes says yes, as Istio does": {want: true},
		"1.36 nodes say yes": {
			events: []event{{node: node("a", "v1.36.3")}, {node: node("b", "v1.36.3")}},
			want:   true,
		},
		"one 1.32 node says no": {
			events: []event{{node: node("a", "v1.36.3")}, {node: node("old", "v1.32.4")}},
			want:   false,
		},
		"removing the old node says yes again": {
			events: []event{{node: node("a", "v1.36.3")}, {node: node("old", "v1.32.4")}, {node: node("old", "v1.32.4"), deleted: true}},
			want:   true,
		},
		"a removal seen as a tombstone counts too": {
			events: []event{{node: node("old", "v1.32.4")}, {node: node("old", "v1.32.4"), deleted: true, tombstone: true}},
			want:   true,
		},
		"upgrading the old node's kubelet says yes": {
			events: []event{{node: node("a", "v1.36.3")}, {node: node("old", "v1.32.4")}, {node: node("old", "v1.33.0")}},
			want:   true,
		},
		"downgrading a node's kubelet says no": {
			events: []event{{node: node("a", "v1.36.3")}, {node: node("a", "v1.30.0")}},
			want:   false,
		},
		"a node that does not report a version yet says no": {
			events: []event{{node: node("a", "v1.36.3")}, {node: node("new", "")}},
			want:   false,
		},
		"removing one of two old nodes still says no": {
			events: []event{{node: node("x", "v1.31.0")}, {node: node("y", "v1.31.0")}, {node: node("x", "v1.31.0"), deleted: true}},
			want:   false,
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			k := &nodeKubelets{old: map[string]string{}, synced: func() bool { return true }}
			k.all.Store(true)
			for _, e := range c.events {
				var obj any = e.node
				if e.tombstone {
					obj = toolscache.DeletedFinalStateUnknown{Key: e.node.Name, Obj: e.node}
				}
				k.set(obj, e.deleted)
			}
			assert.Equal(t, c.want, k.allNative(t.Context()))
		})
	}
}

func TestNodeKubeletsSayNoUntilSynced(t *testing.T) {
	k := &nodeKubelets{old: map[string]string{}, synced: func() bool { return false }}
	k.all.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.False(t, k.allNative(ctx), "an informer that has not listed the nodes yet cannot say every node is new")
}

func TestTrimNodeKeepsNameAndKubeletVersion(t *testing.T) {
	full := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "u", ResourceVersion: "7", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"}},
		Status: corev1.NodeStatus{
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.36.3", OSImage: "linux"},
			Images:   []corev1.ContainerImage{{Names: []string{"big"}, SizeBytes: 1 << 30}},
		},
	}
	got, err := TrimNode(full)
	require.NoError(t, err)
	assert.Equal(t, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "u", ResourceVersion: "7"},
		Status:     corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.36.3"}},
	}, got)
	tomb := toolscache.DeletedFinalStateUnknown{Key: "n"}
	got, err = TrimNode(tomb)
	require.NoError(t, err)
	assert.Equal(t, tomb, got, "anything but a Node passes unchanged")
}
