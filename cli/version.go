package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the CLI's version, set at build time with
// -ldflags "-X github.com/meshrev/meshrev/cli.Version=v0.1.0"; otherwise the
// module version or VCS revision the binary was built from.
var Version = ""

// versionString is Version, or what the build info says.
func versionString() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the CLI's version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			v := struct {
				Version string `json:"version"`
				Go      string `json:"go"`
				OS      string `json:"os"`
			}{versionString(), runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH}
			if g.output != outputTable {
				return printStructured(g.streams.Out, g.output, v)
			}
			_, err := fmt.Fprintf(g.streams.Out, "meshrev %s (%s, %s)\n", v.Version, v.Go, v.OS)
			return err
		},
	}
}
