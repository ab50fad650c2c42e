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
			labels: map[string]string{revisions.LabelInjection: revisions.InjectionEnabled, LabelPodSecurityEnforce: "baseline"},
			want: []string{`enforces Pod Security "baseline:latest"`, `non-default capabilities (container "istio-init" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)`,
				"revision 1-22-6", "trafficInterception: CNI"},
		},
		"restricted refuses it too, also for running as root, at the version the namespace pins": {
			labels: map[string]string{revisions.LabelRev: "canary", LabelPodSecurityEnforce: "restricted", "pod-security.kubernetes.io/enforce-version": "v1.30"},
			want:   []string{`enforces Pod Security "restricted:v1.30"`, `runAsNonRoot != true (container "istio-init"`, "revision 1-23-6"},
		},
		"an invalid level counts as restricted, as for the API server": {
			labels: map[string]string{revisions.LabelInjection: revisions.InjectionEnabled, LabelPodSecurityEnforce: "strict"},
			want:   []string{`enforces Pod Security "restricted:latest"`},
		},
		"privileged says nothing": {
			labels: map[string]string{revisions.LabelInjection: revisions.InjectionEnabled, LabelPodSecurityEnforce: "privileged"},
		},
		"a namespace not asking for injection says nothing": {
			labels: map[string]string{LabelPodSecurityEnforce: "restricted"},
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

// proxyContainer is a sidecar container that meets the restricted level.
func proxyContainer() corev1.Container {
	return corev1.Container{Name: "istio-proxy", Image: "proxy", SecurityContext: &corev1.SecurityContext{
		AllowPrivilegeEscalation: new(false), RunAsNonRoot: new(true), RunAsUser: new(int64(1337)),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}}
}

func TestPodSecurityProblemsRunsTheWholeStandard(t *testing.T) {
	restricted := map[string]string{LabelPodSecurityEnforce: "restricted"}
	baseline := map[string]string{LabelPodSecurityEnforce: "baseline"}
	tests := map[string]struct {
		labels   map[string]string
		fragment func(f *Fragment)
		enforced string
		want     []string
	}{
		"a proxy container that meets restricted passes it": {
			labels: restricted, fragment: func(*Fragment) {}, enforced: "restricted:latest",
		},
		"a privileged proxy fails baseline": {
			labels:   baseline,
			fragment: func(f *Fragment) { f.Containers[0].SecurityContext.Privileged = new(true) },
			enforced: "baseline:latest",
			want:     []string{`privileged (container "istio-proxy" must not set securityContext.privileged=true)`},
		},
		"a hostPath volume of the template fails baseline": {
			labels: baseline,
			fragment: func(f *Fragment) {
				f.Volumes = []corev1.Volume{{Name: "sock", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run"}}}}
			},
			enforced: "baseline:latest",
			want:     []string{`hostPath volumes (volume "sock")`},
		},
		"a host port of the proxy fails baseline": {
			labels: baseline,
			fragment: func(f *Fragment) {
				f.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 15090, HostPort: 15090}}
			},
			enforced: "baseline:latest",
			want:     []string{"hostPort (container \"istio-proxy\" uses hostPort 15090)"},
		},
		"an unconfined seccomp profile fails baseline": {
			labels: baseline,
			fragment: func(f *Fragment) {
				f.Containers[0].SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
			},
			enforced: "baseline:latest",
			want:     []string{`seccompProfile (container "istio-proxy" must not set securityContext.seccompProfile.type to "Unconfined")`},
		},
		"an init container that keeps its capabilities fails restricted only": {
			labels: restricted,
			fragment: func(f *Fragment) {
				f.InitContainers = []corev1.Container{{Name: "istio-validation", Image: "proxy", SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: new(false)}}}
			},
			enforced: "restricted:latest",
			want:     []string{`unrestricted capabilities (container "istio-validation" must set securityContext.capabilities.drop=["ALL"])`},
		},
		"the same passes baseline": {
			labels: baseline,
			fragment: func(f *Fragment) {
				f.InitContainers = []corev1.Container{{Name: "istio-validation", Image: "proxy", SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: new(false)}}}
			},
			enforced: "baseline:latest",
		},
		"no label: privileged, nothing checked": {
			labels:   nil,
			fragment: func(f *Fragment) { f.Containers[0].SecurityContext.Privileged = new(true) },
			enforced: "privileged:latest",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := Fragment{Containers: []corev1.Container{proxyContainer()}}
			tc.fragment(&f)
			got, err := PodSecurityProblems(tc.labels, f)
			require.NoError(t, err)
			assert.Equal(t, tc.enforced, got.Enforced)
			assert.Equal(t, tc.want, got.Problems)
		})
	}
}

func TestPodSecurityOfTheCNITemplate(t *testing.T) {
	inj := newTestInjector(t, &fixedState{})
	level := func(l string) map[string]string { return map[string]string{LabelPodSecurityEnforce: l} }
	sidecar, _, err := inj.RenderRevision(context.Background(), v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6", TrafficInterception: v1alpha1.TrafficInterceptionCNI})
	require.NoError(t, err)
	got, err := PodSecurityProblems(level("baseline"), sidecar)
	require.NoError(t, err)
	assert.Empty(t, got.Problems, "with istio-cni the sidecar passes baseline")
	got, err = PodSecurityProblems(level("restricted"), sidecar)
	require.NoError(t, err)
	assert.Empty(t, got.Problems, "and restricted")
	classic, _, err := inj.RenderRevision(context.Background(), v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6"})
	require.NoError(t, err)
	got, err = PodSecurityProblems(level("baseline"), classic)
	require.NoError(t, err)
	assert.NotEmpty(t, got.Problems, "istio-init's NET_ADMIN and NET_RAW fail baseline")
	assert.Contains(t, strings.Join(got.Problems, "; "), `"istio-init" must not include "NET_ADMIN", "NET_RAW"`)
}
