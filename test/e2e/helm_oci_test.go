//go:build e2e

package e2e

import (
	"io"
	"log"
	"net"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// serveIstioChartsOCI starts an OCI registry on 127.0.0.1 (go-containerregistry's
// registry, in memory, plain HTTP), pushes Istio's base and istiod charts
// packaged under each of versions to its repository "charts" with the pinned
// helm binary's `helm push`, and returns oci://127.0.0.1:PORT/charts.
func serveIstioChartsOCI(t *testing.T, versions ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	repo := "oci://" + l.Addr().String() + "/charts"
	helm := newHelm(t)
	for _, pkg := range packageIstioCharts(t, t.TempDir(), versions...) {
		out := helm.run(t, "push", pkg, repo, "--plain-http")
		require.Contains(t, out, "Digest: sha256:", "helm push %s", pkg)
	}
	return repo
}

// TestHelmOCIChartRepository installs a revision's control plane from Istio's
// charts pushed to an OCI registry (oci://, as a mirror such as Harbor or
// ghcr.io serves them): Helm's registry client pulls base and istiod, the
// release is installed with its objects, and a chart version the registry
// does not have fails the step with a message naming the oci:// source.
func TestHelmOCIChartRepository(t *testing.T) {
	repo := serveIstioChartsOCI(t, "1.22.6")
	var e *lcEnv
	// Registered first, so it runs last: after the Mesh is deleted and the
	// manager stopped.
	t.Cleanup(func() {
		if e != nil {
			cleanupHelmReleases(t, e)
		}
	})
	e = lcSetup(t, nil)
	stable := helmRevision("1.22.6", repo)

	t.Run("a revision installs from the OCI registry: base first, then release istiod-1-22-6", func(t *testing.T) {
		e.createMesh(stable)
		e.assertRelease(stable, "1.22.6")
		crd := readmodel.CRDMeta()
		require.NoError(t, e.c.Get(t.Context(), client.ObjectKey{Name: readmodel.IstioVersionCRD}, crd))
		assert.Equal(t, "1.22.6", crd.Labels[readmodel.LabelVersion], "the base chart pulled from the registry installed the CRDs")
		assert.Equal(t, &v1alpha1.ControlPlaneStatus{Source: "Helm", Release: "istiod-1-22-6", ReleaseStatus: "deployed", ChartVersion: "1.22.6"},
			lcRevisionStatus(e.mesh(), stable.Name).ControlPlane)
		e.assertNoIstioInjector()
	})

	t.Run("a chart version the registry does not have fails the step with a message naming the oci:// source", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = append(m.Spec.Revisions, helmRevision("1.23.6", repo))
			m.Spec.Canary = "1-23-6"
		})
		require.NoError(t, err)
		m := e.waitMesh("install failure reported", func(m *v1alpha1.Mesh) bool {
			return meta.IsStatusConditionFalse(m.Status.Conditions, "ControlPlanesInstalled")
		})
		c := meta.FindStatusCondition(m.Status.Conditions, "ControlPlanesInstalled")
		assert.Equal(t, "InstallFailed", c.Reason)
		assert.Contains(t, c.Message, "fetch chart base 1.23.6 from "+repo)
		rs := lcRevisionStatus(m, "1-23-6").ControlPlane
		require.NotNil(t, rs)
		assert.Equal(t, "failed", rs.ReleaseStatus)
		assert.Contains(t, rs.LastError, repo)
		e.assertRelease(stable, "1.22.6")
	})
}
