// Package archtest checks the package map of docs/design.md ("Packages and
// what each may import") against the module's real import graph, as `go
// list` reports it, so that the rules the document states cannot drift from
// the code unnoticed.
package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// module is the module path; rules name packages relative to it.
const module = "github.com/meshrev/meshrev"

// design is docs/design.md, relative to this package's directory.
const design = "../../docs/design.md"

// rule is one row of docs/design.md's package map.
type rule struct {
	// pkg is the package, relative to the module ("revisions/controller").
	pkg string
	// may lists the meshrev packages pkg may import directly; nothing else
	// of the module is allowed.
	may []string
	// external, when not nil, lists the import path prefixes of the only
	// packages outside the module and the standard library pkg may import.
	external []string
}

// rules are docs/design.md's package map. A package that does not exist
// (yet) is not an error: its rule holds from the day it is created.
var rules = map[string]rule{
	"the pure core imports only its API types and apimachinery": {
		pkg: "revisions", may: []string{"revisions/v1alpha1"}, external: []string{"k8s.io/apimachinery/"},
	},
	"the API types import no meshrev package": {
		pkg: "revisions/v1alpha1",
	},
	"the read model imports only the core and its API types": {
		pkg: "internal/readmodel", may: []string{"revisions", "revisions/v1alpha1"},
	},
	"the controller never imports the webhook, the CLI or the manager": {
		pkg: "revisions/controller", may: []string{"revisions", "revisions/v1alpha1", "internal/readmodel"},
	},
	"the webhook never imports the controller, the CLI or the manager": {
		pkg: "webhook", may: []string{"revisions", "revisions/v1alpha1", "internal/readmodel", "internal/jsonscan", "charts"},
	},
	"the JSON scanner imports no meshrev package": {
		pkg: "internal/jsonscan",
	},
	"the certificates import no meshrev package": {
		pkg: "internal/pki",
	},
	"the manager wires the webhook, the controller and the certificates": {
		pkg: "internal/manager", may: []string{"webhook", "revisions/controller", "internal/pki", "internal/readmodel", "revisions", "revisions/v1alpha1"},
	},
	"the CLI never imports the webhook, the controller or the manager": {
		pkg: "cli", may: []string{"revisions", "revisions/v1alpha1", "internal/readmodel", "internal/version", "cli/dashboard"},
	},
	"the dashboard renders and serves, the CLI reads and acts": {
		pkg: "cli/dashboard", may: []string{"revisions/v1alpha1"}, external: []string{"github.com/go-logr/logr"},
	},
	"the CLI's main is a thin main over package cli": {
		pkg: "cmd/meshrev", may: []string{"cli"},
	},
	"the manager's main is a thin main over internal/manager": {
		pkg: "cmd/meshrev-manager", may: []string{"internal/manager", "internal/pki", "internal/version"},
	},
	"the build's version imports no meshrev package": {
		pkg: "internal/version",
	},
	"the release tooling builds the binaries, it does not import them": {
		pkg: "hack/release",
	},
	"the local-cluster library imports no meshrev package": {
		pkg: "internal/devcluster",
	},
	"the local-cluster command uses the library, never the tests": {
		pkg: "hack/cluster", may: []string{"internal/devcluster"},
	},
	"the chart imports no meshrev package": {
		pkg: "charts",
	},
	"Istio's charts for tests and the demo import no meshrev package": {
		pkg: "internal/istiocharts",
	},
	"the chart-repository command uses that library only": {
		pkg: "hack/istiocharts", may: []string{"internal/istiocharts"},
	},
}

// listed is the part of `go list -json` output the rules need.
type listed struct {
	ImportPath string
	GoFiles    []string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// rel is an import path relative to the module, or "" outside it.
func rel(path string) string {
	if path == module {
		return "."
	}
	r, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	return r
}

// isTest reports whether a package of the module is test code (test/...).
func isTest(r string) bool { return r == "test" || strings.HasPrefix(r, "test/") }

// isStandard reports whether an import path is the standard library's: its
// first element has no dot.
func isStandard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// loadPackages lists every package of the module (the default build, as the
// binaries are built), keyed by path relative to the module.
func loadPackages(t *testing.T) map[string]listed {
	t.Helper()
	recordInputs(t)
	pkgs, err := goList()
	require.NoError(t, err)
	require.Contains(t, pkgs, "revisions", "go list found no package revisions: is %s the module?", module)
	return pkgs
}

// goList runs go list once for all the tests of this package.
var goList = sync.OnceValues(func() (map[string]listed, error) {
	cmd := exec.Command("go", "list", "-json=ImportPath,GoFiles,Imports,Deps,Error", module+"/...")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go list %s/...: %w: %s", module, err, stderr.String())
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(&stdout)
	for {
		var p listed
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("go list: package %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs[rel(p.ImportPath)] = p
	}
})

// recordInputs opens every directory of the module. go list runs in a child
// process, whose reads go test does not see; opening the directories here
// makes go test's result cache depend on their listings (names, sizes,
// modification times), so an edited or added Go file runs the test again
// instead of reporting a stale cached pass.
func recordInputs(t *testing.T) {
	t.Helper()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"), "the module root is two levels above internal/archtest")
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		return nil
	})
	require.NoError(t, err, "walk the module")
}

// productionPackages are the module's packages outside test/ that have
// non-test Go files.
func productionPackages(pkgs map[string]listed) []string {
	var out []string
	for r, p := range pkgs {
		if !isTest(r) && len(p.GoFiles) > 0 {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

func TestPackagesImportOnlyWhatTheDesignAllows(t *testing.T) {
	pkgs := loadPackages(t)
	for name, tc := range rules {
		t.Run(name, func(t *testing.T) {
			p, ok := pkgs[tc.pkg]
			if !ok {
				t.Logf("package %s does not exist on this branch; its rule applies once it does", tc.pkg)
				return
			}
			for _, imp := range p.Imports {
				switch r := rel(imp); {
				case r != "":
					assert.Truef(t, slices.Contains(tc.may, r),
						"%s imports %s, which docs/design.md does not allow: %s may import only %s",
						tc.pkg, r, tc.pkg, allowed(tc.may))
				case tc.external != nil && !isStandard(imp):
					assert.Truef(t, slices.ContainsFunc(tc.external, func(prefix string) bool { return strings.HasPrefix(imp, prefix) }),
						"%s imports %s, which docs/design.md does not allow: outside the standard library %s may import only %s",
						tc.pkg, imp, tc.pkg, strings.Join(tc.external, ", "))
				}
			}
		})
	}
}

func allowed(may []string) string {
	if len(may) == 0 {
		return "no meshrev package"
	}
	return strings.Join(may, ", ")
}

func TestEveryProductionPackageIsInThePackageMap(t *testing.T) {
	pkgs := loadPackages(t)
	covered := map[string]bool{}
	for _, r := range rules {
		covered[r.pkg] = true
	}
	for _, r := range productionPackages(pkgs) {
		assert.Truef(t, covered[r], "package %s has no rule: add it to docs/design.md's package map (what it may import) and to the rules of internal/archtest", r)
	}
}

func TestNoProductionPackageDependsOnTestCode(t *testing.T) {
	pkgs := loadPackages(t)
	for _, r := range productionPackages(pkgs) {
		var tests []string
		for _, dep := range pkgs[r].Deps {
			if d := rel(dep); d != "" && isTest(d) {
				tests = append(tests, d)
			}
		}
		for _, d := range tests {
			assert.Failf(t, "production code depends on test code",
				"%s depends on %s (%s): no package outside test/ may import test/...; move what it needs out of test/",
				r, d, strings.Join(importChain(pkgs, r, d), " → "))
		}
	}
}

// importChain is a shortest chain of imports from one package of the module
// to another, both relative to the module.
func importChain(pkgs map[string]listed, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var chain []string
			for c := to; c != ""; c = prev[c] {
				chain = append(chain, c)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, imp := range pkgs[cur].Imports {
			if r := rel(imp); r != "" {
				if _, seen := prev[r]; !seen {
					prev[r] = cur
					queue = append(queue, r)
				}
			}
		}
	}
	return []string{from, "…", to}
}

func TestTheDesignDocumentNamesEveryRule(t *testing.T) {
	doc, err := os.ReadFile(design)
	require.NoError(t, err, "docs/design.md states the package map these rules check")
	for name, r := range rules {
		assert.Containsf(t, string(doc), "`"+r.pkg+"`", "docs/design.md does not name package %s (rule %q)", r.pkg, name)
	}
}
