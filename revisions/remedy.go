package revisions

import (
	"fmt"
	"strings"
)

// Remedy is a step a person can take to get past a refusal, act on a
// warning or move the upgrade on. The rules name remedies; what a person
// types for each is spelled once, in the table below, the one place the
// core knows meshrev's command line. The CLI's tests check every entry
// against the CLI's own commands and flags.
type Remedy int

// The remedies the rules name.
const (
	// RemedyCanaryDeploy publishes a new revision as the canary.
	RemedyCanaryDeploy Remedy = iota
	// RemedyPromote makes the canary stable.
	RemedyPromote
	// RemedyPromoteForce promotes although the canary's control plane is not ready.
	RemedyPromoteForce
	// RemedyRevoke removes the canary.
	RemedyRevoke
	// RemedyUnpublish removes the old revision after a promotion.
	RemedyUnpublish
	// RemedyUnpublishForce unpublishes although pods still run the revision.
	RemedyUnpublishForce
	// RemedyDataPlaneUpgrade restarts every outdated workload, gateways included.
	RemedyDataPlaneUpgrade
	// RemedyDataPlaneUpgradeWait is RemedyDataPlaneUpgrade, waiting for the rollouts.
	RemedyDataPlaneUpgradeWait
	// RemedyNamespaceSwitch relabels a namespace; arguments: namespace, tag or revision.
	RemedyNamespaceSwitch
	// RemedyNamespaceDisable turns injection off in a namespace; argument: namespace.
	RemedyNamespaceDisable
	// RemedyRedeploy restarts workloads so that they get the sidecar their labels ask for.
	RemedyRedeploy
	// RemedyTryCanary switches a namespace to the canary, redeploys a workload and verifies it.
	RemedyTryCanary
)

// remedyCommands spells each remedy; %s marks an argument of Command, and
// words in capitals are for the person to fill in.
var remedyCommands = map[Remedy]string{
	RemedyCanaryDeploy:         "meshrev canary deploy VERSION",
	RemedyPromote:              "meshrev promote",
	RemedyPromoteForce:         "meshrev promote --force",
	RemedyRevoke:               "meshrev revoke",
	RemedyUnpublish:            "meshrev unpublish",
	RemedyUnpublishForce:       "meshrev unpublish --force",
	RemedyDataPlaneUpgrade:     "meshrev dataplane upgrade --all --gateways",
	RemedyDataPlaneUpgradeWait: "meshrev dataplane upgrade --all --gateways --wait",
	RemedyNamespaceSwitch:      "meshrev namespace switch %s --to %s",
	RemedyNamespaceDisable:     "meshrev namespace disable %s",
	RemedyRedeploy:             "meshrev redeploy",
	RemedyTryCanary:            "meshrev namespace switch NS --to canary && meshrev redeploy -n NS WORKLOAD --wait && meshrev verify -n NS WORKLOAD",
}

// Command is what a person types for r, its %s filled with args in order.
func (r Remedy) Command(args ...any) string {
	c, ok := remedyCommands[r]
	if !ok {
		return fmt.Sprintf("(unknown remedy %d)", int(r))
	}
	if n := strings.Count(c, "%s"); n > 0 {
		return fmt.Sprintf(c, args[:min(n, len(args))]...)
	}
	return c
}

// RemedyCommands returns every remedy's command as spelled, placeholders
// included, for the CLI's tests of its command tree.
func RemedyCommands() map[Remedy]string {
	out := make(map[Remedy]string, len(remedyCommands))
	for r, c := range remedyCommands {
		out[r] = c
	}
	return out
}
