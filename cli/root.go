// Package cli is meshrev's command line: the canary-upgrade workflow of
// docs/design.md ("The CLI") as verbs (status, canary deploy, namespace switch, redeploy,
// verify, promote, dataplane upgrade, unpublish, revoke). Every verb is a thin
// layer over the Kubernetes API: the rules live in package revisions and are
// enforced by meshrev's validating webhook, whose refusals are printed as the
// server sends them.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// IOStreams are the standard streams a command reads and writes; tests
// replace them to capture output.
type IOStreams struct {
	// In is where confirmations are read from.
	In io.Reader
	// Out receives the command's output.
	Out io.Writer
	// ErrOut receives progress, warnings and errors.
	ErrOut io.Writer
}

// Options configure the root command.
type Options struct {
	// Streams are the streams the commands use; the zero value means the
	// process's stdin, stdout and stderr.
	Streams IOStreams
	// Name is the name the binary was invoked as (argv[0]); "kubectl-meshrev"
	// makes help read "kubectl meshrev".
	Name string
	// IsTerminal reports whether a stream is a terminal (colour on Out,
	// confirmation prompts on In); defaults to checking the file descriptor.
	IsTerminal func(s any) bool
	// Now returns the current time (the restartedAt annotation); defaults to time.Now.
	Now func() time.Time
}

// ErrSilent is returned by commands that already printed why they failed
// (verify's list of bad pods): the caller exits non-zero without printing more.
var ErrSilent = errors.New("failed")

// Main runs the CLI with the process's arguments and streams and returns the
// exit code.
func Main(ctx context.Context, args []string) int {
	opts := Options{Streams: IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}}
	if len(args) > 0 {
		opts.Name = args[0]
		args = args[1:]
	}
	return Run(ctx, opts, args)
}

// Run executes the command line args (without argv[0]) and returns the exit
// code: 0 on success, 1 on any failure (the error is printed on ErrOut).
func Run(ctx context.Context, opts Options, args []string) int {
	opts = opts.withDefaults()
	cmd := NewCommand(opts)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, ErrSilent) {
			fmt.Fprintf(opts.Streams.ErrOut, "Error: %v\n", err)
		}
		return 1
	}
	return 0
}

func (o Options) withDefaults() Options {
	if o.Streams.In == nil {
		o.Streams.In = os.Stdin
	}
	if o.Streams.Out == nil {
		o.Streams.Out = os.Stdout
	}
	if o.Streams.ErrOut == nil {
		o.Streams.ErrOut = os.Stderr
	}
	if o.IsTerminal == nil {
		o.IsTerminal = isTerminal
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// isTerminal reports whether s is a file attached to a terminal.
func isTerminal(s any) bool {
	f, ok := s.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// displayName is how help names the binary: "kubectl meshrev" when invoked
// as the kubectl plugin kubectl-meshrev.
func displayName(argv0 string) string {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	if rest, ok := strings.CutPrefix(base, "kubectl-"); ok && rest != "" {
		return "kubectl " + strings.ReplaceAll(rest, "_", "-")
	}
	return "meshrev"
}

// NewCommand returns the meshrev root command with every verb.
func NewCommand(opts Options) *cobra.Command {
	opts = opts.withDefaults()
	g := &globals{streams: opts.Streams, isTerminal: opts.IsTerminal, now: opts.Now}
	name := displayName(opts.Name)
	root := &cobra.Command{
		Use:   "meshrev",
		Short: "Canary upgrades of the service-mesh control plane",
		Long: `meshrev walks a canary upgrade of the mesh control plane:

  deploy a canary → switch a namespace to it → redeploy and verify → promote
  → upgrade the data plane → unpublish the old revision,

or, when verification fails: switch back → redeploy → revoke.

Run "` + name + ` status" to see where the mesh stands and what to do next.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: name},
	}
	root.SetIn(opts.Streams.In)
	root.SetOut(opts.Streams.Out)
	root.SetErr(opts.Streams.ErrOut)
	g.addFlags(root)

	root.AddCommand(
		newStatusCommand(g),
		newCanaryCommand(g),
		newNamespaceCommand(g),
		newRedeployCommand(g),
		newVerifyCommand(g),
		newCheckInjectCommand(g),
		newPromoteCommand(g),
		newDataplaneCommand(g),
		newUnpublishCommand(g),
		newRevokeCommand(g),
		newDashboardCommand(g),
		newVersionCommand(g),
	)
	return root
}
