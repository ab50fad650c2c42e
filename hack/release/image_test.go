package main

import (
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"archive/tar"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testBuild is the build every test image is stamped with.
var testBuild = buildInfo{
	Version:  "0.0.0-test.1",
	Revision: "0123456789abcdef0123456789abcdef01234567",
	Created:  time.Unix(1_780_000_000, 0).UTC(),
	Source:   defaultSource,
}

// TestImage builds the manager image twice, as make image does, and checks
// what a cluster would pull: one index with both platforms, static binaries
// that run and print the stamped version, a non-root user, the OCI labels,
// and the same digest both times.
func TestImage(t *testing.T) {
	// No deadline of its own: a first build on a cold cache compiles every
	// dependency for two platforms; go test -timeout bounds it.
	ctx := t.Context()
	dir := t.TempDir()
	opts := imageOptions{Build: testBuild, Repository: "registry.example.com/meshrev/meshrev-manager",
		Layout: filepath.Join(dir, "first"), RefFile: filepath.Join(dir, "image.ref")}
	start := time.Now()
	first, err := buildImage(ctx, opts)
	require.NoError(t, err)
	t.Logf("first build: %s (%s)", first.Ref(), time.Since(start).Round(time.Millisecond))

	// Everything below reads the layout on disk, not the index in memory.
	idx, err := builtIndex(opts.Layout)
	require.NoError(t, err)
	digest, err := idx.Digest()
	require.NoError(t, err)
	assert.Equal(t, first.Digest, digest, "the layout holds the index that was reported")
	ref, err := os.ReadFile(opts.RefFile)
	require.NoError(t, err)
	assert.Equal(t, "registry.example.com/meshrev/meshrev-manager:0.0.0-test.1@"+digest.String()+"\n", string(ref))

	t.Run("the index holds linux/amd64 and linux/arm64", func(t *testing.T) {
		mt, err := idx.MediaType()
		require.NoError(t, err)
		assert.Equal(t, types.OCIImageIndex, mt)
		m, err := idx.IndexManifest()
		require.NoError(t, err)
		var platforms []string
		for _, d := range m.Manifests {
			require.NotNil(t, d.Platform)
			platforms = append(platforms, d.Platform.String())
			assert.Equal(t, types.OCIManifestSchema1, d.MediaType)
		}
		assert.Equal(t, []string{"linux/amd64", "linux/arm64"}, platforms)
		assert.Equal(t, "0.0.0-test.1", m.Annotations["org.opencontainers.image.version"])
	})

	for _, p := range imagePlatforms {
		t.Run(p.String()+" is a non-root static binary with the OCI labels", func(t *testing.T) {
			img := platformImageOf(t, idx, p)
			cfg, err := img.ConfigFile()
			require.NoError(t, err)
			assert.Equal(t, p.OS, cfg.OS)
			assert.Equal(t, p.Architecture, cfg.Architecture)
			assert.Equal(t, "65532:65532", cfg.Config.User, "a numeric non-root user, so runAsNonRoot can check it")
			assert.Equal(t, []string{managerPath}, cfg.Config.Entrypoint)
			assert.Equal(t, testBuild.Created, cfg.Created.Time.UTC())
			for k, v := range map[string]string{
				"org.opencontainers.image.source":   defaultSource,
				"org.opencontainers.image.version":  testBuild.Version,
				"org.opencontainers.image.revision": testBuild.Revision,
				"org.opencontainers.image.created":  "2026-05-28T20:26:40Z",
			} {
				assert.Equal(t, v, cfg.Config.Labels[k], k)
			}
			layers, err := img.Layers()
			require.NoError(t, err)
			assert.Len(t, layers, 1, "no base image: one layer")

			files := extract(t, img)
			require.Contains(t, files, "meshrev-manager", "the binary at %s", managerPath)
			bin := files["meshrev-manager"]
			assert.Equal(t, int64(0o755), bin.hdr.Mode)
			f, err := elf.NewFile(bytes.NewReader(bin.data))
			require.NoError(t, err)
			want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
			assert.Equal(t, want, f.Machine)
			for _, prog := range f.Progs {
				assert.NotEqual(t, elf.PT_INTERP, prog.Type, "statically linked: no dynamic loader to ask for")
			}
			require.Contains(t, files, "etc/passwd")
			assert.Contains(t, string(files["etc/passwd"].data), "nonroot:x:65532:65532:")
			require.Contains(t, files, "home/nonroot")
			assert.Equal(t, 65532, files["home/nonroot"].hdr.Uid, "the user's home is its own")
			for name, f := range files {
				assert.True(t, f.hdr.ModTime.Equal(testBuild.Created), "%s has the commit's time, not the build's", name)
			}
		})
	}

	t.Run("the amd64 binary from the layers runs and prints the stamped version", func(t *testing.T) {
		require.Equal(t, "linux", runtime.GOOS, "the image's binaries run on linux")
		files := extract(t, platformImageOf(t, idx, v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
		root := t.TempDir()
		for name, f := range files {
			path := filepath.Join(root, name)
			if f.hdr.Typeflag == tar.TypeDir {
				require.NoError(t, os.MkdirAll(path, 0o755))
				continue
			}
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			require.NoError(t, os.WriteFile(path, f.data, os.FileMode(f.hdr.Mode)))
		}
		out, err := exec.CommandContext(ctx, filepath.Join(root, managerPath), "--version").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, "meshrev-manager 0.0.0-test.1 (revision 0123456789abcdef0123456789abcdef01234567, "+runtime.Version()+", linux/"+runtime.GOARCH+")\n", string(out))
	})

	t.Run("a second build of the same source has the same digest", func(t *testing.T) {
		again := opts
		again.Layout, again.RefFile = filepath.Join(dir, "second"), ""
		start := time.Now()
		second, err := buildImage(ctx, again)
		require.NoError(t, err)
		t.Logf("second build: %s (%s)", second.Ref(), time.Since(start).Round(time.Millisecond))
		assert.Equal(t, first.Digest, second.Digest)
		a, err := os.ReadFile(filepath.Join(opts.Layout, "index.json"))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(again.Layout, "index.json"))
		require.NoError(t, err)
		assert.Equal(t, string(a), string(b))
	})
}

// platformImageOf is the image of platform p in the index.
func platformImageOf(t *testing.T, idx v1.ImageIndex, p v1.Platform) v1.Image {
	t.Helper()
	m, err := idx.IndexManifest()
	require.NoError(t, err)
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.Equals(p) {
			img, err := idx.Image(d.Digest)
			require.NoError(t, err)
			return img
		}
	}
	t.Fatalf("no %s image in the index", p)
	return nil
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

// extract is the image's flattened filesystem by path.
func extract(t *testing.T, img v1.Image) map[string]tarFile {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]tarFile{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[strings.Trim(h.Name, "/")] = tarFile{hdr: h, data: data}
	}
}
