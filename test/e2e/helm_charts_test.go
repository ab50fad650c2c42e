//go:build e2e

package e2e

// Istio's own Helm charts, served to meshrev from a chart repository on
// 127.0.0.1 (internal/istiocharts): the charts come from the istio.io/istio
// module pinned by the test-only module test/istiocharts, packaged under the
// versions the tests stand them in for.

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/internal/istiocharts"
)

// istioChartsModule is the test-only module that pins istio.io/istio.
const istioChartsModule = "../istiocharts"

// istioSource returns the directory of the pinned istio.io/istio module in
// the module cache (downloaded through the module proxy when missing).
func istioSource(t *testing.T) string {
	t.Helper()
	dir, err := istiocharts.Source(t.Context(), istioChartsModule)
	require.NoError(t, err)
	require.DirExists(t, dir)
	return dir
}

// serveIstioCharts packages Istio's base and istiod charts under each of
// versions into a chart repository (index.yaml) served over HTTP on
// 127.0.0.1, and returns its URL.
func serveIstioCharts(t *testing.T, versions ...string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, istiocharts.Package(istioSource(t), dir, versions...))
	r, err := istiocharts.Serve(dir, "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r.URL
}
