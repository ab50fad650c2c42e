package revisions

import (
	"fmt"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Phase derives the lifecycle phase from the table and the number of pods
// that still run a revision other than the one they resolve to.
func Phase(mesh *v1alpha1.MeshSpec, outdated int32) v1alpha1.MeshPhase {
	switch {
	case mesh.Canary != "":
		return v1alpha1.PhaseCanaryDeployed
	case Previous(mesh) == "":
		return v1alpha1.PhaseStable
	case outdated > 0:
		return v1alpha1.PhaseDataPlaneUpgrading
	}
	return v1alpha1.PhaseReadyToUnpublish
}

// Previous returns the published revision that is neither stable nor canary
// (the old stable after a promotion), or "".
func Previous(mesh *v1alpha1.MeshSpec) string {
	for _, r := range mesh.Revisions {
		if r.Name != mesh.Stable && r.Name != mesh.Canary {
			return r.Name
		}
	}
	return ""
}

// NextStep is the step a person takes next in the given phase.
type NextStep struct {
	// Text says what to do.
	Text string
	// Command is the meshrev command for it (see Remedy).
	Command string
}

// Next returns the next step for a mesh in the given phase.
func Next(mesh *v1alpha1.MeshSpec, phase v1alpha1.MeshPhase) NextStep {
	switch phase {
	case v1alpha1.PhaseCanaryDeployed:
		return NextStep{
			Text:    fmt.Sprintf("verify canary %s on a few workloads: switch a namespace to it and redeploy; then promote it, or switch back and revoke it", mesh.Canary),
			Command: RemedyTryCanary.Command(),
		}
	case v1alpha1.PhaseDataPlaneUpgrading:
		return NextStep{
			Text:    fmt.Sprintf("roll the workloads that still run %s onto stable %s", Previous(mesh), mesh.Stable),
			Command: RemedyDataPlaneUpgradeWait.Command(),
		}
	case v1alpha1.PhaseReadyToUnpublish:
		return NextStep{
			Text:    fmt.Sprintf("every pod runs stable %s; unpublish the old revision %s", mesh.Stable, Previous(mesh)),
			Command: RemedyUnpublish.Command(),
		}
	}
	return NextStep{
		Text:    fmt.Sprintf("stable %s serves every namespace; deploy a canary to upgrade", mesh.Stable),
		Command: RemedyCanaryDeploy.Command(),
	}
}
