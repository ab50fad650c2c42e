package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// defaultRepository is where the chart's image.repository points.
	defaultRepository = "ghcr.io/meshrev/meshrev-manager"
	// managerPackage is the image's only program.
	managerPackage = "./cmd/meshrev-manager"
	// managerPath is where the binary sits in the image (the entrypoint).
	managerPath = "/meshrev-manager"
	// nonRootUID is the image's user and group: distroless' "nonroot", as
	// the chart's runAsNonRoot wants a numeric user to check.
	nonRootUID = 65532
	// versionPackage takes the -X stamps.
	versionPackage = "github.com/meshrev/meshrev/internal/version"
)

// imagePlatforms are the platforms of the image index.
var imagePlatforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// imageOptions configure buildImage.
type imageOptions struct {
	// Build is the version, revision and time stamped into the image.
	Build buildInfo
	// Repository is the image repository; the tag is Build.Version.
	Repository string
	// Layout is the OCI layout directory to write; it is replaced.
	Layout string
	// RefFile, when set, receives Ref() of the result.
	RefFile string
}

// imageResult is a built image index.
type imageResult struct {
	// Repository and Tag name the image; Digest is the index's.
	Repository, Tag string
	Digest          v1.Hash
	// Index is the image index as written to the layout.
	Index v1.ImageIndex
}

// Ref is repository:tag@digest, what a cluster pulls.
func (r imageResult) Ref() string {
	return r.Repository + ":" + r.Tag + "@" + r.Digest.String()
}

// buildImage builds meshrev-manager for every platform and assembles the
// image index, without a container daemon and without pulling a base: each
// image is one layer (the static binary, /etc/passwd naming the non-root
// user, a /tmp) on nothing.
func buildImage(ctx context.Context, o imageOptions) (imageResult, error) {
	if _, err := name.NewTag(o.Repository+":"+o.Build.Version, name.StrictValidation); err != nil {
		return imageResult{}, fmt.Errorf("image reference %s:%s: %w", o.Repository, o.Build.Version, err)
	}
	work, err := os.MkdirTemp("", "meshrev-image-")
	if err != nil {
		return imageResult{}, err
	}
	defer os.RemoveAll(work)

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range imagePlatforms {
		bin := filepath.Join(work, "meshrev-manager-"+p.OS+"-"+p.Architecture)
		if err := goBuild(ctx, o.Build, managerPackage, p.OS, p.Architecture, bin); err != nil {
			return imageResult{}, err
		}
		img, err := platformImage(o.Build, p, bin)
		if err != nil {
			return imageResult{}, fmt.Errorf("image for %s/%s: %w", p.OS, p.Architecture, err)
		}
		pl := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pl}})
	}
	idx = mutate.Annotations(idx, imageLabels(o.Build)).(v1.ImageIndex)
	digest, err := idx.Digest()
	if err != nil {
		return imageResult{}, fmt.Errorf("image index digest: %w", err)
	}

	if err := os.RemoveAll(o.Layout); err != nil {
		return imageResult{}, err
	}
	lp, err := layout.Write(o.Layout, empty.Index)
	if err != nil {
		return imageResult{}, fmt.Errorf("write OCI layout %s: %w", o.Layout, err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.Build.Version,
	})); err != nil {
		return imageResult{}, fmt.Errorf("write OCI layout %s: %w", o.Layout, err)
	}
	res := imageResult{Repository: o.Repository, Tag: o.Build.Version, Digest: digest, Index: idx}
	if o.RefFile != "" {
		if err := os.WriteFile(o.RefFile, []byte(res.Ref()+"\n"), 0o644); err != nil {
			return imageResult{}, err
		}
	}
	return res, nil
}

// imageLabels are the org.opencontainers.image.* labels of the image
// config and annotations of the manifests and index.
func imageLabels(b buildInfo) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "meshrev-manager",
		"org.opencontainers.image.description": "meshrev's admission webhooks and lifecycle controller",
		"org.opencontainers.image.source":      b.Source,
		"org.opencontainers.image.url":         b.Source,
		"org.opencontainers.image.version":     b.Version,
		"org.opencontainers.image.revision":    b.Revision,
		"org.opencontainers.image.created":     b.Created.Format("2006-01-02T15:04:05Z"),
	}
}

// platformImage is the single-layer image of one platform's binary.
func platformImage(b buildInfo, p v1.Platform, bin string) (v1.Image, error) {
	layerTar, err := rootfsTar(b, bin)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: b.Created}
	cfg := &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Created:      created,
		Config: v1.Config{
			User:       fmt.Sprintf("%d:%d", nonRootUID, nonRootUID),
			Entrypoint: []string{managerPath},
			WorkingDir: "/",
			Env:        []string{"PATH=/"},
			Labels:     imageLabels(b),
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   created,
			CreatedBy: "go run ./hack/release image (" + managerPackage + ", CGO_ENABLED=0 " + p.OS + "/" + p.Architecture + ")",
		},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, imageLabels(b)).(v1.Image), nil
}

// rootfsTar is the image's filesystem with every timestamp the commit's
// and every owner numeric.
func rootfsTar(b buildInfo, bin string) ([]byte, error) {
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRootUID, nonRootUID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonRootUID)
	entries := []struct {
		name string
		mode int64
		uid  int
		data []byte
		dir  bool
	}{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: nonRootUID, dir: true},
		{name: "meshrev-manager", mode: 0o755, data: binary},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: b.Created, Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// goBuild builds pkg as a static binary for goos/goarch with the version
// stamped; the flags make it a function of the source alone (no paths, no
// VCS state, no build ID, default micro-architecture levels).
func goBuild(ctx context.Context, b buildInfo, pkg, goos, goarch, out string) error {
	ldflags := strings.Join([]string{"-s", "-w", "-buildid=",
		"-X", versionPackage + ".Version=" + b.Version,
		"-X", versionPackage + ".Revision=" + b.Revision}, " ")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=-mod=readonly")
	root, err := repoRoot()
	if err != nil {
		return err
	}
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w\n%s", pkg, goos, goarch, err, stderr.String())
	}
	return nil
}

// repoRoot is the directory of the main module's go.mod.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the meshrev module")
	}
	return filepath.Dir(mod), nil
}

// semver is SemVer 2 without build metadata (a tag cannot hold "+").
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// checkVersion accepts what is at once an image tag, a chart version and
// a krew version (with a v in front).
func checkVersion(v string) error {
	if v == "" {
		return errors.New("--version is required")
	}
	if !semver.MatchString(v) {
		return fmt.Errorf("version %q is not SemVer MAJOR.MINOR.PATCH[-PRERELEASE] without a leading v", v)
	}
	return nil
}
