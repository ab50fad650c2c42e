package devcluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

// BuildModulesDir is where the build-only Go modules live, relative to the repository root.
const BuildModulesDir = "hack/cluster/build"

// Binaries holds absolute paths of the pinned binaries in the cache.
type Binaries struct {
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string
	KubeScheduler         string
	Kubectl               string
	Helm                  string
	Kwok                  string
	// PilotDiscovery is Istio's pilot-discovery (istiod) of the pinned
	// istio.io/istio module, the one whose charts the e2e tests install: they
	// run it as a local process against the cluster as a revision's control
	// plane. Empty unless [BuildOptions.PilotDiscovery] asked for it.
	PilotDiscovery string
	// KwokStages is a multi-document YAML of kwok Stage objects (node
	// initialize and lease heartbeat, pod ready/complete/delete), taken from
	// the pinned kwok module's kustomize/stage directory.
	KwokStages string
}

// BuildOptions configures [Build].
type BuildOptions struct {
	// RepoRoot is the meshrev repository (for hack/cluster/build); "" detects it with [RepoRoot].
	RepoRoot string
	// CacheDir is the cache root; "" uses [CacheDir].
	CacheDir string
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// PilotDiscovery also builds Istio's pilot-discovery, the heaviest
	// binary: `hack/cluster build` (make cluster-build, which make test runs
	// first) and the e2e test of a real istiod ask for it; starting a
	// cluster does not need it.
	PilotDiscovery bool
}

// component describes one binary built from a build module.
type component struct {
	name    string // binary name
	module  string // build module directory below BuildModulesDir
	pin     string // module whose version names the cache directory
	tag     string // cache directory prefix
	pkg     string // package to build, relative to the build module
	ldflags func(m modInfo) []string
	// optional components are built only when asked ([BuildOptions.PilotDiscovery]).
	optional bool
}

// modInfo is what `go list -m -json` says about a pinned module.
type modInfo struct {
	Path    string
	Version string
	Time    *time.Time
	Dir     string
}

func kubeLDFlags(m modInfo) []string {
	major, minor := "", ""
	if parts := strings.SplitN(strings.TrimPrefix(m.Version, "v"), ".", 3); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	date := "1970-01-01T00:00:00Z"
	if m.Time != nil {
		date = m.Time.UTC().Format(time.RFC3339)
	}
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", pkg+".gitVersion="+m.Version,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitCommit=",
			"-X", pkg+".gitTreeState=clean",
			"-X", pkg+".buildDate="+date,
		)
	}
	return flags
}

func helmLDFlags(m modInfo) []string {
	// Helm derives the Kubernetes version it claims from its client-go release
	// (v0.37 → 1.37), as its own Makefile does.
	return []string{
		"-X", "helm.sh/helm/v3/internal/version.version=" + m.Version,
		"-X", "helm.sh/helm/v3/internal/version.metadata=",
		"-X", "helm.sh/helm/v3/internal/version.gitTreeState=clean",
		"-X", "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
		"-X", "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37",
		"-X", "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
		"-X", "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37",
	}
}

func kwokLDFlags(m modInfo) []string {
	return []string{"-X", "sigs.k8s.io/kwok/pkg/consts.Version=" + strings.TrimPrefix(m.Version, "v")}
}

// istioLDFlags stamp pilot-discovery's `version` output as Istio's own
// build does (pkg/version), from the pinned module: its version as the
// version and tag, the commit of its pseudo-version as the git revision.
func istioLDFlags(m modInfo) []string {
	revision := m.Version
	if i := strings.LastIndex(m.Version, "-"); i >= 0 {
		revision = m.Version[i+1:]
	}
	const pkg = "istio.io/istio/pkg/version."
	return []string{
		"-X", pkg + "buildVersion=" + m.Version,
		"-X", pkg + "buildGitRevision=" + revision,
		"-X", pkg + "buildStatus=Clean",
		"-X", pkg + "buildTag=" + m.Version,
		"-X", pkg + "buildOS=" + runtime.GOOS,
		"-X", pkg + "buildArch=" + runtime.GOARCH,
	}
}

func noLDFlags(modInfo) []string { return nil }

// components in build order: etcd and the API server first, so that a partial
// cache is useful early.
var components = []component{
	{name: "etcd", module: "etcd", pin: "go.etcd.io/etcd/server/v3", tag: "etcd", pkg: ".", ldflags: noLDFlags},
	{name: "kube-apiserver", module: "k8s", pin: "k8s.io/kubernetes", tag: "kubernetes", pkg: "k8s.io/kubernetes/cmd/kube-apiserver", ldflags: kubeLDFlags},
	{name: "kube-controller-manager", module: "k8s", pin: "k8s.io/kubernetes", tag: "kubernetes", pkg: "k8s.io/kubernetes/cmd/kube-controller-manager", ldflags: kubeLDFlags},
	{name: "kube-scheduler", module: "k8s", pin: "k8s.io/kubernetes", tag: "kubernetes", pkg: "k8s.io/kubernetes/cmd/kube-scheduler", ldflags: kubeLDFlags},
	{name: "kubectl", module: "k8s", pin: "k8s.io/kubernetes", tag: "kubernetes", pkg: "k8s.io/kubernetes/cmd/kubectl", ldflags: kubeLDFlags},
	{name: "kwok", module: "kwok", pin: "sigs.k8s.io/kwok", tag: "kwok", pkg: "sigs.k8s.io/kwok/cmd/kwok", ldflags: kwokLDFlags},
	{name: "helm", module: "helm", pin: "helm.sh/helm/v3", tag: "helm", pkg: "helm.sh/helm/v3/cmd/helm", ldflags: helmLDFlags},
	// Last (optional components come last: plan is indexed like components):
	// the heaviest build, and only the e2e test of a real istiod runs it.
	{name: "pilot-discovery", module: "pilot", pin: "istio.io/istio", tag: "istio", pkg: "istio.io/istio/pilot/cmd/pilot-discovery", ldflags: istioLDFlags, optional: true},
}

// kwokStageFiles are the stages of the pinned kwok module, relative to its
// kustomize/stage directory: nodes become Ready and keep a lease; pods become
// Running and Ready at once, finish when their containers would, and vanish when deleted.
var kwokStageFiles = []string{
	"node/fast/node-initialize.yaml",
	"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"pod/fast/pod-ready.yaml",
	"pod/fast/pod-complete.yaml",
	"pod/fast/pod-delete.yaml",
}

// Build makes sure every pinned binary is in the cache and returns their paths.
// It builds only what is missing or stale (a stamp next to each binary records
// a hash of the build module, the flags and the Go version), one binary at a
// time, and is safe to call concurrently from several processes (the cache is locked).
func Build(ctx context.Context, opts BuildOptions) (*Binaries, error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	root := opts.RepoRoot
	if root == "" {
		r, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		root = r
	}
	cache := opts.CacheDir
	if cache == "" {
		c, err := CacheDir()
		if err != nil {
			return nil, err
		}
		cache = c
	}
	binRoot := filepath.Join(cache, "bin")
	if err := os.MkdirAll(binRoot, 0o755); err != nil {
		return nil, fmt.Errorf("creating binary cache %s: %w", binRoot, err)
	}

	goVersion, err := goEnvVersion(ctx)
	if err != nil {
		return nil, err
	}

	type planned struct {
		c       component
		modDir  string
		version string
		out     string
		stamp   string
	}
	var plan []planned
	var stale []planned
	for _, c := range components {
		if c.optional && !(c.name == "pilot-discovery" && opts.PilotDiscovery) {
			continue
		}
		modDir := filepath.Join(root, BuildModulesDir, c.module)
		version, err := requiredVersion(filepath.Join(modDir, "go.mod"), c.pin)
		if err != nil {
			return nil, err
		}
		stamp, err := stampFor(modDir, c, goVersion)
		if err != nil {
			return nil, err
		}
		out := filepath.Join(binRoot, c.tag+"-"+version, c.name)
		p := planned{c: c, modDir: modDir, version: version, out: out, stamp: stamp}
		plan = append(plan, p)
		if !upToDate(out, stamp) {
			stale = append(stale, p)
		}
	}
	kwokDir := filepath.Dir(plan[indexOf("kwok")].out)
	stagesFile := filepath.Join(kwokDir, "stages.yaml")
	stagesStamp := plan[indexOf("kwok")].stamp + "-stages-" + strings.Join(kwokStageFiles, ",")
	stagesStale := !upToDate(stagesFile, stagesStamp)

	if len(stale) > 0 || stagesStale {
		unlock, err := lockFile(filepath.Join(binRoot, ".build.lock"), logw)
		if err != nil {
			return nil, err
		}
		defer unlock()
		started := time.Now()
		built := 0
		for _, p := range stale {
			if upToDate(p.out, p.stamp) { // built by another process while we waited
				continue
			}
			if err := buildOne(ctx, logw, p.c, p.modDir, p.out, p.stamp); err != nil {
				return nil, err
			}
			built++
		}
		if !upToDate(stagesFile, stagesStamp) {
			p := plan[indexOf("kwok")]
			if err := writeKwokStages(ctx, p.modDir, stagesFile, stagesStamp); err != nil {
				return nil, err
			}
		}
		if built > 0 {
			fmt.Fprintf(logw, "built %d binaries in %s (cache %s)\n", built, time.Since(started).Round(time.Second), binRoot)
		}
	}

	b := &Binaries{KwokStages: stagesFile}
	for _, p := range plan {
		switch p.c.name {
		case "etcd":
			b.Etcd = p.out
		case "kube-apiserver":
			b.KubeAPIServer = p.out
		case "kube-controller-manager":
			b.KubeControllerManager = p.out
		case "kube-scheduler":
			b.KubeScheduler = p.out
		case "kubectl":
			b.Kubectl = p.out
		case "helm":
			b.Helm = p.out
		case "kwok":
			b.Kwok = p.out
		case "pilot-discovery":
			b.PilotDiscovery = p.out
		}
	}
	return b, nil
}

func indexOf(name string) int {
	for i, c := range components {
		if c.name == name {
			return i
		}
	}
	panic("unknown component " + name)
}

func buildOne(ctx context.Context, logw io.Writer, c component, modDir, out, stamp string) error {
	info, err := listModule(ctx, modDir, c.pin)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(out), err)
	}
	tmp := out + ".tmp"
	args := []string{"build", "-trimpath", "-ldflags", ldflagString(c.ldflags(info)), "-o", tmp, c.pkg}
	fmt.Fprintf(logw, "building %s %s (module %s) ...\n", c.name, info.Version, filepath.Base(modDir))
	started := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = modDir
	cmd.Env = buildEnv()
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("building %s in %s failed (go %s): %w\n%s", c.name, modDir, strings.Join(args, " "), err, tail(output.String(), 40))
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("installing %s: %w", out, err)
	}
	if err := os.WriteFile(out+".stamp", []byte(stamp+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing stamp for %s: %w", out, err)
	}
	fmt.Fprintf(logw, "built %s in %s\n", c.name, time.Since(started).Round(time.Second))
	return nil
}

// buildEnv is the environment of `go build`: static binaries, the build
// module's own go.mod and go.sum only (no workspace, no edits).
func buildEnv() []string {
	env := make([]string, 0, len(os.Environ())+4)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOFLAGS=") || strings.HasPrefix(kv, "GOWORK=") || strings.HasPrefix(kv, "CGO_ENABLED=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
}

func ldflagString(flags []string) string {
	parts := []string{"-s", "-w"}
	for i := 0; i+1 < len(flags); i += 2 {
		parts = append(parts, flags[i]+" '"+flags[i+1]+"'")
	}
	return strings.Join(parts, " ")
}

func listModule(ctx context.Context, modDir, path string) (modInfo, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-json", path)
	cmd.Dir = modDir
	cmd.Env = buildEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return modInfo{}, fmt.Errorf("go list -m %s in %s: %w: %s", path, modDir, err, strings.TrimSpace(stderr.String()))
	}
	var m modInfo
	if err := json.Unmarshal(out, &m); err != nil {
		return modInfo{}, fmt.Errorf("decoding go list -m %s: %w", path, err)
	}
	if m.Dir == "" {
		// Not downloaded yet: download it (the proxy is reachable) and ask again.
		dl := exec.CommandContext(ctx, "go", "mod", "download", path)
		dl.Dir = modDir
		dl.Env = buildEnv()
		if out, err := dl.CombinedOutput(); err != nil {
			return modInfo{}, fmt.Errorf("go mod download %s: %w: %s", path, err, out)
		}
		return listModule(ctx, modDir, path)
	}
	return m, nil
}

func goEnvVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("running `go env GOVERSION` (is Go on PATH?): %w", err)
	}
	return strings.TrimSpace(string(out)) + " " + runtime.GOOS + "/" + runtime.GOARCH, nil
}

// requiredVersion reads the version of path from a go.mod (single-line or block require).
func requiredVersion(goMod, path string) (string, error) {
	data, err := os.ReadFile(goMod)
	if err != nil {
		return "", fmt.Errorf("reading build module %s: %w", goMod, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(f) >= 2 && f[0] == path && strings.HasPrefix(f[1], "v") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s does not require %s", goMod, path)
}

// stampFor hashes everything that determines a binary: the build module's
// files, the package, the flags (except the build date) and the Go version.
func stampFor(modDir string, c component, goVersion string) (string, error) {
	h := sha256.New()
	entries, err := os.ReadDir(modDir)
	if err != nil {
		return "", fmt.Errorf("reading build module %s: %w", modDir, err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && (n == "go.mod" || n == "go.sum" || strings.HasSuffix(n, ".go")) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(modDir, n))
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", n, err)
		}
		fmt.Fprintf(h, "%s %d\n", n, len(data))
		h.Write(data)
	}
	fmt.Fprintf(h, "pkg=%s\nldflags=%s\ngo=%s\ncgo=0 trimpath\n", c.pkg, ldflagString(c.ldflags(modInfo{Version: "V"})), goVersion)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func upToDate(out, stamp string) bool {
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		return false
	}
	data, err := os.ReadFile(out + ".stamp")
	return err == nil && strings.TrimSpace(string(data)) == stamp
}

func writeKwokStages(ctx context.Context, modDir, out, stamp string) error {
	info, err := listModule(ctx, modDir, "sigs.k8s.io/kwok")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# kwok stages from sigs.k8s.io/kwok@%s kustomize/stage (generated by meshrev hack/cluster)\n", info.Version)
	for _, f := range kwokStageFiles {
		data, err := os.ReadFile(filepath.Join(info.Dir, "kustomize", "stage", f))
		if err != nil {
			return fmt.Errorf("reading kwok stage %s from the module cache: %w", f, err)
		}
		buf.WriteString("---\n")
		buf.Write(bytes.TrimSpace(data))
		buf.WriteString("\n")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(out), err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing kwok stages: %w", err)
	}
	if err := os.WriteFile(out+".stamp", []byte(stamp+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing kwok stages stamp: %w", err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, telling the user when it has to wait.
func lockFile(path string, logw io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening build lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		fmt.Fprintf(logw, "waiting for another build holding %s ...\n", path)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
