// Package istiocharts packages Istio's own Helm charts (base and istiod, from
// the istio.io/istio module pinned by the test-only module test/istiocharts)
// under the versions they stand in for, and serves them as an HTTP chart
// repository on the loopback interface: the e2e tests and the demo install
// real control planes from it without network access.
package istiocharts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
)

// ChartDirs are the charts taken from Istio's source, by their path in it.
var ChartDirs = []string{"manifests/charts/base", "manifests/charts/istio-control/istio-discovery"}

// Source returns the directory of the istio.io/istio module that the module
// in moduleDir pins, from the module cache (downloaded through the module
// proxy when missing).
func Source(ctx context.Context, moduleDir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "istio.io/istio")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download istio.io/istio in %s: %w: %s%s", moduleDir, err, out, stderr.String())
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", fmt.Errorf("go mod download istio.io/istio: %w", err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return "", fmt.Errorf("go mod download istio.io/istio: %s", mod.Error)
	}
	return mod.Dir, nil
}

// Package writes base-<v>.tgz and istiod-<v>.tgz into dir for each version
// v, from Istio's source in src. Like Istio's release builds, each carries
// its version as chart version and appVersion, and the istiod chart's
// default images docker.io/istio/<image>:<v> (the source says a development
// hub and tag "latest").
func Package(src, dir string, versions ...string) error {
	for _, chartDir := range ChartDirs {
		for _, v := range versions {
			ch, err := loader.LoadDir(filepath.Join(src, chartDir))
			if err != nil {
				return fmt.Errorf("load %s: %w", chartDir, err)
			}
			ch.Metadata.Version, ch.Metadata.AppVersion = v, v
			for _, f := range ch.Raw {
				if f.Name != chartutil.ValuesfileName || ch.Metadata.Name != "istiod" {
					continue
				}
				f.Data, err = releaseImages(f.Data, v)
				if err != nil {
					return fmt.Errorf("%s %s: %w", chartDir, v, err)
				}
			}
			if _, err := chartutil.Save(ch, dir); err != nil {
				return fmt.Errorf("package %s %s: %w", chartDir, v, err)
			}
		}
	}
	return nil
}

// releaseImages sets the default hub and tag of the istiod chart's values
// file as Istio's release does, line by line so the file keeps its comments.
func releaseImages(values []byte, version string) ([]byte, error) {
	for _, r := range []struct{ from, to string }{
		{"\n    hub: registry.istio.io/testing\n", "\n    hub: docker.io/istio\n"},
		{"\n    tag: latest\n", "\n    tag: " + version + "\n"},
	} {
		if bytes.Count(values, []byte(r.from)) != 1 {
			return nil, fmt.Errorf("values.yaml has not exactly one %q: Istio's chart changed", bytes.TrimSpace([]byte(r.from)))
		}
		values = bytes.Replace(values, []byte(r.from), []byte(r.to), 1)
	}
	return values, nil
}

// Repository is a chart repository served over HTTP on the loopback interface.
type Repository struct {
	// URL is the repository's address (http://127.0.0.1:<port>).
	URL string
	srv *http.Server
}

// Serve writes the index of the charts in dir and serves dir at addr
// (127.0.0.1:0 for any free port) until Close.
func Serve(dir, addr string) (*Repository, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve charts: %w", err)
	}
	url := "http://" + l.Addr().String()
	idx, err := repo.IndexDirectory(dir, url)
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("index %s: %w", dir, err)
	}
	if err := idx.WriteFile(filepath.Join(dir, "index.yaml"), 0o644); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("index %s: %w", dir, err)
	}
	r := &Repository{URL: url, srv: &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		if err := r.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "istiocharts: %v\n", err)
		}
	}()
	return r, nil
}

// Close stops serving.
func (r *Repository) Close() error { return r.srv.Close() }
