package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// cp is a control plane for a revision.
func cp(version string) *v1alpha1.ControlPlane {
	return &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:" + version}
}

func mesh(stable, canary string, force bool, revs ...v1alpha1.Revision) *v1alpha1.Mesh {
	m := &v1alpha1.Mesh{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Mesh"},
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName},
		Spec:       v1alpha1.MeshSpec{Revisions: revs, Stable: stable, Canary: canary},
	}
	if force {
		m.Annotations = map[string]string{revisions.AnnotationForce: "true"}
	}
	return m
}

var (
	r1226 = v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6", ControlPlane: cp("1.22.6")}
	r1236 = v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ControlPlane: cp("1.23.6")}
	r1240 = v1alpha1.Revision{Name: "1-24-0", Version: "1.24.0"}
)

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func injectedPod(ns, name, rev string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{revisions.LabelRevision: rev},
		Annotations: map[string]string{revisions.AnnotationStatus: `{"revision":"` + rev + `","containers":["istio-proxy"]}`}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: revisions.ProxyContainer}}}}
}

// istiod is a control-plane Deployment, available or not.
func istiod(rev string, available bool) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istiod-" + rev, Generation: 1},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](1)},
		Status:     appsv1.DeploymentStatus{ObservedGeneration: 1},
	}
	if available {
		d.Status.AvailableReplicas = 1
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}
	}
	return d
}

// review sends one AdmissionReview through the webhook as the API server would.
func review(t *testing.T, wh *admission.Webhook, op admissionv1.Operation, old, obj runtime.Object) admission.Response {
	t.Helper()
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "1", Operation: op}}
	if obj != nil {
		raw, err := json.Marshal(obj)
		require.NoError(t, err)
		req.Object = runtime.RawExtension{Raw: raw}
	}
	if old != nil {
		raw, err := json.Marshal(old)
		require.NoError(t, err)
		req.OldObject = runtime.RawExtension{Raw: raw}
	}
	return wh.Handle(context.Background(), req)
}

func TestMeshValidator(t *testing.T) {
	stableOnly := mesh("1-22-6", "", false, r1226)
	withCanary := mesh("1-22-6", "1-23-6", false, r1226, r1236)
	promoted := mesh("1-23-6", "", false, r1226, r1236)
	broken := v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", Templates: "broken-templates"}

	tests := map[string]struct {
		old, new  *v1alpha1.Mesh
		cluster   []client.Object
		allowed   bool
		contains  []string // in the refusal message
		field     string   // the refused field
		warnings  []string // substrings, one per expected warning
		op        admissionv1.Operation
		noWarning bool
	}{
		"installing a stable revision is allowed": {
			new: stableOnly, allowed: true, op: admissionv1.Create, noWarning: true,
		},
		"deploying a canary one minor above stable is allowed": {
			old: stableOnly, new: withCanary, allowed: true, noWarning: true,
		},
		"skipping a minor version is refused by the skip policy": {
			old: stableOnly, new: mesh("1-22-6", "1-24-0", false, r1226, r1240),
			contains: []string{"cannot deploy canary 1-24-0", "at most one minor version", "upgrade to 1.23.x first"},
			field:    "spec.revisions[1].version",
		},
		"promoting while the canary's control plane is not available is refused": {
			old: withCanary, new: promoted,
			cluster:  []client.Object{istiod("1-22-6", true), istiod("1-23-6", false)},
			contains: []string{"cannot promote canary 1-23-6", "not Ready", "meshrev.io/force=true"},
			field:    "spec.stable",
		},
		"promoting with meshrev.io/force while the control plane is not available is allowed with a warning": {
			old: withCanary, new: mesh("1-23-6", "", true, r1226, r1236),
			cluster:  []client.Object{istiod("1-22-6", true), istiod("1-23-6", false)},
			allowed:  true,
			warnings: []string{"not Ready (forced)"},
		},
		"promoting once the canary's control plane is available is allowed": {
			old: withCanary, new: promoted,
			cluster: []client.Object{istiod("1-22-6", true), istiod("1-23-6", true)},
			allowed: true, noWarning: true,
		},
		"revoking while a namespace is labelled canary is refused and names it": {
			old: withCanary, new: stableOnly,
			cluster:  []client.Object{namespace("bookinfo", map[string]string{revisions.LabelRev: "canary"}), namespace("web", map[string]string{revisions.LabelInjection: "enabled"})},
			contains: []string{"cannot revoke canary 1-23-6", "bookinfo (istio.io/rev=canary)", "meshrev namespace switch bookinfo --to stable"},
			field:    "spec.canary",
		},
		"revoking once no namespace uses the canary is allowed and warns about its pods": {
			old: withCanary, new: stableOnly,
			cluster:  []client.Object{namespace("bookinfo", map[string]string{revisions.LabelRev: "stable"}), injectedPod("bookinfo", "reviews-v2-1", "1-23-6")},
			allowed:  true,
			warnings: []string{"1 pod (bookinfo/reviews-v2-1) still run the sidecar of revoked revision 1-23-6"},
		},
		"unpublishing while pods run the old revision is refused with their count": {
			old: promoted, new: mesh("1-23-6", "", false, r1236),
			cluster:  []client.Object{injectedPod("bookinfo", "details-1", "1-22-6"), injectedPod("bookinfo", "ratings-1", "1-22-6"), injectedPod("bookinfo", "reviews-1", "1-23-6")},
			contains: []string{"cannot unpublish 1-22-6", "2 pods (bookinfo/details-1, bookinfo/ratings-1)", "meshrev.io/force=true"},
			field:    "spec.revisions",
		},
		"unpublishing with meshrev.io/force while pods run it is allowed with a warning": {
			old: promoted, new: mesh("1-23-6", "", true, r1236),
			cluster:  []client.Object{injectedPod("bookinfo", "details-1", "1-22-6")},
			allowed:  true,
			warnings: []string{"1 pod (bookinfo/details-1) still run the sidecar of 1-22-6 and lose their control plane (forced)"},
		},
		"setting stable back after a promotion is refused": {
			old: promoted, new: mesh("1-22-6", "", false, r1226, r1236),
			contains: []string{"cannot set stable from 1-23-6 to 1-22-6", "cannot be revoked"},
			field:    "spec.stable",
		},
		"publishing a revision whose templates ConfigMap is missing is refused": {
			old: stableOnly, new: mesh("1-22-6", "1-23-6", false, r1226, broken),
			contains: []string{"revision 1-23-6 cannot be injected", "broken-templates"},
			field:    "spec.revisions[1].templates",
		},
		"a metadata-only update is allowed without looking at the cluster": {
			old: withCanary, new: func() *v1alpha1.Mesh {
				m := withCanary.DeepCopy()
				m.Labels = map[string]string{"team": "mesh"}
				return m
			}(),
			allowed: true, noWarning: true,
		},
		"deleting the mesh is allowed (the configuration does not route DELETE here)": {
			old: withCanary, op: admissionv1.Delete, allowed: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			scheme := validatorScheme()
			reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.cluster...).Build()
			inj := newTestInjector(t, &fixedState{}, func(o *InjectorOptions) {
				o.Templates = NewConfigMapTemplateSource(ConfigMapTemplatesOptions{Reader: reader, Namespace: "meshrev-system"})
			})
			wh := NewMeshValidator(MeshValidatorOptions{Reader: reader, Revisions: inj, Scheme: scheme})
			op := tc.op
			if op == "" {
				op = admissionv1.Update
			}
			var oldObj, newObj runtime.Object
			if tc.old != nil {
				oldObj = tc.old
			}
			if tc.new != nil {
				newObj = tc.new
			}
			if op == admissionv1.Create {
				oldObj = nil
			}
			resp := review(t, wh, op, oldObj, newObj)
			require.Equal(t, tc.allowed, resp.Allowed, "response: %+v", resp.Result)
			if !tc.allowed {
				require.NotNil(t, resp.Result)
				assert.Equal(t, metav1.StatusReasonInvalid, resp.Result.Reason, "a refusal is an Invalid status with field causes")
				for _, s := range tc.contains {
					assert.Contains(t, resp.Result.Message, s)
				}
				require.NotNil(t, resp.Result.Details)
				var fields []string
				for _, c := range resp.Result.Details.Causes {
					fields = append(fields, c.Field)
				}
				assert.Contains(t, fields, tc.field)
			}
			if tc.noWarning {
				assert.Empty(t, resp.Warnings)
			}
			require.Len(t, resp.Warnings, len(tc.warnings), "warnings: %q", resp.Warnings)
			for i, w := range tc.warnings {
				assert.Contains(t, resp.Warnings[i], w)
			}
		})
	}
}

func TestNamespaceValidator(t *testing.T) {
	withCanary := mesh("1-22-6", "1-23-6", false, r1226, r1236)
	promoted := mesh("1-23-6", "", false, r1226, r1236)
	denyUnknown := mesh("1-22-6", "", false, r1226)
	denyUnknown.Spec.UnknownRevisionPolicy = v1alpha1.UnknownRevisionDeny

	tests := map[string]struct {
		mesh     *v1alpha1.Mesh
		labels   map[string]string
		name     string
		warnings []string
	}{
		"a namespace switched to the published canary gets no warning": {
			mesh: withCanary, labels: map[string]string{revisions.LabelRev: "canary"},
		},
		"a namespace labelled canary while no canary is published is told it gets stable": {
			mesh: promoted, labels: map[string]string{revisions.LabelRev: "canary"},
			warnings: []string{"no canary is published, so the pod gets the stable revision 1-23-6"},
		},
		"a namespace pinned to an unpublished revision is told which revisions exist": {
			mesh: withCanary, labels: map[string]string{revisions.LabelRev: "1-21-0"},
			warnings: []string{`names revision "1-21-0", which is not published (published: 1-22-6 (stable), 1-23-6 (canary))`},
		},
		"under unknownRevisionPolicy Deny the namespace is admitted with the refusal its pods will get": {
			mesh: denyUnknown, labels: map[string]string{revisions.LabelRev: "1-21-0"},
			warnings: []string{"the pod is refused (unknownRevisionPolicy: Deny)"},
		},
		"a namespace with both istio-injection and istio.io/rev is told which wins": {
			mesh: withCanary, labels: map[string]string{revisions.LabelInjection: "enabled", revisions.LabelRev: "canary"},
			warnings: []string{"sets both istio-injection=enabled and istio.io/rev=canary: istio-injection wins"},
		},
		"a namespace asking for injection before any Mesh exists is told so": {
			labels:   map[string]string{revisions.LabelInjection: "enabled"},
			warnings: []string{`no Mesh "default" is installed`},
		},
		"a namespace without injection labels is not looked at": {
			mesh: withCanary, labels: map[string]string{"team": "shop"},
		},
		"a system namespace is never injected, so its labels draw no warning": {
			mesh: promoted, name: "kube-system", labels: map[string]string{revisions.LabelRev: "canary"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			scheme := validatorScheme()
			b := fake.NewClientBuilder().WithScheme(scheme)
			if tc.mesh != nil {
				b = b.WithObjects(tc.mesh)
			}
			wh := NewNamespaceValidator(NamespaceValidatorOptions{OwnNamespace: "meshrev-system", Reader: b.Build(), Scheme: scheme})
			nsName := tc.name
			if nsName == "" {
				nsName = "bookinfo"
			}
			ns := namespace(nsName, tc.labels)
			ns.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}
			for _, op := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update} {
				t.Run(fmt.Sprint(op), func(t *testing.T) {
					var old runtime.Object
					if op == admissionv1.Update {
						old = namespace(nsName, nil)
					}
					resp := review(t, wh, op, old, ns)
					require.True(t, resp.Allowed, "the namespace validator never denies")
					require.Len(t, resp.Warnings, len(tc.warnings), "warnings: %q", resp.Warnings)
					for i, w := range tc.warnings {
						assert.Contains(t, resp.Warnings[i], w)
					}
				})
			}
		})
	}
}
