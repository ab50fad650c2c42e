package controller

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo"
)

// Istio's chart names.
const (
	// ChartIstiod is Istio's control-plane chart.
	ChartIstiod = "istiod"
	// ChartBase is Istio's chart of CRDs and the default validating webhook.
	ChartBase = "base"
)

// chartCache fetches Istio's charts from a repository and keeps each
// version it fetched on disk: <dir>/<hash of the repository>/<chart>-<version>.tgz.
// A chart once fetched is never fetched again (chart versions are immutable).
type chartCache struct {
	dir string
	mu  sync.Mutex
}

// load returns chart name at version from repository (http(s)://, oci:// or file://).
// Its error names the chart, the version and the repository.
func (c *chartCache) load(repository, name, version string) (*chart.Chart, error) {
	ch, err := c.loadUnwrapped(repository, name, version)
	if err != nil {
		return nil, fmt.Errorf("fetch chart %s %s from %s: %w", name, version, repository, err)
	}
	return ch, nil
}

func (c *chartCache) loadUnwrapped(repository, name, version string) (*chart.Chart, error) {
	archive := name + "-" + version + ".tgz"
	if dir, ok := strings.CutPrefix(repository, "file://"); ok {
		// A local directory is its own cache.
		return loadChecked(filepath.Join(dir, archive), name, version)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := sha256.Sum256([]byte(repository))
	repoDir := filepath.Join(c.dir, hex.EncodeToString(sum[:8]))
	path := filepath.Join(repoDir, archive)
	if _, err := os.Stat(path); err == nil {
		return loadChecked(path, name, version)
	}
	var data []byte
	var err error
	switch {
	case strings.HasPrefix(repository, "oci://"):
		data, err = fetchOCI(repository, name, version)
	case strings.HasPrefix(repository, "http://"), strings.HasPrefix(repository, "https://"):
		data, err = fetchHTTP(repository, name, version, repoDir)
	default:
		err = errors.New("unsupported repository scheme (want http://, https://, oci:// or file://)")
	}
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		return nil, fmt.Errorf("chart cache: %w", err)
	}
	tmp, err := os.CreateTemp(repoDir, archive+".*")
	if err != nil {
		return nil, fmt.Errorf("chart cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("chart cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("chart cache: %w", err)
	}
	// Check before caching: a bad download is not kept.
	if _, err := loadChecked(tmp.Name(), name, version); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("chart cache: %w", err)
	}
	return loadChecked(path, name, version)
}

// loadChecked loads a packaged chart and checks it is the one asked for.
func loadChecked(path, name, version string) (*chart.Chart, error) {
	ch, err := loader.Load(path)
	if err != nil {
		return nil, err
	}
	if ch.Metadata.Name != name || ch.Metadata.Version != version {
		return nil, fmt.Errorf("%s holds chart %s %s", filepath.Base(path), ch.Metadata.Name, ch.Metadata.Version)
	}
	return ch, nil
}

// fetchHTTP reads the repository's index.yaml and downloads the chart it names.
func fetchHTTP(repository, name, version, repoDir string) ([]byte, error) {
	g, err := getter.NewHTTPGetter()
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(repository, "/")
	buf, err := g.Get(base + "/index.yaml")
	if err != nil {
		return nil, fmt.Errorf("read the repository index: %w", err)
	}
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		return nil, fmt.Errorf("chart cache: %w", err)
	}
	indexPath := filepath.Join(repoDir, "index.yaml")
	if err := os.WriteFile(indexPath, buf.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("chart cache: %w", err)
	}
	idx, err := repo.LoadIndexFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("read the repository index: %w", err)
	}
	cv, err := idx.Get(name, version)
	if err != nil {
		return nil, fmt.Errorf("the repository has no chart %s version %s", name, version)
	}
	if len(cv.URLs) == 0 {
		return nil, fmt.Errorf("the repository's index names no URL for %s %s", name, version)
	}
	u, err := repo.ResolveReferenceURL(base+"/", cv.URLs[0])
	if err != nil {
		return nil, err
	}
	out, err := g.Get(u)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", u, err)
	}
	return out.Bytes(), nil
}

// fetchOCI pulls <repository>/<name>:<version>. A registry on a loopback
// address is spoken to in plain HTTP (a local mirror or a test registry).
func fetchOCI(repository, name, version string) ([]byte, error) {
	ref := strings.TrimPrefix(strings.TrimSuffix(repository, "/"), "oci://") + "/" + name + ":" + version
	opts := []registry.ClientOption{registry.ClientOptWriter(&bytes.Buffer{})}
	if host := strings.SplitN(ref, "/", 2)[0]; strings.HasPrefix(host, "127.0.0.1:") || strings.HasPrefix(host, "localhost:") {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	c, err := registry.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	res, err := c.Pull(ref, registry.PullOptWithChart(true))
	if err != nil {
		return nil, err
	}
	return res.Chart.Data, nil
}
