//go:build e2e

package e2e

// Istio's own Helm charts, served to meshrev from a chart repository on
// 127.0.0.1: the charts come from the istio.io/istio module pinned by the
// test-only module test/istiocharts, packaged under the versions the tests
// stand them in for.

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
)

// istioChartsModule is the test-only module that pins istio.io/istio.
const istioChartsModule = "../istiocharts"

// istioSource returns the directory of the pinned istio.io/istio module in
// the module cache (downloaded through the module proxy when missing).
func istioSource(t *testing.T) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "mod", "download", "-json", "istio.io/istio")
	cmd.Dir = istioChartsModule
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	require.NoError(t, err, "go mod download istio.io/istio in %s: %s", istioChartsModule, out)
	var mod struct{ Dir, Error string }
	require.NoError(t, json.Unmarshal(out, &mod))
	require.Empty(t, mod.Error)
	require.DirExists(t, mod.Dir)
	return mod.Dir
}

// serveIstioCharts packages Istio's base and istiod charts under each of
// versions into a chart repository (index.yaml) served over HTTP on
// 127.0.0.1, and returns its URL.
func serveIstioCharts(t *testing.T, versions ...string) string {
	t.Helper()
	dir := t.TempDir()
	packageIstioCharts(t, dir, versions...)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + l.Addr().String()
	idx, err := repo.IndexDirectory(dir, url)
	require.NoError(t, err)
	require.NoError(t, idx.WriteFile(filepath.Join(dir, "index.yaml"), 0o644))
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return url
}

// packageIstioCharts packages Istio's base and istiod charts under each of
// versions into dir (base-<v>.tgz, istiod-<v>.tgz) and returns their paths.
func packageIstioCharts(t *testing.T, dir string, versions ...string) []string {
	t.Helper()
	src := istioSource(t)
	var out []string
	for _, chartDir := range []string{"manifests/charts/base", "manifests/charts/istio-control/istio-discovery"} {
		for _, v := range versions {
			ch, err := loader.LoadDir(filepath.Join(src, chartDir))
			require.NoError(t, err, "load %s", chartDir)
			ch.Metadata.Version, ch.Metadata.AppVersion = v, v
			path, err := chartutil.Save(ch, dir)
			require.NoError(t, err)
			out = append(out, path)
		}
	}
	return out
}
