package version

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGet(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := map[string]struct {
		version, revision string
		want              Info
		wantString        string
	}{
		"a stamped build reports the stamped version and revision": {
			version: "1.2.3", revision: "0123456789abcdef0123456789abcdef01234567",
			want:       Info{Version: "1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567", Go: runtime.Version(), Platform: platform},
			wantString: "1.2.3 (revision 0123456789abcdef0123456789abcdef01234567, " + runtime.Version() + ", " + platform + ")",
		},
		"an unstamped test binary is a devel build": {
			want:       Info{Version: "devel", Go: runtime.Version(), Platform: platform},
			wantString: "devel (" + runtime.Version() + ", " + platform + ")",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			oldV, oldR := Version, Revision
			t.Cleanup(func() { Version, Revision = oldV, oldR })
			Version, Revision = tc.version, tc.revision
			// go test records no VCS settings, so an unstamped test
			// binary has no revision either.
			got := Get()
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.wantString, got.String())
		})
	}
}

func TestCollectorExportsTheStampedBuild(t *testing.T) {
	oldV, oldR := Version, Revision
	t.Cleanup(func() { Version, Revision = oldV, oldR })
	Version, Revision = "1.2.3", "abc"
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(Collector()))
	want := `# HELP meshrev_build_info Always 1; labelled with the version, git revision and Go version meshrev-manager was built from.
# TYPE meshrev_build_info gauge
meshrev_build_info{goversion="` + runtime.Version() + `",revision="abc",version="1.2.3"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), BuildInfoMetric))
}
