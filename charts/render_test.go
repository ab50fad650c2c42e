package charts

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden from the rendered chart")

const (
	// chartDir is the chart, relative to this package.
	chartDir = "meshrev"
	// releaseNamespace is where the tests install the chart, as the docs do.
	releaseNamespace = "meshrev-system"
	// valuesDir holds one values file per golden case.
	valuesDir = "testdata/values"
	// goldenDir holds the rendered chart per case.
	goldenDir = "testdata/golden"
)

// rendered is one client-side install of the chart.
type rendered struct {
	// Release is what Helm would install.
	Release *release.Release
	// Objects are the rendered objects, hooks included, decoded strictly into
	// their Go types (unknown fields are errors).
	Objects []client.Object
}

// loadChart loads the chart from its directory.
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	require.NoError(t, err)
	return c
}

// renderChart installs the chart client-side (as helm install --dry-run
// without a cluster: lookup finds nothing) with the given values.
func renderChart(t *testing.T, values map[string]any) (*rendered, error) {
	t.Helper()
	cfg := &action.Configuration{Log: t.Logf}
	install := action.NewInstall(cfg)
	install.ReleaseName = "meshrev"
	install.Namespace = releaseNamespace
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	kv, err := chartutil.ParseKubeVersion("v1.36.3")
	require.NoError(t, err)
	install.KubeVersion = kv
	rel, err := install.Run(loadChart(t), values)
	if err != nil {
		return nil, err
	}
	r := &rendered{Release: rel}
	docs := splitManifests(t, rel.Manifest)
	for _, h := range rel.Hooks {
		docs = append(docs, splitManifests(t, h.Manifest)...)
	}
	for _, d := range docs {
		r.Objects = append(r.Objects, decodeStrict(t, d))
	}
	return r, nil
}

// mustRender is renderChart that fails the test on a render error.
func mustRender(t *testing.T, values map[string]any) *rendered {
	t.Helper()
	r, err := renderChart(t, values)
	require.NoError(t, err)
	return r
}

// splitManifests splits a multi-document YAML stream, dropping empty documents.
func splitManifests(t *testing.T, manifest string) [][]byte {
	t.Helper()
	var out [][]byte
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		var probe map[string]any
		require.NoError(t, yaml.Unmarshal(doc, &probe))
		if len(probe) == 0 {
			continue
		}
		out = append(out, doc)
	}
}

// testScheme knows every kind the chart renders.
var testScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// decodeStrict decodes one object into its Go type; a field the type does not
// know (a typo in a template) is an error.
func decodeStrict(t *testing.T, doc []byte) client.Object {
	t.Helper()
	codecs := serializer.NewCodecFactory(testScheme, serializer.EnableStrict)
	obj, gvk, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
	require.NoError(t, err, "decode rendered object:\n%s", doc)
	o, ok := obj.(client.Object)
	require.True(t, ok, "%s is not an object", gvk)
	o.GetObjectKind().SetGroupVersionKind(*gvk)
	return o
}

// find returns the rendered object of that kind and name, or nil.
func find[T client.Object](r *rendered, name string) T {
	var zero T
	for _, o := range r.Objects {
		if typed, ok := o.(T); ok && o.GetName() == name {
			return typed
		}
	}
	return zero
}

// kinds lists "Kind/name" of every rendered object, sorted.
func (r *rendered) kinds() []string {
	var out []string
	for _, o := range r.Objects {
		out = append(out, o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

// golden is the text a case is compared on: the manifest, the hooks and the
// notes, in Helm's order. The default injection templates belong to the
// injector (files/*.tmpl): they are replaced by a marker, with the checksum
// annotation derived from them, so that editing a template does not make every
// golden stale; TestTemplatesConfigMap checks that the ConfigMap carries them
// byte for byte.
func golden(rel *release.Release) []byte {
	var b bytes.Buffer
	b.WriteString("# Rendered by charts/render_test.go; refresh with: go test ./charts/ -run TestGolden -update\n")
	b.WriteString(strings.TrimSpace(rel.Manifest))
	b.WriteString("\n")
	for _, h := range rel.Hooks {
		fmt.Fprintf(&b, "---\n# Hook %s (%s)\n%s\n", h.Name, strings.Join(hookEvents(h), ","), strings.TrimSpace(h.Manifest))
	}
	b.WriteString("---\n# NOTES.txt\n")
	for _, line := range strings.Split(strings.TrimSpace(rel.Info.Notes), "\n") {
		b.WriteString(strings.TrimRight("# "+line, " ") + "\n")
	}
	return []byte(maskTemplates(b.String()))
}

// maskTemplates replaces the default templates' text and checksum by markers.
func maskTemplates(out string) string {
	sidecar, gateway := DefaultTemplates()
	for name, text := range map[string]string{"sidecar": sidecar, "gateway": gateway} {
		indented := "    " + strings.ReplaceAll(strings.TrimSuffix(text, "\n"), "\n", "\n    ")
		out = strings.ReplaceAll(out, indented, "    # (files/"+name+".tmpl, as embedded by charts.DefaultTemplates)")
	}
	return checksumRE.ReplaceAllString(out, "$1 (sha256 of the rendered ConfigMap)")
}

var checksumRE = regexp.MustCompile(`(checksum/templates:) [0-9a-f]{64}`)

func hookEvents(h *release.Hook) []string {
	var out []string
	for _, e := range h.Events {
		out = append(out, string(e))
	}
	return out
}

// readValues reads a values file of testdata/values.
func readValues(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(valuesDir, name+".yaml"))
	require.NoError(t, err)
	v, err := chartutil.ReadValues(b)
	require.NoError(t, err)
	return v.AsMap()
}

// TestGolden renders the chart for the default values and for every values
// file under testdata/values, and compares with testdata/golden/<case>.yaml.
func TestGolden(t *testing.T) {
	cases := map[string]string{"default": ""}
	entries, err := os.ReadDir(valuesDir)
	require.NoError(t, err)
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".yaml")
		require.NotEqual(t, "default", name, "testdata/values/default.yaml would shadow the default-values case")
		cases[name] = name
	}
	require.Contains(t, cases, "cert-manager", "the cert-manager mode needs a golden case")

	if *update {
		require.NoError(t, os.MkdirAll(goldenDir, 0o755))
	}
	for name, valuesFile := range cases {
		t.Run(name, func(t *testing.T) {
			var values map[string]any
			if valuesFile != "" {
				values = readValues(t, valuesFile)
			}
			got := golden(mustRender(t, values).Release)
			path := filepath.Join(goldenDir, name+".yaml")
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
				return
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "missing golden file: run go test ./charts/ -run TestGolden -update")
			require.Equal(t, string(want), string(got), "%s is stale: run go test ./charts/ -run TestGolden -update and review the diff", path)
		})
	}

	// A golden file no case produces is stale too (a removed values file).
	goldens, err := os.ReadDir(goldenDir)
	require.NoError(t, err)
	for _, g := range goldens {
		name := strings.TrimSuffix(g.Name(), ".yaml")
		if _, ok := cases[name]; !ok {
			if *update {
				require.NoError(t, os.Remove(filepath.Join(goldenDir, g.Name())))
				continue
			}
			t.Errorf("%s/%s is produced by no case: delete it or run go test ./charts/ -run TestGolden -update", goldenDir, g.Name())
		}
	}
}
