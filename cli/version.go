package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshrev/meshrev/internal/version"
)

func newVersionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the CLI's version",
		Long: `Print the version the CLI was built as: the release version (also the
manager image's tag and the chart's appVersion), the git revision, the Go
toolchain and the platform.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			v := version.Get()
			if g.output != outputTable {
				return printStructured(g.streams.Out, g.output, v)
			}
			_, err := fmt.Fprintf(g.streams.Out, "meshrev %s\n", v)
			return err
		},
	}
}
