package webhook

import (
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current output")

// injectCase is one testdata/inject/<name>.case.yaml.
type injectCase struct {
	// Description says what the case proves; it heads the golden file.
	Description string `json:"description"`
	// Namespace of the pod, and its labels as the cache holds them.
	Namespace       string            `json:"namespace"`
	NamespaceLabels map[string]string `json:"namespaceLabels"`
	// NamespaceUnknown leaves the namespace out of the cache.
	NamespaceUnknown bool `json:"namespaceUnknown"`
	// Mesh is the Mesh spec; absent means no Mesh.
	Mesh *v1alpha1.MeshSpec `json:"mesh"`
	// Pod inline, or PodFile relative to testdata/inject.
	Pod     json.RawMessage `json:"pod"`
	PodFile string          `json:"podFile"`
	// PodLabels are merged into the pod's labels; HostNetwork sets spec.hostNetwork.
	PodLabels   map[string]string `json:"podLabels"`
	HostNetwork bool              `json:"hostNetwork"`
	// Reinvoke sends the injected pod again (with ReinvokeLabels merged
	// into its labels); the golden is the second outcome.
	Reinvoke       bool              `json:"reinvoke"`
	ReinvokeLabels map[string]string `json:"reinvokeLabels"`
}

// goldenResponse is what a golden records of the AdmissionReview response.
type goldenResponse struct {
	Allowed         bool     `json:"allowed"`
	Code            int32    `json:"code,omitempty"`
	Message         string   `json:"message,omitempty"`
	Warnings        []string `json:"warnings,omitempty"`
	PatchOperations int      `json:"patchOperations"`
}

const injectDir = "testdata/inject"

func TestInjectGolden(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join(injectDir, "*.case.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, cases)
	want := map[string]bool{}
	for _, file := range cases {
		name := strings.TrimSuffix(filepath.Base(file), ".case.yaml")
		golden := filepath.Join(injectDir, name+".golden.yaml")
		want[golden] = true
		t.Run(name, func(t *testing.T) {
			got := runInjectCase(t, file)
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644))
				return
			}
			exp, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden file: run go test ./webhook -run TestInjectGolden -update")
			assert.Equal(t, string(exp), string(got), "stale golden %s: review the diff, then run go test ./webhook -run TestInjectGolden -update", golden)
		})
	}
	goldens, err := filepath.Glob(filepath.Join(injectDir, "*.golden.yaml"))
	require.NoError(t, err)
	for _, g := range goldens {
		if want[g] {
			continue
		}
		if *update {
			require.NoError(t, os.Remove(g))
			continue
		}
		t.Errorf("orphan golden %s: no %s.case.yaml produces it; delete it or run with -update", g, strings.TrimSuffix(filepath.Base(g), ".golden.yaml"))
	}
}

func runInjectCase(t *testing.T, file string) []byte {
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	var c injectCase
	require.NoError(t, yaml.UnmarshalStrict(raw, &c), "case file %s", file)
	require.NotEmpty(t, c.Description, "case %s needs a description", file)
	require.NotEmpty(t, c.Namespace)

	pod := c.Pod
	if c.PodFile != "" {
		require.Empty(t, pod, "case has both pod and podFile")
		b, err := os.ReadFile(filepath.Join(injectDir, c.PodFile))
		require.NoError(t, err)
		pod, err = yaml.YAMLToJSON(b)
		require.NoError(t, err)
	}
	require.NotEmpty(t, pod, "case has no pod")
	pod = editPod(t, pod, c.PodLabels, c.HostNetwork)

	state := &fixedState{mesh: meshOf(c.Mesh), namespaces: map[string]map[string]string{}}
	if !c.NamespaceUnknown {
		state.namespaces[c.Namespace] = c.NamespaceLabels
	}
	inj := newTestInjector(t, state)

	first, resp := injectOnce(t, inj, c.Namespace, pod)
	out := first
	if c.Reinvoke {
		again := editPod(t, first, c.ReinvokeLabels, false)
		out, resp = injectOnce(t, inj, c.Namespace, again)
		if len(c.ReinvokeLabels) == 0 {
			assert.JSONEq(t, string(first), string(out), "re-invocation changed the pod")
		}
	}
	assertSingleInjection(t, out)

	var podObj any
	require.NoError(t, json.Unmarshal(out, &podObj))
	doc, err := json.Marshal(map[string]any{"description": c.Description, "response": resp, "pod": podObj})
	require.NoError(t, err)
	y, err := yaml.JSONToYAML(doc)
	require.NoError(t, err)
	return y
}

// injectOnce sends pod through the injector and returns the admitted pod
// (unchanged when refused) and the response summary.
func injectOnce(t *testing.T, inj *Injector, ns string, pod []byte) ([]byte, goldenResponse) {
	code, body, review := serve(t, inj, reviewFor(t, ns, pod))
	require.Equal(t, 200, code, "body: %s", body)
	require.NotNil(t, review.Response)
	r := review.Response
	assert.Equal(t, "0d1f4e7a-3c5b-4a9e-8f2d-1b6c7a8e9f00", string(r.UID), "response must carry the request's uid")
	g := goldenResponse{Allowed: r.Allowed, Warnings: r.Warnings}
	if r.Result != nil {
		g.Code, g.Message = r.Result.Code, r.Result.Message
	}
	if !r.Allowed {
		assert.Empty(t, r.Patch, "a refused pod gets no patch")
		return pod, g
	}
	if len(r.Patch) > 0 {
		require.NotNil(t, r.PatchType)
		assert.Equal(t, "JSONPatch", string(*r.PatchType))
		var ops []map[string]any
		require.NoError(t, json.Unmarshal(r.Patch, &ops))
		g.PatchOperations = len(ops)
	}
	return applyPatch(t, pod, r.Patch), g
}

// editPod merges labels into the pod's and sets hostNetwork.
func editPod(t *testing.T, pod []byte, labels map[string]string, hostNetwork bool) []byte {
	if len(labels) == 0 && !hostNetwork {
		return pod
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal(pod, &m))
	meta, _ := m["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		m["metadata"] = meta
	}
	l, _ := meta["labels"].(map[string]any)
	if l == nil {
		l = map[string]any{}
	}
	for k, v := range labels {
		l[k] = v
	}
	meta["labels"] = l
	if hostNetwork {
		m["spec"].(map[string]any)["hostNetwork"] = true
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

// assertSingleInjection checks what the status annotation claims: each
// injected name once, and names unique in the pod.
func assertSingleInjection(t *testing.T, b []byte) {
	pod := mustPod(t, b)
	count := map[string]int{}
	for _, c := range pod.Spec.Containers {
		count["container/"+c.Name]++
	}
	for _, c := range pod.Spec.InitContainers {
		count["init/"+c.Name]++
	}
	for _, v := range pod.Spec.Volumes {
		count["volume/"+v.Name]++
	}
	for _, k := range slices.Sorted(maps.Keys(count)) {
		assert.Equal(t, 1, count[k], "%s appears %d times", k, count[k])
	}
	st, ok := pod.Annotations[revisions.AnnotationStatus]
	if !ok {
		assert.NotContains(t, pod.Labels, revisions.LabelRevision, "revision label without status annotation")
		return
	}
	var s revisions.InjectionStatus
	require.NoError(t, json.Unmarshal([]byte(st), &s))
	assert.Equal(t, s.Revision, pod.Labels[revisions.LabelRevision])
	assert.Equal(t, s.Revision, pod.Annotations[revisions.AnnotationRev])
	for _, n := range s.Containers {
		assert.Equal(t, 1, count["container/"+n], "status lists container %s", n)
	}
	for _, n := range s.InitContainers {
		assert.Equal(t, 1, count["init/"+n], "status lists init container %s", n)
	}
	for _, n := range s.Volumes {
		assert.Equal(t, 1, count["volume/"+n], "status lists volume %s", n)
	}
}
