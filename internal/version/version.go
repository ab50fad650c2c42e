// Package version is the one version of a meshrev build, stamped into every
// binary by the linker (make build, make image and make release pass the
// same -X flags), and the build-info metric the manager exports.
package version

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Stamped by the linker:
//
//	-X github.com/meshrev/meshrev/internal/version.Version=0.1.0
//	-X github.com/meshrev/meshrev/internal/version.Revision=<commit sha>
//
// Unstamped builds (go build, go run, go test) report what the module's
// build info says instead.
var (
	// Version is the release version (SemVer without a leading v): the image
	// tag, the chart's appVersion and what --version prints.
	Version = ""
	// Revision is the git commit the binary was built from.
	Revision = ""
)

// Info is what a binary knows about its own build.
type Info struct {
	// Version is the release version, or "devel" for an unstamped build.
	Version string `json:"version"`
	// Revision is the git commit, empty when unknown.
	Revision string `json:"revision,omitempty"`
	// Go is the Go toolchain the binary was built with.
	Go string `json:"go"`
	// Platform is GOOS/GOARCH of the binary.
	Platform string `json:"platform"`
}

// Get returns the build's Info.
func Get() Info {
	i := Info{Version: Version, Revision: Revision, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if i.Version != "" && i.Revision != "" {
		return i
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if i.Version == "" {
			i.Version = "devel"
		}
		return i
	}
	if i.Version == "" {
		i.Version = "devel"
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			i.Version = v
		}
	}
	if i.Revision == "" {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if i.Revision != "" && dirty {
			i.Revision += "-dirty"
		}
	}
	return i
}

// String is the one-line form binaries print for --version:
// "0.1.0 (revision 0123abcd…, go1.26.0, linux/amd64)".
func (i Info) String() string {
	s := i.Version + " ("
	if i.Revision != "" {
		s += "revision " + i.Revision + ", "
	}
	return s + i.Go + ", " + i.Platform + ")"
}

// BuildInfoMetric is the name of the manager's build-info gauge.
const BuildInfoMetric = "meshrev_build_info"

// Collector returns a gauge that is always 1, labelled with the build's
// version, revision and Go version, for a Prometheus registry.
func Collector() prometheus.Collector {
	i := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        BuildInfoMetric,
		Help:        "Always 1; labelled with the version, git revision and Go version meshrev-manager was built from.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.Revision, "goversion": i.Go},
	})
	g.Set(1)
	return g
}
