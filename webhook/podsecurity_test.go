package webhook

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func TestNamespaceWarnsWhenPodSecurityRefusesTheInjectedPod(t *testing.T) {
	scheme := runtime.NewScheme()
	require.NoError(t, corev1.AddToScheme(scheme))
	require.NoError(t, v1alpha1.AddToScheme(scheme))
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(meshOf(stableCanary())).Build()
	inj := newTestInjector(t, &fixedState{mesh: meshOf(stableCanary())})
	v := &namespaceValidator{opts: NamespaceValidatorOptions{OwnNamespace: "meshrev-system", Reader: reader, Renderer: inj}}

	tests := map[string]struct {
		labels map[string]string
		want   []string
	}{
		"baseline refuses the init container's NET_ADMIN and NET_RAW": {
			labels: map[string]string{revisions.LabelInjection: revisions.InjectionEnabled, LabelPodSecurityEnforce: PodSecurityBaseline},
			want:   []string{`enforces Pod Security "baseline"`, "init container istio-init adds capability NET_ADMIN", "adds capability NET_RAW", "revision 1-22-6", "trafficInterception: CNI"},
		},
		"restricted refuses it too, also for running as root": {
			labels: map[string]string{revisions.LabelRev: "canary", LabelPodSecurityEnforce: PodSecurityRestricted},
			want:   []string{`enforces Pod Security "restricted"`, "istio-init runs as root", "revision 1-23-6"},
		},
		"privileged says nothing": {
			labels: map[string]string{revisions.LabelInjection: revisions.InjectionEnabled, LabelPodSecurityEnforce: "privileged"},
		},
		"a namespace not asking for injection says nothing": {
			labels: map[string]string{LabelPodSecurityEnforce: PodSecurityRestricted},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			warnings := v.warn(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: tc.labels}})
			var ps []string
			for _, w := range warnings {
				if strings.Contains(w, "Pod Security") {
					ps = append(ps, w)
				}
			}
			if len(tc.want) == 0 {
				assert.Empty(t, ps)
				return
			}
			require.Len(t, ps, 1, "warnings: %q", warnings)
			for _, want := range tc.want {
				assert.Contains(t, ps[0], want)
			}
		})
	}
}

func TestPodSecurityProblemsOfTheProxyContainer(t *testing.T) {
	f := Fragment{Containers: []corev1.Container{{Name: "istio-proxy", SecurityContext: &corev1.SecurityContext{
		AllowPrivilegeEscalation: new(false), RunAsNonRoot: new(true), RunAsUser: new(int64(1337)),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}}}}
	assert.Empty(t, PodSecurityProblems(PodSecurityRestricted, f), "the proxy container alone passes restricted")
	f.Containers[0].SecurityContext.Privileged = new(true)
	assert.Equal(t, []string{"container istio-proxy is privileged"}, PodSecurityProblems(PodSecurityBaseline, f))
}

func TestPodSecurityOfTheCNITemplate(t *testing.T) {
	inj := newTestInjector(t, &fixedState{})
	sidecar, _, err := inj.RenderRevision(context.Background(), v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6", TrafficInterception: v1alpha1.TrafficInterceptionCNI})
	require.NoError(t, err)
	assert.Empty(t, PodSecurityProblems(PodSecurityBaseline, sidecar), "with istio-cni the sidecar passes baseline")
	assert.Empty(t, PodSecurityProblems(PodSecurityRestricted, sidecar), "and restricted")
	classic, _, err := inj.RenderRevision(context.Background(), v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6"})
	require.NoError(t, err)
	assert.Contains(t, PodSecurityProblems(PodSecurityBaseline, classic), "init container istio-init adds capability NET_ADMIN")
}
