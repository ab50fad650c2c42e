package devcluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Environment variables understood by this package.
const (
	// DirEnv overrides the cluster directory used by `hack/cluster` (default <repo>/.dev).
	DirEnv = "MESHREV_CLUSTER_DIR"
	// CacheEnv overrides the binary cache root (default $XDG_CACHE_HOME/meshrev or ~/.cache/meshrev).
	CacheEnv = "MESHREV_CACHE"
	// RepoRootEnv overrides the detection of the meshrev repository root.
	RepoRootEnv = "MESHREV_REPO_ROOT"
)

// ModulePath is the Go module path of the meshrev repository; it identifies the repository root.
const ModulePath = "github.com/meshrev/meshrev"

// RepoRoot returns the root of the meshrev repository: $MESHREV_REPO_ROOT if set,
// otherwise the nearest ancestor of the working directory whose go.mod declares
// [ModulePath].
func RepoRoot() (string, error) {
	if root := os.Getenv(RepoRootEnv); root != "" {
		return filepath.Abs(root)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isMeshrevModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", fmt.Errorf("no go.mod declaring module %s above %s; run from inside the meshrev repository or set %s", ModulePath, wd, RepoRootEnv)
}

func isMeshrevModule(goMod string) bool {
	data, err := os.ReadFile(goMod)
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == ModulePath
		}
	}
	return false
}

// CacheDir returns the root of the binary cache: $MESHREV_CACHE, else
// $XDG_CACHE_HOME/meshrev, else ~/.cache/meshrev. Binaries go to
// <CacheDir>/bin/<name>-<version>/.
func CacheDir() (string, error) {
	if dir := os.Getenv(CacheEnv); dir != "" {
		return filepath.Abs(dir)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(base, "meshrev"), nil
}

// DefaultDir returns the cluster directory used by `hack/cluster`: $MESHREV_CLUSTER_DIR
// if set, otherwise <repoRoot>/.dev.
func DefaultDir(repoRoot string) (string, error) {
	if dir := os.Getenv(DirEnv); dir != "" {
		return filepath.Abs(dir)
	}
	if repoRoot == "" {
		return "", errors.New("no repository root to place .dev in")
	}
	return filepath.Join(repoRoot, ".dev"), nil
}

// Layout names the files of a cluster directory.
type Layout struct {
	// Root is the absolute cluster directory.
	Root string
}

// Kubeconfig is the admin (cluster-admin) kubeconfig.
func (l Layout) Kubeconfig() string { return filepath.Join(l.Root, "kubeconfig") }

// BinDir holds links to kubectl and helm, for PATH.
func (l Layout) BinDir() string { return filepath.Join(l.Root, "bin") }

// LogDir holds one log file per component.
func (l Layout) LogDir() string { return filepath.Join(l.Root, "logs") }

// LogFile is the log of one component, e.g. "etcd" or "kube-apiserver".
func (l Layout) LogFile(component string) string {
	return filepath.Join(l.LogDir(), component+".log")
}

// StateDir holds pid files, PKI, component kubeconfigs and etcd data.
func (l Layout) StateDir() string { return filepath.Join(l.Root, "cluster") }

// PIDFile is the pid file of one component.
func (l Layout) PIDFile(component string) string {
	return filepath.Join(l.StateDir(), component+".pid")
}

// PKIDir holds the cluster CA, serving and client certificates and the service-account keys.
func (l Layout) PKIDir() string { return filepath.Join(l.StateDir(), "pki") }

// StateFile records the ports and pids of a running cluster.
func (l Layout) StateFile() string { return filepath.Join(l.StateDir(), "state.json") }

// PortsFile records the ports of the cluster whose data is in the directory;
// a restart binds them again.
func (l Layout) PortsFile() string { return filepath.Join(l.StateDir(), "ports.json") }

func (l Layout) etcdDir() string { return filepath.Join(l.StateDir(), "etcd") }

// etcdMemberDir exists once etcd has initialised its data directory.
func (l Layout) etcdMemberDir() string { return filepath.Join(l.etcdDir(), "member") }

func (l Layout) pki(name string) string { return filepath.Join(l.PKIDir(), name) }
