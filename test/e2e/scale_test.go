//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/cli"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// TestScaleBoundedMeshOneWebhookCallPerPodAndResumableUpgrade checks, on a
// small cluster, the properties that keep meshrev's cost flat at scale:
// the API server calls the injector once per pod (reinvocationPolicy
// Never, counted by meshrev_injections_total); the Mesh lists at most
// v1alpha1.MaxListedOutdatedWorkloads outdated workloads per revision while
// counting them all; the CLI computes the complete list itself; and
// "dataplane upgrade --batch N --wait" that stops at its overall timeout
// continues on a rerun without restarting what it restarted before.
func TestScaleBoundedMeshOneWebhookCallPerPodAndResumableUpgrade(t *testing.T) {
	const workloads = v1alpha1.MaxListedOutdatedWorkloads + 3
	e := lcSetup(t, nil)
	bin := cliBinary(t)
	stable := v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6"}
	canary := v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6"}
	e.createMesh(stable)
	ns := NewNamespace(t, "scale", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	injected := map[string]string{"result": "injected"}
	// metricValue says -1 while the counter has no sample yet.
	before := max(metricValue(e.mgr.get(t, "/metrics"), "meshrev_injections_total", injected), 0)

	var names []string
	for i := range workloads {
		name := fmt.Sprintf("w%02d", i)
		names = append(names, name)
		e.deploy(ns, name)
	}
	for _, name := range names {
		e.waitRolledOut(ns, name)
	}
	e.waitMesh("every pod counted", func(m *v1alpha1.Mesh) bool { return m.Status.DataPlane.Pods == workloads })
	after := metricValue(e.mgr.get(t, "/metrics"), "meshrev_injections_total", injected)
	assert.Equal(t, before+workloads, after, "one injector call per pod through the API server (its ServiceAccount admission mounts the token into the injected containers after the injection)")

	_, err := e.update(func(m *v1alpha1.Mesh) {
		m.Spec.Revisions = append(m.Spec.Revisions, canary)
		m.Spec.Canary = canary.Name
	})
	require.NoError(t, err)
	e.waitMesh("canary deployed", func(m *v1alpha1.Mesh) bool { return m.Status.Phase == v1alpha1.PhaseCanaryDeployed })
	_, err = e.update(func(m *v1alpha1.Mesh) { m.Spec.Stable, m.Spec.Canary = canary.Name, "" })
	require.NoError(t, err)

	m := e.waitMesh("every workload outdated", func(m *v1alpha1.Mesh) bool {
		return m.Status.Phase == v1alpha1.PhaseDataPlaneUpgrading && m.Status.DataPlane.OutdatedWorkloadCount == workloads
	})
	assert.Equal(t, int32(workloads), m.Status.DataPlane.Outdated)
	require.Len(t, m.Status.DataPlane.OutdatedWorkloads, v1alpha1.MaxListedOutdatedWorkloads, "the Mesh lists the first workloads only")
	for i, w := range m.Status.DataPlane.OutdatedWorkloads {
		assert.Equal(t, names[i], w.Name, "the first workloads in name order")
	}
	require.NotNil(t, lcRevisionStatus(m, stable.Name))
	assert.Equal(t, int32(workloads), lcRevisionStatus(m, stable.Name).OutdatedWorkloads)

	r := meshrev(t, bin, "dataplane", "status", "-o", "json").ok(t)
	var v cli.DataPlaneView
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &v))
	var listed []string
	for _, w := range v.Workloads {
		listed = append(listed, w.Name)
	}
	assert.Equal(t, names, listed, "the CLI computes the complete list from the pods")

	// An upgrade cut short by its overall timeout, then rerun: the rerun
	// restarts only what the first run did not.
	restartedRE := regexp.MustCompile(`(?m)^deployment/(\S+) in \S+ restarted$`)
	restarted := func(out string) []string {
		var got []string
		for _, m := range restartedRE.FindAllStringSubmatch(out, -1) {
			got = append(got, m[1])
		}
		return got
	}
	first := meshrev(t, bin, "dataplane", "upgrade", "--all", "--batch", "2", "--wait", "--overall-timeout", "2s")
	require.Equal(t, 1, first.code, "the first run stops at its overall timeout: %s", first.stdout)
	assert.Contains(t, first.stderr, "--overall-timeout")
	assert.Contains(t, first.stderr, "rerun to continue")
	firstRestarts := restarted(first.stdout)
	require.NotEmpty(t, firstRestarts)
	assert.LessOrEqual(t, len(firstRestarts), workloads-1, "the first run did not get through everything")

	second := meshrev(t, bin, "dataplane", "upgrade", "--all", "--batch", "4", "--wait").ok(t)
	secondRestarts := restarted(second.stdout)
	for _, name := range firstRestarts {
		assert.NotContains(t, secondRestarts, name, "the rerun does not restart %s again", name)
	}
	all := append(slices.Clone(firstRestarts), secondRestarts...)
	slices.Sort(all)
	assert.Equal(t, names, all, "between them, the two runs restarted every workload once")
	assert.Regexp(t, `workloads/s, about \S+ left`, second.stdout, "progress shows throughput and time left")

	m = e.waitMesh("data plane upgraded", func(m *v1alpha1.Mesh) bool { return m.Status.Phase == v1alpha1.PhaseReadyToUnpublish })
	assert.Empty(t, m.Status.DataPlane.OutdatedWorkloads)
	assert.Zero(t, m.Status.DataPlane.OutdatedWorkloadCount)
}
