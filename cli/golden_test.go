package cli

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current output")

// goldens records which golden files the run produced, so that TestMain can
// fail on golden files no case produces.
var goldens = struct {
	sync.Mutex
	used map[string]bool
	// files are the golden files found, listed by the first assertGolden:
	// the go test cache only notices a golden added or removed when the
	// directory is read while tests run (not before or after m.Run).
	files   []string
	listErr error
	listed  bool
}{used: map[string]bool{}}

// assertGolden compares got with testdata/<name>, or rewrites it with -update.
func assertGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldens.Lock()
	goldens.used[name] = true
	if !goldens.listed {
		goldens.files, goldens.listErr = filepath.Glob(filepath.Join("testdata", "*.golden"))
		goldens.listed = true
	}
	goldens.Unlock()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "golden file %s is missing: run go test ./cli/ -update", path)
	require.Equal(t, string(want), string(got), "output differs from %s: if the change is intended, run go test ./cli/ -update", path)
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	// A subset of tests (-run) produces a subset of the goldens; only a
	// full run can tell which are stale.
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		if err := checkStaleGoldens(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkStaleGoldens fails on golden files that no case produced (and
// removes them with -update).
func checkStaleGoldens() error {
	if goldens.listErr != nil {
		return goldens.listErr
	}
	var stale []string
	for _, f := range goldens.files {
		if goldens.used[filepath.Base(f)] {
			continue
		}
		if *update {
			if err := os.Remove(f); err != nil {
				return err
			}
			continue
		}
		stale = append(stale, f)
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		return fmt.Errorf("golden files that no test case produces: %s; remove them or run go test ./cli/ -update", strings.Join(stale, ", "))
	}
	return nil
}
