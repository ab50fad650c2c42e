//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// lcRevision is a published revision of the seed, with its control plane.
func lcRevision(version string) v1alpha1.Revision {
	name, err := revisions.RevisionName(version)
	if err != nil {
		panic(err)
	}
	return v1alpha1.Revision{Name: name, Version: version,
		ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:" + version, Replicas: ptr.To[int32](1)}}
}

// createMesh creates the Mesh with a stable revision and waits until the
// controller reports its control plane ready.
func (e *lcEnv) createMesh(stable v1alpha1.Revision) {
	e.t.Helper()
	m := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName},
		Spec: v1alpha1.MeshSpec{Revisions: []v1alpha1.Revision{stable}, Stable: stable.Name}}
	require.NoError(e.t, e.c.Create(e.t.Context(), m))
	if stable.ControlPlane != nil {
		e.waitDeploymentAvailable(lcMeshNamespace, "istiod-"+stable.Name)
	}
	e.waitMesh("installed and ready", func(m *v1alpha1.Mesh) bool {
		return m.Status.Phase == v1alpha1.PhaseStable && meta.IsStatusConditionTrue(m.Status.Conditions, "Ready") && len(m.Status.History) == 1
	})
}

func lcRevisionStatus(m *v1alpha1.Mesh, name string) *v1alpha1.RevisionStatus {
	for i := range m.Status.Revisions {
		if m.Status.Revisions[i].Name == name {
			return &m.Status.Revisions[i]
		}
	}
	return nil
}

func lcHistory(m *v1alpha1.Mesh) []string {
	var out []string
	for _, h := range m.Status.History {
		out = append(out, h.Action+":"+h.From+"->"+h.To)
	}
	return out
}

// outdatedNames lists "namespace/Kind/name" of the outdated workloads.
func lcOutdated(m *v1alpha1.Mesh) []string {
	var out []string
	for _, w := range m.Status.DataPlane.OutdatedWorkloads {
		out = append(out, w.Namespace+"/"+w.Kind+"/"+w.Name)
	}
	slices.Sort(out)
	return out
}

// TestLifecycleCanaryUpgrade walks the seed's canary upgrade on a
// Bookinfo-like application: deploy canary 1.23.6 over stable 1.22.6 (both
// with control planes), switch a namespace and redeploy one workload,
// promote (the labels are rewritten and the report lists what to roll),
// upgrade the data plane, unpublish. Every refusal on the way goes through
// the real API server.
func TestLifecycleCanaryUpgrade(t *testing.T) {
	e := lcSetup(t, nil)
	ctx := t.Context()
	stable, canary := lcRevision("1.22.6"), lcRevision("1.23.6")
	e.createMesh(stable)

	bookinfo := NewNamespace(t, "bookinfo", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	other := NewNamespace(t, "other", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	for _, name := range lcBookinfo {
		e.deploy(bookinfo, name)
	}
	e.deploy(other, "web")
	for _, name := range lcBookinfo {
		for _, p := range e.waitRolledOut(bookinfo, name) {
			require.Equal(t, stable.Name, lcSidecarRevision(t, &p), "before the upgrade every pod runs stable")
		}
	}
	e.waitRolledOut(other, "web")
	m := e.waitMesh("7 pods on stable", func(m *v1alpha1.Mesh) bool { return m.Status.DataPlane.Pods == 7 })
	assert.Equal(t, int32(7), m.Status.DataPlane.UpToDate)
	assert.Equal(t, []string{bookinfo, other}, lcSortedNamespaces(lcRevisionStatus(m, stable.Name)))
	assert.Equal(t, int32(2), lcRevisionStatus(m, stable.Name).NamespaceCount, "the count of the listed namespaces, kept by the CRD schema")

	t.Run("a canary two minor versions above stable is refused by the skip policy", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = append(m.Spec.Revisions, lcRevision("1.24.0"))
			m.Spec.Canary = "1-24-0"
		})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "cannot deploy canary 1-24-0")
		assert.Contains(t, err.Error(), "at most one minor version per upgrade, so upgrade to 1.23.x first")
		assert.Equal(t, "", e.mesh().Spec.Canary, "nothing changed")
	})

	t.Run("deploying canary 1.23.6 runs its control plane beside stable", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = append(m.Spec.Revisions, canary)
			m.Spec.Canary = canary.Name
		})
		require.NoError(t, err)
		e.waitDeploymentAvailable(lcMeshNamespace, "istiod-"+canary.Name)
		var svc corev1.Service
		require.NoError(t, e.c.Get(ctx, client.ObjectKey{Namespace: lcMeshNamespace, Name: "istiod-" + canary.Name}, &svc))
		assert.Equal(t, canary.Name, svc.Labels[revisions.LabelRevision])
		m := e.waitMesh("canary deployed and ready", func(m *v1alpha1.Mesh) bool {
			r := lcRevisionStatus(m, canary.Name)
			return m.Status.Phase == v1alpha1.PhaseCanaryDeployed && r != nil && r.ControlPlaneReady
		})
		assert.Equal(t, []string{"canary"}, lcRevisionStatus(m, canary.Name).Tags)
		assert.Equal(t, []string{"Install:->1-22-6", "DeployCanary:1-22-6->1-23-6"}, lcHistory(m))
		assert.Equal(t, "1.23.6", lcRevisionStatus(m, canary.Name).Version)
		e.waitEvent("Mesh", v1alpha1.MeshName, "DeployCanary")
	})

	t.Run("control planes are written only when what meshrev owns differs, and drift is put back", func(t *testing.T) {
		applies := func() float64 {
			return max(metricValue(e.mgr.get(t, "/metrics"), "meshrev_controlplane_applies_total", nil), 0)
		}
		before := applies()
		// Pod churn and control-plane status changes make reconciles; none
		// of them re-applies an unchanged Deployment or Service.
		e.restart(other, "web")
		e.waitRolledOut(other, "web")
		e.waitMesh("web rolled and counted", func(m *v1alpha1.Mesh) bool { return m.Status.DataPlane.Pods == 7 })
		assert.Equal(t, before, applies(), "no control-plane write while nothing about the control planes changed")

		// A person changes the image meshrev owns (an update: the field
		// moves to their field manager): the controller puts it back.
		var dep appsv1.Deployment
		key := client.ObjectKey{Namespace: lcMeshNamespace, Name: "istiod-" + canary.Name}
		require.NoError(t, e.c.Get(ctx, key, &dep))
		dep.Spec.Template.Spec.Containers[0].Image = "docker.io/istio/pilot:hand-edited"
		require.NoError(t, e.c.Update(ctx, &dep, client.FieldOwner("a-person")))
		err := wait.PollUntilContextTimeout(ctx, lcPoll, lcWaitTimeout, true, func(ctx context.Context) (bool, error) {
			var got appsv1.Deployment
			if err := e.c.Get(ctx, key, &got); err != nil {
				return false, nil
			}
			return got.Spec.Template.Spec.Containers[0].Image == canary.ControlPlane.Image, nil
		})
		require.NoError(t, err, "the control plane's image was put back")
		assert.Greater(t, applies(), before, "the drift was corrected by an apply")
	})

	t.Run("a namespace switched to canary gets canary sidecars on restart while others keep stable", func(t *testing.T) {
		warnings := e.setNamespaceLabels(bookinfo, map[string]string{revisions.LabelRev: revisions.TagCanary}, revisions.LabelInjection)
		assert.Empty(t, warnings, "a switch to a published canary needs no warning")
		e.restart(bookinfo, "reviews-v2")
		for _, p := range e.waitRolledOut(bookinfo, "reviews-v2") {
			assert.Equal(t, canary.Name, lcSidecarRevision(t, &p))
		}
		e.restart(other, "web")
		for _, p := range e.waitRolledOut(other, "web") {
			assert.Equal(t, stable.Name, lcSidecarRevision(t, &p))
		}
		for _, name := range []string{"details", "ratings", "reviews-v1", "reviews-v3", "productpage"} {
			for _, p := range e.waitRolledOut(bookinfo, name) {
				assert.Equal(t, stable.Name, lcSidecarRevision(t, &p), "%s was not restarted and keeps stable", name)
			}
		}
		m := e.waitMesh("one pod on the canary", func(m *v1alpha1.Mesh) bool {
			r := lcRevisionStatus(m, canary.Name)
			return r != nil && r.Pods == 1 && m.Status.DataPlane.Pods == 7
		})
		assert.Equal(t, []string{bookinfo}, lcRevisionStatus(m, canary.Name).Namespaces)
		assert.Equal(t, []string{other}, lcRevisionStatus(m, stable.Name).Namespaces)
		// The pods of bookinfo not yet restarted run stable while their namespace asks for the canary.
		assert.Equal(t, int32(5), m.Status.DataPlane.Outdated)
	})

	t.Run("revoking while a namespace is labelled canary is refused and names the namespace", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = m.Spec.Revisions[:1]
			m.Spec.Canary = ""
		})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "cannot revoke canary 1-23-6")
		assert.Contains(t, err.Error(), bookinfo+" (istio.io/rev=canary)")
	})

	t.Run("promoting while the canary's control plane is not Ready is refused, and allowed when forced", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) { m.Spec.Revisions[1].ControlPlane.Replicas = ptr.To[int32](0) })
		require.NoError(t, err, "scaling a control plane is an allowed edit")
		e.waitMesh("canary control plane not ready", func(m *v1alpha1.Mesh) bool {
			r := lcRevisionStatus(m, canary.Name)
			return r != nil && !r.ControlPlaneReady && meta.IsStatusConditionFalse(m.Status.Conditions, "Ready")
		})
		_, err = e.update(func(m *v1alpha1.Mesh) { m.Spec.Stable, m.Spec.Canary = canary.Name, "" })
		require.Error(t, err)
		se := lcStatusError(t, err)
		assert.Equal(t, metav1.StatusReasonInvalid, se.ErrStatus.Reason)
		assert.Contains(t, err.Error(), "cannot promote canary 1-23-6: its control plane is not Ready")
		assert.Contains(t, err.Error(), "meshrev.io/force=true")

		warnings, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Stable, m.Spec.Canary = canary.Name, ""
			m.Annotations = map[string]string{revisions.AnnotationForce: "true"}
		})
		require.NoError(t, err)
		require.Len(t, warnings, 1)
		assert.Contains(t, warnings[0], "promoting canary 1-23-6 although its control plane is not Ready (forced)")
		_, err = e.update(func(m *v1alpha1.Mesh) {
			delete(m.Annotations, revisions.AnnotationForce)
			for i := range m.Spec.Revisions {
				if m.Spec.Revisions[i].Name == canary.Name {
					m.Spec.Revisions[i].ControlPlane.Replicas = ptr.To[int32](1)
				}
			}
		})
		require.NoError(t, err)
		e.waitDeploymentAvailable(lcMeshNamespace, "istiod-"+canary.Name)
	})

	t.Run("promotion rewrites the canary labels and the report lists the outdated workloads", func(t *testing.T) {
		m := e.waitMesh("promoted, relabelled, ready", func(m *v1alpha1.Mesh) bool {
			return m.Status.Phase == v1alpha1.PhaseDataPlaneUpgrading && m.Status.Previous == stable.Name &&
				meta.IsStatusConditionTrue(m.Status.Conditions, "Ready")
		})
		assert.Equal(t, revisions.TagStable, e.namespaceLabel(bookinfo, revisions.LabelRev))
		assert.Equal(t, []string{"Install:->1-22-6", "DeployCanary:1-22-6->1-23-6", "Promote:1-22-6->1-23-6"}, lcHistory(m))
		want := []string{other + "/Deployment/web"}
		for _, name := range []string{"details", "productpage", "ratings", "reviews-v1", "reviews-v3"} {
			want = append(want, bookinfo+"/Deployment/"+name)
		}
		slices.Sort(want)
		assert.Equal(t, want, lcOutdated(m), "every workload but reviews-v2 still runs 1.22.6")
		for _, w := range m.Status.DataPlane.OutdatedWorkloads {
			assert.Equal(t, []string{stable.Name}, w.Revisions)
			assert.Equal(t, canary.Name, w.Want)
		}
		assert.Equal(t, int32(6), m.Status.DataPlane.Outdated)
		assert.Equal(t, int32(1), m.Status.DataPlane.UpToDate)
		e.waitEvent("Mesh", v1alpha1.MeshName, "Promote")
		ev := e.waitEvent("Namespace", bookinfo, "Relabelled")
		assert.Contains(t, ev.Message, "istio.io/rev=canary relabelled stable")
	})

	t.Run("a namespace labelled canary after the promotion is warned, admitted and relabelled stable", func(t *testing.T) {
		late := NewNamespace(t, "late", nil)
		warnings := e.setNamespaceLabels(late, map[string]string{revisions.LabelRev: revisions.TagCanary})
		require.Len(t, warnings, 1, "warnings: %q", warnings)
		assert.Contains(t, warnings[0], "no canary is published, so the pod gets the stable revision 1-23-6")
		require.NoError(t, wait.PollUntilContextTimeout(ctx, lcPoll, lcWaitTimeout, true, func(context.Context) (bool, error) {
			return e.namespaceLabel(late, revisions.LabelRev) == revisions.TagStable, nil
		}), "the controller relabels it")

		warnings = e.setNamespaceLabels(late, map[string]string{revisions.LabelRev: "1-21-0"})
		require.Len(t, warnings, 1, "warnings: %q", warnings)
		assert.Contains(t, warnings[0], `names revision "1-21-0", which is not published (published: 1-22-6, 1-23-6 (stable))`)
		warnings = e.setNamespaceLabels(late, map[string]string{revisions.LabelRev: revisions.TagStable, revisions.LabelInjection: revisions.InjectionEnabled})
		require.Len(t, warnings, 1, "warnings: %q", warnings)
		assert.Contains(t, warnings[0], "sets both istio-injection=enabled and istio.io/rev=stable: istio-injection wins")
	})

	t.Run("setting stable back after a promotion is refused", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) { m.Spec.Stable = stable.Name })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "cannot set stable from 1-23-6 to 1-22-6")
		assert.Contains(t, err.Error(), "cannot be revoked")
	})

	t.Run("unpublishing while pods run the old revision is refused with their count", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = slices.DeleteFunc(m.Spec.Revisions, func(r v1alpha1.Revision) bool { return r.Name == stable.Name })
		})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "cannot unpublish 1-22-6: 6 pods (")
		assert.Contains(t, err.Error(), "and 1 more")
		assert.Contains(t, err.Error(), "meshrev unpublish --force")
	})

	t.Run("rolling the outdated workloads empties the report: ReadyToUnpublish", func(t *testing.T) {
		m := e.mesh()
		for _, w := range m.Status.DataPlane.OutdatedWorkloads {
			require.Equal(t, "Deployment", w.Kind)
			e.restart(w.Namespace, w.Name)
		}
		for _, w := range m.Status.DataPlane.OutdatedWorkloads {
			for _, p := range e.waitRolledOut(w.Namespace, w.Name) {
				assert.Equal(t, canary.Name, lcSidecarRevision(t, &p))
			}
		}
		m = e.waitMesh("every pod up to date", func(m *v1alpha1.Mesh) bool { return m.Status.Phase == v1alpha1.PhaseReadyToUnpublish })
		assert.Empty(t, m.Status.DataPlane.OutdatedWorkloads)
		assert.Equal(t, int32(7), m.Status.DataPlane.UpToDate)
		assert.Equal(t, int32(0), lcRevisionStatus(m, stable.Name).Pods)
	})

	t.Run("unpublishing the old revision removes it and its control plane", func(t *testing.T) {
		_, err := e.update(func(m *v1alpha1.Mesh) {
			m.Spec.Revisions = slices.DeleteFunc(m.Spec.Revisions, func(r v1alpha1.Revision) bool { return r.Name == stable.Name })
		})
		require.NoError(t, err)
		e.waitGone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "istiod-" + stable.Name}})
		e.waitGone(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "istiod-" + stable.Name}})
		m := e.waitMesh("stable again", func(m *v1alpha1.Mesh) bool { return m.Status.Phase == v1alpha1.PhaseStable && m.Status.Previous == "" })
		assert.Equal(t, []string{"Install:->1-22-6", "DeployCanary:1-22-6->1-23-6", "Promote:1-22-6->1-23-6", "Unpublish:1-22-6->1-23-6"}, lcHistory(m))
		require.Len(t, m.Status.Revisions, 1)
		assert.Equal(t, []string{bookinfo, other}, lcSortedNamespaces(lcRevisionStatus(m, canary.Name)))
		assert.Equal(t, m.Generation, m.Status.ObservedGeneration)
		assert.True(t, meta.IsStatusConditionFalse(m.Status.Conditions, "Progressing"))
		e.waitEvent("Mesh", v1alpha1.MeshName, "ControlPlaneDeleted")
		// The canary's control plane is still there, owned by the Mesh.
		var d appsv1.Deployment
		require.NoError(t, e.c.Get(ctx, client.ObjectKey{Namespace: lcMeshNamespace, Name: "istiod-" + canary.Name}, &d))
		require.Len(t, d.OwnerReferences, 1)
		assert.Equal(t, "Mesh", d.OwnerReferences[0].Kind)
	})
}

// TestLifecycleRollback is the seed's rollback path: switch back, redeploy,
// revoke; the table and the status are back to the pre-upgrade state.
func TestLifecycleRollback(t *testing.T) {
	e := lcSetup(t, nil)
	stable, canary := lcRevision("1.22.6"), lcRevision("1.23.6")
	e.createMesh(stable)
	before := e.mesh()

	ns := NewNamespace(t, "bookinfo", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	e.deploy(ns, "reviews-v2")
	e.waitRolledOut(ns, "reviews-v2")
	_, err := e.update(func(m *v1alpha1.Mesh) {
		m.Spec.Revisions = append(m.Spec.Revisions, canary)
		m.Spec.Canary = canary.Name
	})
	require.NoError(t, err)
	e.waitDeploymentAvailable(lcMeshNamespace, "istiod-"+canary.Name)

	e.setNamespaceLabels(ns, map[string]string{revisions.LabelRev: revisions.TagCanary}, revisions.LabelInjection)
	e.restart(ns, "reviews-v2")
	for _, p := range e.waitRolledOut(ns, "reviews-v2") {
		require.Equal(t, canary.Name, lcSidecarRevision(t, &p))
	}

	// Switch back and redeploy: the pod returns to stable.
	e.setNamespaceLabels(ns, map[string]string{revisions.LabelRev: revisions.TagStable})
	e.restart(ns, "reviews-v2")
	for _, p := range e.waitRolledOut(ns, "reviews-v2") {
		require.Equal(t, stable.Name, lcSidecarRevision(t, &p))
	}
	e.waitMesh("no pod on the canary", func(m *v1alpha1.Mesh) bool {
		r := lcRevisionStatus(m, canary.Name)
		return r != nil && r.Pods == 0
	})

	warnings, err := e.update(func(m *v1alpha1.Mesh) {
		m.Spec.Revisions = m.Spec.Revisions[:1]
		m.Spec.Canary = ""
	})
	require.NoError(t, err)
	assert.Empty(t, warnings, "no pod runs the revoked canary")
	e.waitGone(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: lcMeshNamespace, Name: "istiod-" + canary.Name}})
	m := e.waitMesh("back to stable", func(m *v1alpha1.Mesh) bool {
		return m.Status.Phase == v1alpha1.PhaseStable && len(m.Status.Revisions) == 1
	})

	assert.Equal(t, before.Spec, m.Spec, "the table is back to the pre-upgrade state")
	assert.Equal(t, before.Status.Revisions[0].Name, m.Status.Revisions[0].Name)
	assert.Equal(t, []string{"stable"}, m.Status.Revisions[0].Tags)
	assert.Equal(t, []string{ns}, m.Status.Revisions[0].Namespaces)
	assert.Equal(t, int32(1), m.Status.Revisions[0].Pods)
	assert.Empty(t, m.Status.Previous)
	assert.Empty(t, m.Status.DataPlane.OutdatedWorkloads)
	assert.Equal(t, []string{"Install:->1-22-6", "DeployCanary:1-22-6->1-23-6", "Revoke:1-23-6->1-22-6"}, lcHistory(m))
	e.waitEvent("Mesh", v1alpha1.MeshName, "Revoke")
}

func lcSortedNamespaces(r *v1alpha1.RevisionStatus) []string {
	if r == nil {
		return nil
	}
	out := slices.Clone(r.Namespaces)
	slices.SortFunc(out, strings.Compare)
	return out
}
