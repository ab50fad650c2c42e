package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// templatesCM is a ConfigMap of meshrev's namespace with the given data.
func templatesCM(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "meshrev-system", Name: name},
		Data:       data,
	}
}

// reviewConfigMap sends one ConfigMap AdmissionReview through wh as the API
// server would: namespace and name from the object (new, else old).
func reviewConfigMap(t *testing.T, wh *admission.Webhook, op admissionv1.Operation, old, obj *corev1.ConfigMap) admission.Response {
	t.Helper()
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "1", Operation: op}}
	for _, o := range []struct {
		cm  *corev1.ConfigMap
		raw *runtime.RawExtension
	}{{obj, &req.Object}, {old, &req.OldObject}} {
		if o.cm == nil {
			continue
		}
		raw, err := json.Marshal(o.cm)
		require.NoError(t, err)
		o.raw.Raw = raw
		if req.Name == "" {
			req.Namespace, req.Name = o.cm.Namespace, o.cm.Name
		}
	}
	return wh.Handle(context.Background(), req)
}

func TestTemplatesValidator(t *testing.T) {
	def := DefaultTemplates()
	// A sidecar template that adds a marker label: still good.
	edited := strings.Replace(def.Sidecar, "\nlabels:\n", "\nlabels:\n  unit.meshrev.io/edited: \"yes\"\n", 1)
	require.NotEqual(t, def.Sidecar, edited, "the default sidecar template has a labels: section")
	const unclosed = "containers:\n- name: istio-proxy\n  image: {{ .Revision.ProxyImage \n"
	const missingField = "containers:\n- name: istio-proxy\n  image: {{ .Revision.NoSuchField }}\n"

	own := v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", Templates: "tmpl-1-23-6"}
	plain := v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6"}
	// overriding names a ConfigMap with both keys: the defaults do not reach it.
	overriding := v1alpha1.Revision{Name: "1-24-0", Version: "1.24.0", Templates: "tmpl-full"}
	published := mesh("1-22-6", "1-23-6", false, plain, own)

	tests := map[string]struct {
		mesh     *v1alpha1.Mesh
		cluster  []client.Object
		op       admissionv1.Operation
		old, cm  *corev1.ConfigMap
		allowed  bool
		contains []string // in the refusal message
		warning  string   // substring of the one expected warning
	}{
		"A revision's ConfigMap edited into a template that does not parse is refused, naming the ConfigMap, key, revision and error": {
			mesh: published, op: admissionv1.Update,
			old:      templatesCM("tmpl-1-23-6", map[string]string{"sidecar": def.Sidecar}),
			cm:       templatesCM("tmpl-1-23-6", map[string]string{"sidecar": unclosed}),
			contains: []string{"ConfigMap meshrev-system/tmpl-1-23-6", `key "sidecar"`, "revision 1-23-6", "parse sidecar template", "unclosed action"},
		},
		"A revision's ConfigMap edited into a template that does not render is refused": {
			mesh: published, op: admissionv1.Update,
			old:      templatesCM("tmpl-1-23-6", map[string]string{"sidecar": def.Sidecar}),
			cm:       templatesCM("tmpl-1-23-6", map[string]string{"sidecar": def.Sidecar, "gateway": missingField}),
			contains: []string{"ConfigMap meshrev-system/tmpl-1-23-6", `key "gateway"`, "revision 1-23-6", "render gateway template", "NoSuchField"},
		},
		"A revision's ConfigMap whose template renders something injection cannot use is refused": {
			mesh: published, op: admissionv1.Update,
			old:      templatesCM("tmpl-1-23-6", map[string]string{"sidecar": def.Sidecar}),
			cm:       templatesCM("tmpl-1-23-6", map[string]string{"sidecar": "containers: []\n"}),
			contains: []string{`key "sidecar"`, "revision 1-23-6", "the sidecar template adds no container"},
		},
		"A broken revision's ConfigMap is refused on create too": {
			mesh: published, op: admissionv1.Create,
			cm:       templatesCM("tmpl-1-23-6", map[string]string{"sidecar": unclosed}),
			contains: []string{"ConfigMap meshrev-system/tmpl-1-23-6", "revision 1-23-6"},
		},
		"A good edit of a revision's ConfigMap is allowed": {
			mesh: published, op: admissionv1.Update,
			old:     templatesCM("tmpl-1-23-6", map[string]string{"sidecar": def.Sidecar}),
			cm:      templatesCM("tmpl-1-23-6", map[string]string{"sidecar": edited, "gateway": def.Gateway}),
			allowed: true,
		},
		"A metadata-only update of a ConfigMap that was already broken is allowed": {
			mesh: published, op: admissionv1.Update,
			old: templatesCM("tmpl-1-23-6", map[string]string{"sidecar": unclosed}),
			cm: func() *corev1.ConfigMap {
				c := templatesCM("tmpl-1-23-6", map[string]string{"sidecar": unclosed})
				c.Labels = map[string]string{"a": "b"}
				return c
			}(),
			allowed: true,
		},
		"The defaults ConfigMap edited into a broken template is refused for the revisions that read it": {
			mesh: published, op: admissionv1.Update,
			old:      templatesCM("meshrev-templates", map[string]string{"sidecar": def.Sidecar, "gateway": def.Gateway}),
			cm:       templatesCM("meshrev-templates", map[string]string{"sidecar": unclosed, "gateway": def.Gateway}),
			contains: []string{"ConfigMap meshrev-system/meshrev-templates", `key "sidecar"`, "revision 1-22-6", "revision 1-23-6", "parse sidecar template"},
		},
		"A defaults key every revision replaces with its own is not judged": {
			mesh: mesh("1-24-0", "", false, overriding), op: admissionv1.Update,
			cluster: []client.Object{templatesCM("tmpl-full", map[string]string{"sidecar": def.Sidecar, "gateway": def.Gateway})},
			old:     templatesCM("meshrev-templates", map[string]string{"sidecar": def.Sidecar}),
			cm:      templatesCM("meshrev-templates", map[string]string{"sidecar": unclosed}),
			allowed: true,
		},
		"An unrelated ConfigMap of meshrev's namespace is allowed, however broken it looks": {
			mesh: published, op: admissionv1.Update,
			old:     templatesCM("something-else", map[string]string{"sidecar": def.Sidecar}),
			cm:      templatesCM("something-else", map[string]string{"sidecar": unclosed}),
			allowed: true,
		},
		"A ConfigMap of another namespace with a revision's name is allowed": {
			mesh: published, op: admissionv1.Create,
			cm: func() *corev1.ConfigMap {
				c := templatesCM("tmpl-1-23-6", map[string]string{"sidecar": unclosed})
				c.Namespace = "default"
				return c
			}(),
			allowed: true,
		},
		"Any ConfigMap is allowed while no Mesh exists": {
			op:      admissionv1.Update,
			old:     templatesCM("meshrev-templates", map[string]string{"sidecar": def.Sidecar}),
			cm:      templatesCM("meshrev-templates", map[string]string{"sidecar": unclosed}),
			allowed: true,
		},
		"Deleting a ConfigMap a published revision names is refused, naming the revision and what to do": {
			mesh: published, op: admissionv1.Delete,
			old:      templatesCM("tmpl-1-23-6", map[string]string{"sidecar": def.Sidecar}),
			contains: []string{"ConfigMap meshrev-system/tmpl-1-23-6", "published revision 1-23-6", "point that revision at another templates ConfigMap, or unpublish it"},
		},
		"Deleting a ConfigMap no revision names is allowed": {
			mesh: published, op: admissionv1.Delete,
			old:     templatesCM("tmpl-1-21-0", map[string]string{"sidecar": def.Sidecar}),
			allowed: true,
		},
		"Deleting the defaults ConfigMap is allowed with a warning naming the revisions that read it": {
			mesh: published, op: admissionv1.Delete,
			old:     templatesCM("meshrev-templates", map[string]string{"sidecar": def.Sidecar}),
			allowed: true, warning: "revisions 1-22-6, 1-23-6",
		},
		"A revision's ConfigMap without a template key is allowed with a warning": {
			mesh: published, op: admissionv1.Create,
			cm:      templatesCM("tmpl-1-23-6", map[string]string{"sidcar": unclosed}),
			allowed: true, warning: `neither the key "sidecar" nor "gateway"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			objs := append([]client.Object{}, tc.cluster...)
			if tc.mesh != nil {
				objs = append(objs, tc.mesh)
			}
			reader := fake.NewClientBuilder().WithScheme(validatorScheme()).WithObjects(objs...).Build()
			wh := NewTemplatesValidator(TemplatesValidatorOptions{
				Namespace: "meshrev-system", DefaultsConfigMap: "meshrev-templates", Reader: reader,
				Injector: newTestInjector(t, &fixedState{}),
			})
			resp := reviewConfigMap(t, wh, tc.op, tc.old, tc.cm)
			require.Equal(t, tc.allowed, resp.Allowed, "response %+v", resp.Result)
			if !tc.allowed {
				assert.Equal(t, int32(http.StatusForbidden), resp.Result.Code)
				for _, s := range tc.contains {
					assert.Contains(t, resp.Result.Message, s)
				}
			}
			if tc.warning == "" {
				assert.Empty(t, resp.Warnings)
			} else if assert.Len(t, resp.Warnings, 1) {
				assert.Contains(t, resp.Warnings[0], tc.warning)
			}
		})
	}
}

func TestTemplatesValidatorRefusesWhenTheMeshCannotBeRead(t *testing.T) {
	reader := fake.NewClientBuilder().WithScheme(validatorScheme()).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return errors.New("cache not synced")
		},
	}).Build()
	wh := NewTemplatesValidator(TemplatesValidatorOptions{
		Namespace: "meshrev-system", Reader: reader, Injector: newTestInjector(t, &fixedState{}),
	})
	resp := reviewConfigMap(t, wh, admissionv1.Update, templatesCM("tmpl", nil), templatesCM("tmpl", map[string]string{"sidecar": "x"}))
	require.False(t, resp.Allowed)
	assert.Equal(t, int32(http.StatusServiceUnavailable), resp.Result.Code)
	assert.Contains(t, resp.Result.Message, "cache not synced")

	other := templatesCM("tmpl", nil)
	other.Namespace = "default"
	assert.True(t, reviewConfigMap(t, wh, admissionv1.Update, other, other).Allowed, "another namespace never needs the Mesh")
}

func TestTemplatesValidatorJudgesWithTheRevisionsFields(t *testing.T) {
	// A template that needs the revision's proxy image: rendered with the
	// injector's defaults (repository), it names the revision's image.
	tmpl := "containers:\n- name: istio-proxy\n  image: {{ if eq .Revision.ProxyImage \"docker.io/istio/proxyv2:1.23.6\" }}ok{{ else }}{{ .Revision.Missing }}{{ end }}\n"
	rev := v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", Templates: "tmpl"}
	reader := fake.NewClientBuilder().WithScheme(validatorScheme()).WithObjects(mesh("1-23-6", "", false, rev)).Build()
	wh := NewTemplatesValidator(TemplatesValidatorOptions{Namespace: "meshrev-system", Reader: reader, Injector: newTestInjector(t, &fixedState{})})
	resp := reviewConfigMap(t, wh, admissionv1.Create, nil, templatesCM("tmpl", map[string]string{revisions.TemplateSidecar: tmpl}))
	assert.True(t, resp.Allowed, "response %+v", resp.Result)
}
