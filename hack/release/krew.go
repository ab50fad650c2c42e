package main

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

// defaultDownloadBase is where a release's files are published (GitHub
// releases of the repository).
const defaultDownloadBase = defaultSource + "/releases/download"

// testedIstioVersions are the Istio versions this release was tested
// with: the canary upgrade the e2e suite and the demo walk, from the
// chart's default stable revision to the canary. TestIstioVersionsAreTheTestedOnes
// keeps the list honest.
var testedIstioVersions = []string{"1.22.6", "1.23.6"}

// krewOptions configure writeReleaseMetadata.
type krewOptions struct {
	// Build is the release's version.
	Build buildInfo
	// Dist holds the archives, the packaged chart and image.ref; the
	// checksums, the krew manifest and the notes are written there.
	Dist string
	// DownloadBase is the URL the archives are published under.
	DownloadBase string
}

//go:embed NOTES.md.tmpl
var notesTemplate string

// krewPlugin is krew's plugin manifest (krew.googlecontainertools.github.com/v1alpha2).
type krewPlugin struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       krewSpec       `json:"spec"`
}

type krewSpec struct {
	Version          string         `json:"version"`
	Homepage         string         `json:"homepage"`
	ShortDescription string         `json:"shortDescription"`
	Description      string         `json:"description"`
	Platforms        []krewPlatform `json:"platforms"`
}

type krewPlatform struct {
	Selector map[string]map[string]string `json:"selector"`
	URI      string                       `json:"uri"`
	SHA256   string                       `json:"sha256"`
	Bin      string                       `json:"bin"`
}

// writeReleaseMetadata writes checksums.txt (sha256sum format) over the
// CLI archives and the chart, the krew manifest krew/meshrev.yaml
// and RELEASE_NOTES.md.
func writeReleaseMetadata(o krewOptions) error {
	v := o.Build.Version
	sums := map[string]string{}
	plugin := krewPlugin{
		APIVersion: "krew.googlecontainertools.github.com/v1alpha2",
		Kind:       "Plugin",
		Metadata:   map[string]any{"name": "meshrev"},
		Spec: krewSpec{
			Version:          "v" + v,
			Homepage:         o.Build.Source,
			ShortDescription: "Canary upgrades of the Istio control plane by revision",
			Description: "meshrev walks a revision-based canary upgrade of the Istio control plane:\n" +
				"deploy a canary, switch namespaces to it, redeploy and verify, promote,\n" +
				"upgrade the data plane and unpublish the old revision (or roll back).\n" +
				"It needs meshrev's manager and chart in the cluster.\n",
		},
	}
	for _, p := range cliPlatforms {
		name := archiveName(v, p.OS, p.Arch)
		sum, err := sha256File(filepath.Join(o.Dist, name))
		if err != nil {
			return fmt.Errorf("the %s/%s archive: %w (run release cli first)", p.OS, p.Arch, err)
		}
		sums[name] = sum
		plugin.Spec.Platforms = append(plugin.Spec.Platforms, krewPlatform{
			Selector: map[string]map[string]string{"matchLabels": {"os": p.OS, "arch": p.Arch}},
			URI:      fmt.Sprintf("%s/v%s/%s", strings.TrimSuffix(o.DownloadBase, "/"), v, name),
			SHA256:   sum,
			Bin:      pluginBinary,
		})
	}
	chartName := "meshrev-" + v + ".tgz"
	sum, err := sha256File(filepath.Join(o.Dist, chartName))
	if err != nil {
		return fmt.Errorf("the chart: %w (run release chart first)", err)
	}
	sums[chartName] = sum

	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	var checksums strings.Builder
	for _, n := range names {
		fmt.Fprintf(&checksums, "%s  %s\n", sums[n], n)
	}
	if err := os.WriteFile(filepath.Join(o.Dist, "checksums.txt"), []byte(checksums.String()), 0o644); err != nil {
		return err
	}

	manifest, err := yaml.Marshal(plugin)
	if err != nil {
		return err
	}
	// krew wants the manifest named after the plugin.
	if err := os.MkdirAll(filepath.Join(o.Dist, "krew"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.Dist, "krew", "meshrev.yaml"), manifest, 0o644); err != nil {
		return err
	}

	ref, err := os.ReadFile(filepath.Join(o.Dist, "image.ref"))
	if err != nil {
		return fmt.Errorf("the image: %w (run release image first)", err)
	}
	tmpl, err := template.New("notes").Parse(notesTemplate)
	if err != nil {
		return err
	}
	var notes bytes.Buffer
	err = tmpl.Execute(&notes, map[string]any{
		"Version":   v,
		"Revision":  o.Build.Revision,
		"Source":    o.Build.Source,
		"ImageRef":  strings.TrimSpace(string(ref)),
		"Chart":     chartName,
		"Checksums": checksums.String(),
		"Istio":     testedIstioVersions,
	})
	if err != nil {
		return fmt.Errorf("release notes: %w", err)
	}
	return os.WriteFile(filepath.Join(o.Dist, "RELEASE_NOTES.md"), notes.Bytes(), 0o644)
}

// sha256File is the hex SHA-256 of a file.
func sha256File(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
