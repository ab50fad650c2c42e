package compat

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// istioModuleDir is where the go command put the pinned istio.io/istio.
func istioModuleDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	require.NoError(t, err, "go list -m istio.io/istio")
	dir := strings.TrimSpace(string(out))
	require.NotEmpty(t, dir, "istio.io/istio is not downloaded: run go mod download in test/compat")
	return dir
}

// input is one pod put through both injectors.
type input struct {
	// Name says where the pod comes from (corpus file and document, or the
	// generator's seed and index).
	Name string
	Pod  []byte
	// Features are what the pod exercises, for the per-feature table
	// (generated pods only; the corpus is reported as a whole).
	Features []string
}

// corpusInputs returns every pod of Istio's own injection corpus
// (pkg/kube/inject/testdata/inject) that its TestInjection runs with the
// default settings: the explicit cases that set no flags, values file, mesh
// config or setup, and the files it discovers on its own. Which cases those
// are is read from inject_test.go itself, so that the list follows the
// pinned module.
func corpusInputs(t testing.TB) []input {
	t.Helper()
	dir := filepath.Join(istioModuleDir(t), "pkg", "kube", "inject")
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(dir, "inject_test.go"), nil, 0)
	require.NoError(t, err)

	var defaults []string
	tested := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if ok && fn.Name.Name != "TestInjection" {
			return false
		}
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		fields := map[string]ast.Expr{}
		for _, e := range lit.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			if id, ok := kv.Key.(*ast.Ident); ok {
				fields[id.Name] = kv.Value
			}
		}
		in, ok := stringLit(fields["in"])
		if !ok {
			return true
		}
		want, _ := stringLit(fields["want"])
		if want == "" {
			want = in + ".injected"
		}
		tested[want] = true
		for _, k := range []string{"setFlags", "inFilePath", "mesh", "setup"} {
			if _, set := fields[k]; set {
				return false
			}
		}
		defaults = append(defaults, in)
		return false
	})
	require.NotEmpty(t, tested, "no TestInjection cases found in %s: the corpus reader does not match the pinned Istio", dir)
	entries, err := os.ReadDir(filepath.Join(dir, "testdata", "inject"))
	require.NoError(t, err)
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".iop.yaml") || tested[n+".injected"] {
			continue
		}
		defaults = append(defaults, n)
	}
	slices.Sort(defaults)
	defaults = slices.Compact(defaults)

	var out []input
	for _, name := range defaults {
		raw, err := os.ReadFile(filepath.Join(dir, "testdata", "inject", name))
		require.NoError(t, err)
		for j, doc := range splitYAML(raw) {
			pods, err := podsOf(doc)
			require.NoError(t, err, "%s document %d", name, j)
			for k, p := range pods {
				b, err := json.Marshal(p)
				require.NoError(t, err)
				out = append(out, input{Name: fmt.Sprintf("%s#%d.%d", name, j, k), Pod: b})
			}
		}
	}
	return out
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

func splitYAML(b []byte) [][]byte {
	var out [][]byte
	for _, part := range strings.Split(string(b), "\n---") {
		if strings.TrimSpace(part) != "" {
			out = append(out, []byte(part))
		}
	}
	return out
}

// podsOf turns a workload document into the pods its controller would create,
// with the owner reference Istio's own tests simulate (objectToPod).
func podsOf(doc []byte) ([]*corev1.Pod, error) {
	var head struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return nil, err
	}
	owned := func(tpl corev1.PodTemplateSpec, name, apiVersion, kind string) *corev1.Pod {
		tpl.ObjectMeta = ownedBy(tpl.ObjectMeta, name, apiVersion, kind)
		return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
	}
	switch head.Kind {
	case "Pod":
		var p corev1.Pod
		return []*corev1.Pod{&p}, yaml.Unmarshal(doc, &p)
	case "Deployment":
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil {
			return nil, err
		}
		p := owned(d.Spec.Template, d.Name+"-fake", "apps/v1", "ReplicaSet")
		p.GenerateName += "-"
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels["pod-template-hash"] = "fake"
		return []*corev1.Pod{p}, nil
	case "DaemonSet", "ReplicaSet", "StatefulSet":
		var o struct {
			metav1.ObjectMeta `json:"metadata"`
			Spec              struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, err
		}
		return []*corev1.Pod{owned(o.Spec.Template, o.Name, "apps/v1", head.Kind)}, nil
	case "Job":
		var j batchv1.Job
		if err := yaml.Unmarshal(doc, &j); err != nil {
			return nil, err
		}
		return []*corev1.Pod{owned(j.Spec.Template, j.Name, "batch/v1", "Job")}, nil
	case "CronJob":
		var c batchv1.CronJob
		if err := yaml.Unmarshal(doc, &c); err != nil {
			return nil, err
		}
		return []*corev1.Pod{owned(c.Spec.JobTemplate.Spec.Template, c.Name, "batch/v1", "CronJob")}, nil
	case "ReplicationController", "DeploymentConfig":
		var o struct {
			metav1.ObjectMeta `json:"metadata"`
			Spec              struct {
				Template *corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, err
		}
		if o.Spec.Template == nil {
			return nil, nil
		}
		apiVersion := "v1"
		if head.Kind == "DeploymentConfig" {
			apiVersion = "apps.openshift.io/v1"
		}
		return []*corev1.Pod{owned(*o.Spec.Template, o.Name, apiVersion, head.Kind)}, nil
	case "List":
		var out []*corev1.Pod
		for _, it := range head.Items {
			ps, err := podsOf(it)
			if err != nil {
				return nil, err
			}
			out = append(out, ps...)
		}
		return out, nil
	}
	return nil, nil // not a workload (a Service, a ConfigMap): nothing is injected
}

func ownedBy(m metav1.ObjectMeta, name, apiVersion, kind string) metav1.ObjectMeta {
	m.GenerateName = name
	m.OwnerReferences = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, Controller: new(true)}}
	return m
}
