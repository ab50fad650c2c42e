package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// cliPlatforms are the platforms the CLI is released for.
var cliPlatforms = []struct{ OS, Arch string }{
	{"linux", "amd64"}, {"linux", "arm64"}, {"darwin", "amd64"}, {"darwin", "arm64"},
}

const (
	// cliPackage is the CLI's main package.
	cliPackage = "./cmd/meshrev"
	// pluginBinary is the CLI's name as a kubectl plugin.
	pluginBinary = "kubectl-meshrev"
)

// cliOptions configure buildCLIArchives.
type cliOptions struct {
	// Build is the version stamped into the binaries.
	Build buildInfo
	// Out is the directory the archives are written to.
	Out string
}

// cliArchive is one platform's archive.
type cliArchive struct {
	OS, Arch string
	// Path is the archive's path.
	Path string
}

// archiveName is the file name of a platform's CLI archive.
func archiveName(version, goos, goarch string) string {
	return fmt.Sprintf("%s_%s_%s_%s.tar.gz", pluginBinary, version, goos, goarch)
}

// buildCLIArchives builds the CLI for every platform and packs each binary
// as kubectl-meshrev in a tar.gz whose bytes depend on the source alone.
func buildCLIArchives(ctx context.Context, o cliOptions) ([]cliArchive, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "meshrev-cli-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	var out []cliArchive
	for _, p := range cliPlatforms {
		bin := filepath.Join(work, pluginBinary+"-"+p.OS+"-"+p.Arch)
		if err := goBuild(ctx, o.Build, cliPackage, p.OS, p.Arch, bin); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		archive, err := tarGz(o.Build, pluginBinary, data)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(o.Out, archiveName(o.Build.Version, p.OS, p.Arch))
		if err := os.WriteFile(path, archive, 0o644); err != nil {
			return nil, err
		}
		out = append(out, cliArchive{OS: p.OS, Arch: p.Arch, Path: path})
	}
	return out, nil
}

// tarGz is a gzipped tar holding one executable, timestamps the commit's.
func tarGz(b buildInfo, name string, data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // no name, no mtime in the gzip header
	tw := tar.NewWriter(zw)
	h := &tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), ModTime: b.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
