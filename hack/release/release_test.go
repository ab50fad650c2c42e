package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"sigs.k8s.io/yaml"
)

func TestCheckVersion(t *testing.T) {
	tests := map[string]struct {
		version string
		err     string
	}{
		"a release":                             {version: "0.1.0"},
		"a pre-release":                         {version: "1.2.3-rc.1"},
		"a development build":                   {version: "0.0.0-dev-0123456789ab-dirty"},
		"a leading v is for git tags only":      {version: "v0.1.0", err: "without a leading v"},
		"build metadata cannot be an image tag": {version: "0.1.0+abc", err: "not SemVer"},
		"no patch":                              {version: "0.1", err: "not SemVer"},
		"nothing":                               {err: "--version is required"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := checkVersion(tc.version)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.err)
		})
	}
}

func TestPackagedChartDefaultsToTheReleasedImage(t *testing.T) {
	chartDir := filepath.Join("..", "..", "charts", "meshrev")
	tests := map[string]struct {
		ref string
		err string
	}{
		"the image this release built": {
			ref: defaultRepository + ":0.0.0-test.1@sha256:" + strings.Repeat("a", 64),
		},
		"an image of another version is refused": {
			ref: defaultRepository + ":0.0.0-test.0@sha256:" + strings.Repeat("a", 64),
			err: "defaults to the image ghcr.io/meshrev/meshrev-manager:0.0.0-test.1, but this release built ghcr.io/meshrev/meshrev-manager:0.0.0-test.0",
		},
		"an image in another repository is refused": {
			ref: "registry.example.com/meshrev-manager:0.0.0-test.1",
			err: "but this release built registry.example.com/meshrev-manager:0.0.0-test.1",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			refFile := filepath.Join(dir, "image.ref")
			require.NoError(t, os.WriteFile(refFile, []byte(tc.ref+"\n"), 0o644))
			path, err := packageChart(chartOptions{Build: testBuild, Chart: chartDir, Out: dir, ImageRefFile: refFile})
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(dir, "meshrev-0.0.0-test.1.tgz"), path)
			ch, err := loader.Load(path)
			require.NoError(t, err)
			assert.Equal(t, "0.0.0-test.1", ch.Metadata.Version)
			assert.Equal(t, "0.0.0-test.1", ch.Metadata.AppVersion)
		})
	}
}

func TestCLIArchivesAreReproducible(t *testing.T) {
	a, err := tarGz(testBuild, pluginBinary, []byte("#!/bin/sh\necho meshrev\n"))
	require.NoError(t, err)
	b, err := tarGz(testBuild, pluginBinary, []byte("#!/bin/sh\necho meshrev\n"))
	require.NoError(t, err)
	assert.Equal(t, a, b)
	zr, err := gzip.NewReader(bytes.NewReader(a))
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	require.NoError(t, err)
	assert.Equal(t, pluginBinary, h.Name)
	assert.Equal(t, int64(0o755), h.Mode)
	assert.True(t, h.ModTime.Equal(testBuild.Created))
	_, err = tr.Next()
	assert.Equal(t, io.EOF, err, "one file")
}

func TestReleaseMetadata(t *testing.T) {
	dist := t.TempDir()
	for _, p := range cliPlatforms {
		data, err := tarGz(testBuild, pluginBinary, []byte(p.OS+"/"+p.Arch))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dist, archiveName(testBuild.Version, p.OS, p.Arch)), data, 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dist, "meshrev-0.0.0-test.1.tgz"), []byte("chart"), 0o644))
	ref := defaultRepository + ":0.0.0-test.1@sha256:" + strings.Repeat("b", 64)
	require.NoError(t, os.WriteFile(filepath.Join(dist, "image.ref"), []byte(ref+"\n"), 0o644))
	require.NoError(t, writeReleaseMetadata(krewOptions{Build: testBuild, Dist: dist, DownloadBase: defaultDownloadBase}))

	sums, err := os.ReadFile(filepath.Join(dist, "checksums.txt"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(sums)), "\n")
	require.Len(t, lines, 5, "four archives and the chart")
	for _, line := range lines {
		sum, name, ok := strings.Cut(line, "  ")
		require.True(t, ok, "sha256sum format: %q", line)
		got, err := sha256File(filepath.Join(dist, name))
		require.NoError(t, err)
		assert.Equal(t, got, sum, name)
	}

	var plugin krewPlugin
	data, err := os.ReadFile(filepath.Join(dist, "krew", "meshrev.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(data, &plugin))
	assert.Equal(t, "krew.googlecontainertools.github.com/v1alpha2", plugin.APIVersion)
	assert.Equal(t, "meshrev", plugin.Metadata["name"], "installed as kubectl meshrev")
	assert.Equal(t, "v0.0.0-test.1", plugin.Spec.Version, "krew wants a v")
	require.Len(t, plugin.Spec.Platforms, 4)
	for _, p := range plugin.Spec.Platforms {
		name := archiveName(testBuild.Version, p.Selector["matchLabels"]["os"], p.Selector["matchLabels"]["arch"])
		assert.Equal(t, defaultSource+"/releases/download/v0.0.0-test.1/"+name, p.URI)
		assert.Contains(t, string(sums), p.SHA256+"  "+name)
		assert.Equal(t, pluginBinary, p.Bin)
	}

	notes, err := os.ReadFile(filepath.Join(dist, "RELEASE_NOTES.md"))
	require.NoError(t, err)
	for _, v := range testedIstioVersions {
		assert.Contains(t, string(notes), "- Istio "+v+"\n")
	}
	assert.Contains(t, string(notes), ref)
	assert.Contains(t, string(notes), string(sums))
}

// TestIstioVersionsAreTheTestedOnes keeps the release notes' list honest:
// the first is the chart's default stable revision, and the e2e suite and
// the demo run every one of them.
func TestIstioVersionsAreTheTestedOnes(t *testing.T) {
	root := filepath.Join("..", "..")
	values, err := os.ReadFile(filepath.Join(root, "charts", "meshrev", "values.yaml"))
	require.NoError(t, err)
	var v struct {
		Mesh struct {
			Stable struct {
				Version string `json:"version"`
			} `json:"stable"`
		} `json:"mesh"`
	}
	require.NoError(t, yaml.Unmarshal(values, &v))
	assert.Equal(t, v.Mesh.Stable.Version, testedIstioVersions[0], "the chart's default stable revision")

	e2e, err := filepath.Glob(filepath.Join(root, "test", "e2e", "*_test.go"))
	require.NoError(t, err)
	require.NotEmpty(t, e2e)
	var suite strings.Builder
	for _, f := range e2e {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		suite.Write(data)
	}
	demo, err := os.ReadFile(filepath.Join(root, "hack", "demo.sh"))
	require.NoError(t, err)
	for _, version := range testedIstioVersions {
		assert.Contains(t, suite.String(), `"`+version+`"`, "the e2e suite runs Istio %s", version)
		assert.Contains(t, string(demo), version, "the demo runs Istio %s", version)
	}
}
