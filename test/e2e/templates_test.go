//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/meshrev/meshrev/charts"
	"github.com/meshrev/meshrev/internal/manager"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// TestTemplatesConfigMapEditsAreValidated edits templates ConfigMaps after
// their revisions are published, through the real API server and the
// chart's templates.meshrev.io webhook, as kubectl would: a broken template
// is refused (the ConfigMap stays as it was), a good edit is accepted and
// injected into the next pod, and a ConfigMap a published revision names
// cannot be deleted. Other ConfigMaps of meshrev's namespace are untouched.
func TestTemplatesConfigMapEditsAreValidated(t *testing.T) {
	c := ctrlClient(t)
	cs := Client(t)
	ctx := t.Context()
	ensureNamespace(t, c, meshrevNamespace)
	cms := cs.CoreV1().ConfigMaps(meshrevNamespace)
	token := rand.String(6)

	sidecar, gateway := charts.DefaultTemplates()
	// withLabel is the default sidecar template plus a marker label on the pod.
	withLabel := func(value string) string {
		out := strings.Replace(sidecar, "\nlabels:\n", "\nlabels:\n  e2e.meshrev.io/template: "+value+"\n", 1)
		require.NotEqual(t, sidecar, out, "the default sidecar template has a labels: section")
		return out
	}
	const broken = "containers:\n- name: istio-proxy\n  image: {{ .Revision.ProxyImage \n"
	defaults := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "e2e-tmpl-defaults-" + token},
		Data:       map[string]string{revisions.TemplateSidecar: withLabel("defaults"), revisions.TemplateGateway: gateway},
	}
	own := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "e2e-tmpl-1-23-6-" + token},
		Data:       map[string]string{revisions.TemplateSidecar: withLabel("v1"), revisions.TemplateGateway: gateway},
	}
	// Created before the manager and deleted after it stops (cleanups run
	// last-in first-out), when neither the Mesh nor the webhook is left.
	for _, cm := range []*corev1.ConfigMap{defaults, own} {
		_, err := cms.Create(ctx, cm, metav1.CreateOptions{})
		require.NoError(t, err, "create ConfigMap %s", cm.Name)
		t.Cleanup(func() { deleteIfExists(t, c, &corev1.ConfigMap{ObjectMeta: cm.ObjectMeta}) })
	}

	startManager(t, withManagerOptions(func(o *manager.Options) { o.TemplatesConfigMap = defaults.Name }))
	createMesh(t, v1alpha1.MeshSpec{
		Revisions: []v1alpha1.Revision{
			{Name: "1-22-6", Version: "1.22.6"},
			{Name: "1-23-6", Version: "1.23.6", Templates: own.Name},
		},
		Stable: "1-22-6",
		Canary: "1-23-6",
	})
	ns := NewNamespace(t, "templates-validate", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	canary := map[string]string{revisions.LabelRev: revisions.TagCanary}
	pod, _ := waitResolves(t, ns, testPod("before", canary), "1-23-6")
	require.Equal(t, "v1", pod.Labels["e2e.meshrev.io/template"], "the canary uses its own templates ConfigMap")

	// edit updates the sidecar template of the named ConfigMap, as
	// kubectl edit would (read, change, update).
	edit := func(name, sidecarText string) error {
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		cm.Data[revisions.TemplateSidecar] = sidecarText
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err
	}

	t.Run("a broken template in a revision's ConfigMap is refused and the ConfigMap stays as it was", func(t *testing.T) {
		err := edit(own.Name, broken)
		require.Error(t, err)
		for _, s := range []string{`admission webhook "templates.meshrev.io" denied the request`, "ConfigMap " + meshrevNamespace + "/" + own.Name, `key "sidecar"`, "revision 1-23-6", "unclosed action"} {
			assert.Contains(t, err.Error(), s)
		}
		got, err := cms.Get(ctx, own.Name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.Equal(t, withLabel("v1"), got.Data[revisions.TemplateSidecar])
	})

	t.Run("a broken template in the defaults ConfigMap is refused for the revision that reads it", func(t *testing.T) {
		err := edit(defaults.Name, broken)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `admission webhook "templates.meshrev.io" denied the request`)
		assert.Contains(t, err.Error(), "revision 1-22-6")
		assert.NotContains(t, err.Error(), "revision 1-23-6", "the canary's own sidecar template replaces the default one")
	})

	t.Run("a good edit is accepted and injected into the next pod", func(t *testing.T) {
		require.NoError(t, edit(own.Name, withLabel("v2")))
		require.Eventually(t, func() bool {
			got, _, err := dryRunPod(t, ns, testPod("edited-dry", canary))
			return err == nil && got.Labels["e2e.meshrev.io/template"] == "v2"
		}, 30*time.Second, 100*time.Millisecond, "the edited template applies to new pods")
		got, _, err := createPod(t, ns, testPod("edited", canary))
		require.NoError(t, err)
		assert.Equal(t, "1-23-6", got.Labels[revisions.LabelRevision])
		assert.Equal(t, "v2", got.Labels["e2e.meshrev.io/template"])
	})

	t.Run("deleting the ConfigMap of a published revision is refused", func(t *testing.T) {
		err := cms.Delete(ctx, own.Name, metav1.DeleteOptions{})
		require.Error(t, err)
		for _, s := range []string{`admission webhook "templates.meshrev.io" denied the request`, "published revision 1-23-6", "unpublish"} {
			assert.Contains(t, err.Error(), s)
		}
		_, err = cms.Get(ctx, own.Name, metav1.GetOptions{})
		require.NoError(t, err, "the ConfigMap is still there")
	})

	t.Run("other ConfigMaps of meshrev's namespace are created, edited and deleted freely", func(t *testing.T) {
		other := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: "e2e-not-templates-" + token},
			Data:       map[string]string{revisions.TemplateSidecar: broken},
		}
		_, err := cms.Create(ctx, other, metav1.CreateOptions{})
		require.NoError(t, err)
		require.NoError(t, edit(other.Name, broken+"# still not a templates ConfigMap\n"))
		require.NoError(t, cms.Delete(ctx, other.Name, metav1.DeleteOptions{}))
	})
}
