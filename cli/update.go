package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// errNoChange is returned by a mutation that finds the Mesh already as wanted.
var errNoChange = errors.New("no change")

// updateMesh applies mutate to the current Mesh and writes it back in one
// update. The update carries the resourceVersion it read, so a concurrent
// writer makes it fail with a conflict; it then re-reads and re-applies
// mutate, which must decide again from what it sees. It returns the updated
// Mesh, or the Mesh as read and errNoChange.
func updateMesh(ctx context.Context, c client.Client, mutate func(*v1alpha1.Mesh) error) (*v1alpha1.Mesh, error) {
	var out *v1alpha1.Mesh
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		m, err := getMesh(ctx, c)
		if err != nil {
			return err
		}
		if err := mutate(m); err != nil {
			out = m
			return err
		}
		if err := c.Update(ctx, m); err != nil {
			return err
		}
		out = m
		return nil
	})
	return out, err
}

// clearForce removes the meshrev.io/force annotation after a forced step, so
// that it does not silently force the next one. A metadata-only update is no
// lifecycle step, so the validating webhook lets it through.
func clearForce(ctx context.Context, c client.Client, errOut io.Writer) {
	_, err := updateMesh(ctx, c, func(m *v1alpha1.Mesh) error {
		if _, ok := m.Annotations[revisions.AnnotationForce]; !ok {
			return errNoChange
		}
		delete(m.Annotations, revisions.AnnotationForce)
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		fmt.Fprintf(errOut, "Warning: could not remove annotation %s from Mesh %s: %v; remove it (kubectl annotate mesh %s %s-) so that later steps are not forced\n",
			revisions.AnnotationForce, v1alpha1.MeshName, err, v1alpha1.MeshName, revisions.AnnotationForce)
	}
}

// setForce adds meshrev.io/force: "true", which the validating webhook reads
// as the override of the refusals that can be overridden.
func setForce(m *v1alpha1.Mesh) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[revisions.AnnotationForce] = "true"
}

// confirmer asks before destructive steps.
type confirmer struct {
	in         io.Reader
	errOut     io.Writer
	isTerminal func(any) bool
}

// confirm returns nil when the step may go ahead: --yes was passed, or the
// person answered yes on a terminal. Without a terminal and without --yes it
// refuses, since nobody can answer.
func (c confirmer) confirm(yes bool, verb, question string) error {
	if yes {
		return nil
	}
	if !c.isTerminal(c.in) {
		return fmt.Errorf("%s needs confirmation and stdin is not a terminal: pass --yes to confirm", verb)
	}
	fmt.Fprintf(c.errOut, "%s [y/N]: ", question)
	line, err := bufio.NewReader(c.in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: read confirmation: %w", verb, err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("%s: not confirmed, nothing changed", verb)
}
