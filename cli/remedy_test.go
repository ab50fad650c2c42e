package cli

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/revisions"
)

// TestRemediesAreCommandsOfThisCLI checks every command the core names in
// its refusals, warnings and next steps against the CLI's own command tree:
// the verb exists and takes every flag the remedy spells.
func TestRemediesAreCommandsOfThisCLI(t *testing.T) {
	root := NewCommand(Options{})
	for r, spelled := range revisions.RemedyCommands() {
		for _, command := range strings.Split(spelled, " && ") {
			t.Run(command, func(t *testing.T) {
				words := strings.Fields(command)
				require.Equal(t, "meshrev", words[0], "remedy %d must start with meshrev", r)
				cmd, rest, err := root.Find(words[1:])
				require.NoError(t, err)
				require.NotEqual(t, root, cmd, "%q names no meshrev verb", command)
				for _, w := range rest {
					name, isFlag := strings.CutPrefix(w, "--")
					if !isFlag {
						if short, ok := strings.CutPrefix(w, "-"); ok {
							assert.NotNil(t, cmd.Flags().ShorthandLookup(short), "%q: %s has no flag -%s", command, cmd.CommandPath(), short)
						}
						continue
					}
					assert.NotNil(t, cmd.Flags().Lookup(name), "%q: %s has no flag --%s", command, cmd.CommandPath(), name)
				}
			})
		}
	}
}
