package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// ConditionControlPlanesInstalled is True when every helm control plane's
// release is installed as the spec says, False with reason InstallFailed and
// the error otherwise (the controller retries with backoff).
const ConditionControlPlanesInstalled = "ControlPlanesInstalled"

// Helm release statuses meshrev reports.
const (
	// ReleaseDeployed: the release runs what the spec says.
	ReleaseDeployed = "deployed"
	// ReleaseFailed: the last install or upgrade failed (LastError says why).
	ReleaseFailed = "failed"
)

// reconcileHelm brings the helm control planes in line with the spec: the
// base release (CRDs, Istio's default validating webhook on the stable
// revision) first, then one istiod release per helm revision; releases
// meshrev installed for revisions no longer published are uninstalled.
// Nothing is written when what is installed (the hash stamped on the
// Deployment and the CRDs, read from the cache) is what the spec says. It
// returns the install failures, recorded per revision for the status.
func (r *Reconciler) reconcileHelm(ctx context.Context, mesh *v1alpha1.Mesh) error {
	var helmRevs []*v1alpha1.Revision
	for i := range mesh.Spec.Revisions {
		if revisions.ControlPlaneSource(&mesh.Spec.Revisions[i]) == revisions.SourceHelm {
			helmRevs = append(helmRevs, &mesh.Spec.Revisions[i])
		}
	}
	h := r.helm
	if h == nil {
		if len(helmRevs) > 0 {
			return errors.New("helm control planes need the controller's RestConfig")
		}
		return nil
	}
	var failures []error
	fail := func(rev string, err error) {
		failures = append(failures, err)
		h.record(rev, releaseResult{status: ReleaseFailed, err: err.Error()})
	}

	if len(helmRevs) > 0 {
		if err := r.reconcileBase(ctx, mesh, helmRevs); err != nil {
			// Without the CRDs no istiod release is installed: each reports why.
			for _, rev := range helmRevs {
				fail(rev.Name, err)
			}
			return errors.Join(failures...)
		}
	}
	for _, rev := range helmRevs {
		if err := r.reconcileIstiod(ctx, mesh, rev); err != nil {
			fail(rev.Name, err)
		}
	}
	if err := r.uninstallUnpublished(ctx, mesh, helmRevs, len(failures) > 0); err != nil {
		failures = append(failures, err)
	}
	return errors.Join(failures...)
}

// reconcileBase applies Istio's base chart of the newest helm revision's
// version, never older than the CRDs installed, with defaultRevision the
// stable revision (which moves Istio's default validating webhook on promote).
func (r *Reconciler) reconcileBase(ctx context.Context, mesh *v1alpha1.Mesh, helmRevs []*v1alpha1.Revision) error {
	newest := helmRevs[0]
	for _, rev := range helmRevs[1:] {
		if versionLess(revisions.ChartVersion(newest), revisions.ChartVersion(rev)) {
			newest = rev
		}
	}
	version := revisions.ChartVersion(newest)
	crd := readmodel.CRDMeta()
	err := r.client.Get(ctx, client.ObjectKey{Name: readmodel.IstioVersionCRD}, crd)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read CRD %s: %w", readmodel.IstioVersionCRD, err)
	}
	if installed := crd.Labels[readmodel.LabelVersion]; installed != "" && versionLess(version, installed) {
		// The validator refuses such a canary; a mesh that already has it
		// (older CRDs came later, or an external install) keeps its CRDs.
		log.FromContext(ctx).V(1).Info("Istio CRDs are newer than every helm revision; base chart not applied", "installed", installed, "newest", version)
		return nil
	}
	d := baseRelease(revisions.ChartRepository(newest.ControlPlane.Helm), version, mesh.Spec.Stable, mesh, r.opts.MeshNamespace)
	if crd.Annotations[AnnotationReleaseHash] == d.hash {
		return nil
	}
	if err := r.helm.apply(ctx, d); err != nil {
		return fmt.Errorf("CRDs first: %w", err)
	}
	r.recorder.Eventf(mesh, nil, corev1.EventTypeNormal, "CRDsApplied", "Apply", "applied Istio's base chart %s (CRDs; default validating webhook on revision %s) as release %s/%s", version, mesh.Spec.Stable, r.opts.MeshNamespace, BaseRelease)
	return nil
}

// reconcileIstiod installs or upgrades the istiod release of rev unless the
// Deployment it created already carries the hash of what the spec says.
func (r *Reconciler) reconcileIstiod(ctx context.Context, mesh *v1alpha1.Mesh, rev *v1alpha1.Revision) error {
	d, err := istiodRelease(mesh, rev, r.opts.MeshNamespace)
	if err != nil {
		return err
	}
	var dep appsv1.Deployment
	err = r.client.Get(ctx, client.ObjectKey{Namespace: r.opts.MeshNamespace, Name: revisions.ControlPlaneName(rev.Name)}, &dep)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read control plane of revision %s: %w", rev.Name, err)
	}
	if err == nil && dep.Annotations[AnnotationReleaseHash] == d.hash {
		// Installed as the spec says. A manager that has not acted on the
		// release itself (restarted, or a new leader) reports what Helm's
		// storage recorded, read once.
		if r.helm.deployed(rev.Name, d.version) {
			return nil
		}
		res, ok, err := r.helm.lastResult(ctx, d.name)
		if err != nil {
			return fmt.Errorf("control plane of revision %s: %w", rev.Name, err)
		}
		if ok && res.status == ReleaseDeployed {
			// The records' owner too: a manager stopped between an upgrade
			// and that patch left it undone.
			if err := r.helm.ownRecords(ctx, r.client, d); err != nil {
				return fmt.Errorf("control plane of revision %s: %w", rev.Name, err)
			}
			r.helm.record(rev.Name, res)
			return nil
		}
		// Objects stamped, but the last record is not deployed (an upgrade
		// that failed after applying them) or there is none (Helm's Secrets
		// deleted by hand): install or upgrade again, which takes the
		// objects back into a deployed release.
	}
	if err := r.helm.apply(ctx, d); err != nil {
		return fmt.Errorf("control plane of revision %s: %w", rev.Name, err)
	}
	if err := r.helm.ownRecords(ctx, r.client, d); err != nil {
		return fmt.Errorf("control plane of revision %s: %w", rev.Name, err)
	}
	r.helm.record(rev.Name, releaseResult{status: ReleaseDeployed, chartVersion: d.version})
	r.recorder.Eventf(mesh, nil, corev1.EventTypeNormal, "ControlPlaneInstalled", "Install", "installed Istio's istiod chart %s as release %s/%s for revision %s", d.version, r.opts.MeshNamespace, d.name, rev.Name)
	return nil
}

// uninstallUnpublished uninstalls the istiod releases meshrev installed whose
// revision is no longer a helm revision (revoked, unpublished, moved to
// another source), exactly those. Helm's storage is listed only when the
// spec changed (or after a failure), not on every reconcile.
func (r *Reconciler) uninstallUnpublished(ctx context.Context, mesh *v1alpha1.Mesh, helmRevs []*v1alpha1.Revision, failed bool) error {
	h := r.helm
	h.mu.Lock()
	listed := h.listedGeneration
	h.mu.Unlock()
	if listed == mesh.Generation && !failed {
		return nil
	}
	// A mesh that has no helm revision and reported none has no release of
	// meshrev's: Helm's storage is not read (nor its Secrets needed).
	hadHelm := slices.ContainsFunc(mesh.Status.Revisions, func(s v1alpha1.RevisionStatus) bool {
		return s.ControlPlane != nil && s.ControlPlane.Source == revisions.SourceHelm
	})
	if len(helmRevs) == 0 && !hadHelm {
		return nil
	}
	names, err := h.managedReleases(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		rev, ok := releaseRevision(name)
		if !ok || slices.ContainsFunc(helmRevs, func(r *v1alpha1.Revision) bool { return r.Name == rev }) {
			continue
		}
		if err := h.uninstall(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		h.forget(rev)
		r.recorder.Eventf(mesh, nil, corev1.EventTypeNormal, "ControlPlaneUninstalled", "Uninstall", "uninstalled release %s/%s: revision %s is no longer published with a helm control plane", r.opts.MeshNamespace, name, rev)
	}
	if len(errs) == 0 {
		h.mu.Lock()
		h.listedGeneration = mesh.Generation
		h.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (h *helmReleases) record(rev string, res releaseResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.results[rev] = res
}

// deployed reports whether this manager recorded rev's release deployed at
// chart version.
func (h *helmReleases) deployed(rev, version string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	res, ok := h.results[rev]
	return ok && res.status == ReleaseDeployed && res.chartVersion == version
}

func (h *helmReleases) forget(rev string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.results, rev)
}

// reportControlPlanes adds each revision's control-plane report and the
// ControlPlanesInstalled condition to st.
func (r *Reconciler) reportControlPlanes(mesh *v1alpha1.Mesh, st *v1alpha1.MeshStatus) {
	specs := map[string]*v1alpha1.Revision{}
	for i := range mesh.Spec.Revisions {
		specs[mesh.Spec.Revisions[i].Name] = &mesh.Spec.Revisions[i]
	}
	var failed []string
	anyHelm := false
	for i := range st.Revisions {
		rs := &st.Revisions[i]
		rev := specs[rs.Name]
		if rev == nil {
			continue
		}
		src := revisions.ControlPlaneSource(rev)
		if src == "" {
			rs.ControlPlane = nil
			continue
		}
		cs := &v1alpha1.ControlPlaneStatus{Source: src}
		if src == revisions.SourceHelm {
			anyHelm = true
			cs.Release = revisions.ControlPlaneName(rev.Name)
			if r.helm != nil {
				r.helm.mu.Lock()
				res, ok := r.helm.results[rev.Name]
				r.helm.mu.Unlock()
				if ok {
					cs.ReleaseStatus, cs.ChartVersion, cs.LastError = res.status, res.chartVersion, res.err
				}
			}
			if cs.LastError != "" {
				failed = append(failed, rev.Name+": "+cs.LastError)
			}
		}
		rs.ControlPlane = cs
	}
	if !anyHelm {
		meta.RemoveStatusCondition(&st.Conditions, ConditionControlPlanesInstalled)
		return
	}
	c := metav1.Condition{Type: ConditionControlPlanesInstalled, Status: metav1.ConditionTrue, Reason: "Installed",
		Message: "every helm control plane is installed as the spec says", ObservedGeneration: mesh.Generation, LastTransitionTime: r.now()}
	if len(failed) > 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "InstallFailed", strings.Join(failed, "; ")+" (retried with backoff)"
	}
	meta.SetStatusCondition(&st.Conditions, c)
}

// versionLess reports a < b for chart versions; a version that does not
// parse sorts first.
func versionLess(a, b string) bool {
	va, errA := revisions.ParseVersion(a)
	vb, errB := revisions.ParseVersion(b)
	switch {
	case errA != nil:
		return errB == nil
	case errB != nil:
		return false
	}
	return va.Compare(vb) < 0
}
