package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// chartOptions configure packageChart.
type chartOptions struct {
	// Build is the version stamped as the chart's version and appVersion.
	Build buildInfo
	// Chart is the chart's source directory.
	Chart string
	// Out is the directory the package is written to.
	Out string
	// ImageRefFile holds the image the release built (imageResult.Ref);
	// the packaged chart must default to it.
	ImageRefFile string
}

// packageChart does what `helm package --version V --app-version V` does
// (the same Helm SDK action), then renders the package with its default
// values and fails unless the manager Deployment runs the image this
// release built: a chart never defaults to an image its release did not
// produce.
func packageChart(o chartOptions) (string, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", err
	}
	p := action.NewPackage()
	p.Version = o.Build.Version
	p.AppVersion = o.Build.Version
	p.Destination = o.Out
	path, err := p.Run(o.Chart, nil)
	if err != nil {
		return "", fmt.Errorf("helm package %s: %w", o.Chart, err)
	}
	ref, err := os.ReadFile(o.ImageRefFile)
	if err != nil {
		return "", fmt.Errorf("the image of this release: %w (run release image first)", err)
	}
	want, _, _ := strings.Cut(strings.TrimSpace(string(ref)), "@")
	got, err := chartImage(path)
	if err != nil {
		return "", fmt.Errorf("render %s: %w", filepath.Base(path), err)
	}
	if got != want {
		return "", fmt.Errorf("%s defaults to the image %s, but this release built %s", filepath.Base(path), got, want)
	}
	return path, nil
}

// chartImage renders the chart (a directory or a package) client-side
// with its default values, as helm install --dry-run would, and returns
// the image of the manager Deployment.
func chartImage(chartPath string) (string, error) {
	ch, err := loader.Load(chartPath)
	if err != nil {
		return "", err
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.ReleaseName = "meshrev"
	install.Namespace = "meshrev-system"
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	kv, err := chartutil.ParseKubeVersion("v1.36.3")
	if err != nil {
		return "", err
	}
	install.KubeVersion = kv
	rel, err := install.Run(ch, nil)
	if err != nil {
		return "", err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(rel.Manifest)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return "", errors.New("no Deployment meshrev-manager in the rendered chart")
		}
		if err != nil {
			return "", err
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil {
			return "", err
		}
		if d.Kind != "Deployment" || d.Name != "meshrev-manager" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name == "manager" {
				return c.Image, nil
			}
		}
		return "", errors.New("the Deployment meshrev-manager has no container manager")
	}
}
