// Package compat is meshrev's differential compatibility suite: it runs
// Istio's own sidecar injector (istio.io/istio/pkg/kube/inject, pinned in this
// module's go.mod, with the default chart settings of the same module) and
// meshrev's injector in-process on the same pods, in classic and native
// sidecar modes, and compares the injected pods and the refusals.
//
// It is a module of its own so that meshrev's dependency graph stays as it
// is. Run it with `make test-compat`; -update rewrites the match-rate floors
// (testdata/floors.json) that the suite enforces, -v prints every difference.
package compat

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	update    = flag.Bool("update", false, "rewrite testdata/floors.json with the measured match rates")
	generated = flag.Int("generated", 1000, "how many generated pods to compare")
	dump      = flag.String("dump", "", "print both injectors' pods (normalised, as JSON) for the inputs whose name contains this")
	showDiffs = flag.Int("show", 3, "how many differing inputs to print (with their differences) per set and mode")
)

// revisionName and the version are the same for both injectors.
const revisionName = "default"

var (
	metaAdmissionReview = metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}
	podGVK              = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	podGVR              = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
)

func applyPatch(doc, patch []byte) ([]byte, error) {
	if len(patch) == 0 {
		return doc, nil
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, err
	}
	return p.Apply(doc)
}

func sortStrings(s []string) { sort.Strings(s) }

// result is the tally of one input set in one mode.
type result struct {
	Total, Same int
	Aspects     map[string]int
	// ByFeature counts, per generator feature, the inputs with it and the
	// identical ones among them.
	ByFeature map[string][2]int
	Examples  []string
}

func (r result) rate() float64 {
	if r.Total == 0 {
		return 0
	}
	return float64(r.Same) / float64(r.Total)
}

func TestCompat(t *testing.T) {
	istio := map[bool]*istioInjector{false: newIstioInjector(t, revisionName, false), true: newIstioInjector(t, revisionName, true)}
	version := istio[false].Version
	if version == "" || version == "latest" {
		version = "1.31.0"
	}
	corpus := corpusInputs(t)
	require.GreaterOrEqual(t, len(corpus), 30, "Istio's corpus yielded too few default-settings pods")
	gen := generate(*generated)

	sets := []struct {
		name   string
		inputs []input
	}{{"corpus", corpus}, {"generated", gen}}
	// The sidecar modes, each with istio-init and with istio-cni
	// (meshrev's trafficInterception: CNI, Istio's pilot.cni.enabled).
	modes := []struct {
		name        string
		native, cni bool
	}{{"classic", false, false}, {"native", true, false}, {"cni-classic", false, true}, {"cni-native", true, true}}

	results := map[string]result{}
	var cols []string
	var baseline podSecurityTally
	for _, mode := range modes {
		setNativeSidecars(mode.native)
		meshrev := newMeshrevInjector(t, revisionName, version, mode.native, mode.cni)
		for _, set := range sets {
			col := set.name + "/" + mode.name
			cols = append(cols, col)
			res := result{Aspects: map[string]int{}, ByFeature: map[string][2]int{}}
			for _, in := range set.inputs {
				io := istio[mode.cni].inject(t, testNamespace, in.Pod)
				mo := meshrevInject(t, meshrev, testNamespace, in.Pod)
				c, err := compare(io, mo)
				require.NoError(t, err, "%s (%s)", in.Name, col)
				if *dump != "" && strings.Contains(in.Name, *dump) {
					dumpPods(t, in.Name+" "+col, io, mo)
				}
				baseline.add(t, mode.cni, in, mo)
				res.Total++
				if c.Same {
					res.Same++
				} else if len(res.Examples) < *showDiffs {
					res.Examples = append(res.Examples, fmt.Sprintf("%s: %s", in.Name, strings.Join(c.Paths, ", ")))
				}
				for a := range c.Aspects {
					res.Aspects[a]++
				}
				for _, f := range in.Features {
					v := res.ByFeature[f]
					v[0]++
					if c.Same {
						v[1]++
					}
					res.ByFeature[f] = v
				}
			}
			results[col] = res
		}
	}
	setNativeSidecars(false)

	report(t, cols, results)
	baseline.check(t)
	checkFloors(t, cols, results)
}

// report prints the match rates and the per-aspect table.
func report(t *testing.T, cols []string, results map[string]result) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-52s", "identical pods (and refusals)")
	for _, c := range cols {
		fmt.Fprintf(&b, " %18s", c)
	}
	fmt.Fprintf(&b, "\n%-52s", "")
	for _, c := range cols {
		r := results[c]
		fmt.Fprintf(&b, " %18s", fmt.Sprintf("%d/%d %5.1f%%", r.Same, r.Total, 100*r.rate()))
	}
	fmt.Fprintf(&b, "\n\n%-52s\n", "inputs differing in (one input can count in several):")
	for _, a := range aspects {
		fmt.Fprintf(&b, "%-52s", a)
		for _, c := range cols {
			fmt.Fprintf(&b, " %18d", results[c].Aspects[a])
		}
		b.WriteByte('\n')
	}
	feats := map[string]bool{}
	for _, r := range results {
		for f := range r.ByFeature {
			feats[f] = true
		}
	}
	if len(feats) > 0 {
		fmt.Fprintf(&b, "\n%-52s\n", "generated pods exercising a feature: identical/with")
		for _, f := range sortedKeys(feats) {
			fmt.Fprintf(&b, "%-52s", f)
			for _, c := range cols {
				v, ok := results[c].ByFeature[f]
				if !ok {
					fmt.Fprintf(&b, " %18s", "")
					continue
				}
				fmt.Fprintf(&b, " %18s", fmt.Sprintf("%d/%d", v[1], v[0]))
			}
			b.WriteByte('\n')
		}
	}
	for _, c := range cols {
		for _, e := range results[c].Examples {
			fmt.Fprintf(&b, "\n[%s] %s", c, e)
		}
	}
	t.Log(b.String())
}

const floorsFile = "testdata/floors.json"

// checkFloors fails when a match rate falls below the recorded floor (a
// regression against Istio), and rewrites the floors with -update.
func checkFloors(t *testing.T, cols []string, results map[string]result) {
	measured := map[string]float64{}
	for _, c := range cols {
		measured[c] = float64(int(results[c].rate()*1000)) / 1000 // floor to 0.1%
	}
	if *update {
		b, err := json.MarshalIndent(measured, "", "  ")
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(floorsFile), 0o755))
		require.NoError(t, os.WriteFile(floorsFile, append(b, '\n'), 0o644))
		return
	}
	raw, err := os.ReadFile(floorsFile)
	require.NoError(t, err, "no match-rate floors: run go test -update once")
	var floors map[string]float64
	require.NoError(t, json.Unmarshal(raw, &floors))
	for _, c := range cols {
		f, ok := floors[c]
		require.True(t, ok, "no floor for %s in %s: run go test -update", c, floorsFile)
		require.GreaterOrEqual(t, results[c].rate(), f, "%s: %d/%d identical to Istio, below the floor %.1f%% of %s", c, results[c].Same, results[c].Total, 100*f, floorsFile)
	}
}

func dumpPods(t *testing.T, name string, istio, meshrev outcome) {
	for _, o := range []struct {
		who string
		out outcome
	}{{"istio", istio}, {"meshrev", meshrev}} {
		if o.out.Refused {
			t.Logf("%s %s: refused: %s", name, o.who, o.out.Message)
			continue
		}
		m, err := normalise(o.out.Pod)
		require.NoError(t, err)
		b, err := json.MarshalIndent(m, "", "  ")
		require.NoError(t, err)
		t.Logf("%s %s:\n%s", name, o.who, b)
	}
}
