package compat

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
	"github.com/meshrev/meshrev/webhook"
)

// testNamespace is where every compared pod is created; meshrev sees it
// labelled istio-injection=enabled (Istio's injector does not read namespace
// labels: its webhook configuration's selector does, before it is called).
const testNamespace = "test-ns"

// meshState is the one Mesh and namespace meshrev's injector reads.
type meshState struct{ mesh *v1alpha1.Mesh }

func (s meshState) Mesh(context.Context) (*v1alpha1.Mesh, error) { return s.mesh, nil }

func (s meshState) NamespaceLabels(_ context.Context, name string) (map[string]string, bool, error) {
	if name == testNamespace {
		return map[string]string{"istio-injection": "enabled"}, true, nil
	}
	return map[string]string{}, true, nil
}

// newMeshrevInjector returns meshrev's injector with one stable revision of
// the given name and version, on its embedded default templates.
func newMeshrevInjector(t testing.TB, rev, version string, native, cni bool) *webhook.Injector {
	t.Helper()
	m := &v1alpha1.Mesh{Spec: v1alpha1.MeshSpec{
		Revisions: []v1alpha1.Revision{meshrevRevision(rev, version, native, cni)},
		Stable:    rev,
	}}
	m.Name = v1alpha1.MeshName
	inj, err := webhook.NewInjector(webhook.InjectorOptions{
		OwnNamespace: "meshrev-system",
		State:        meshState{mesh: m},
		Registerer:   prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	return inj
}

func meshrevInject(t testing.TB, inj *webhook.Injector, namespace string, pod []byte) outcome {
	return review(t, inj, webhook.PathInject, namespace, pod)
}
