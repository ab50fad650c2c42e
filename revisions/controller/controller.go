// Package controller is meshrev's lifecycle controller: it keeps the Mesh
// status (phase, per-revision report, data-plane report, history,
// conditions), rewrites namespace labels istio.io/rev=canary to stable after
// a promotion, and runs each revision's control plane (Deployment and
// Service istiod-<revision>). It decides nothing itself: the decision table
// and the phase come from package revisions.
package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Options configures the controller.
type Options struct {
	// OwnNamespace is meshrev's namespace (never injected).
	OwnNamespace string
	// MeshNamespace is where control planes run (istio-system).
	MeshNamespace string
	// HistoryLimit bounds status.history (DefaultHistoryLimit when 0).
	HistoryLimit int
	// AfterRelabel, when set, is called after each namespace the promotion
	// relabels; an error ends the reconcile there. Tests use it to stop the
	// manager half way through a promotion.
	AfterRelabel func(ctx context.Context, namespace string) error
	// Now returns the current time (time.Now when nil).
	Now func() time.Time
	// TemplatesCheck, when set, says whether a revision's templates render
	// (the injector's own rendering); a revision whose templates do not gets
	// the condition TemplatesReady=False and an Event, until fixed.
	TemplatesCheck func(ctx context.Context, mesh *v1alpha1.Mesh, rev v1alpha1.Revision) error
	// Coalesce is how long pod events are gathered before one reconcile
	// (DefaultCoalesce when 0): under churn, at most one reconcile per
	// Coalesce (status writes: see CountsInterval).
	Coalesce time.Duration
	// CountsInterval is the least time between two status writes that
	// change only the data-plane counts (DefaultCountsInterval when 0); a
	// write that changes anything else (phase, lifecycle steps, a new
	// generation, control-plane readiness, conditions) is not delayed.
	CountsInterval time.Duration

	// RestConfig is the cluster Helm installs the helm control planes into
	// (the manager's); without it a helm control plane fails with the reason.
	RestConfig *rest.Config
	// ChartCacheDir keeps the charts fetched for helm control planes, by
	// repository and version (default <temp dir>/meshrev-charts).
	ChartCacheDir string
}

// DefaultCoalesce is Options.Coalesce when unset: at most two reconciles
// a second under pod churn, well inside the 5 s status lag budget.
const DefaultCoalesce = 500 * time.Millisecond

// DefaultCountsInterval is Options.CountsInterval when unset: steady pod
// churn costs at most one Mesh status write per 5 s, with the latest
// counts; the phase (what status lag measures) is written at once.
const DefaultCountsInterval = 5 * time.Second

// EventRecorder is the part of the events API the controller uses.
type EventRecorder interface {
	// Eventf records an event about regarding.
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Reconciler reconciles the Mesh "default".
type Reconciler struct {
	client   client.Client
	recorder EventRecorder
	opts     Options
	// helm runs the helm control planes' releases (nil without RestConfig).
	helm *helmReleases
	// dp keeps the data-plane report per namespace between reconciles.
	dp *dataPlaneState
	// staleRV is the Mesh resourceVersion the last status write replaced:
	// seeing it again means the cache has not caught up with that write yet.
	staleRV string
	// lastWrite is when the status was last written (coalescing).
	lastWrite time.Time
	metrics   *controllerMetrics
}

// ControllerName names the controller (logs, metrics, events).
const ControllerName = "meshrev-controller"

// Setup registers the controller with mgr. It runs only on the leader
// (controller-runtime's default for controllers). See New.
func Setup(mgr ctrl.Manager, opts Options) error {
	c, err := New(mgr, opts)
	if err != nil {
		return err
	}
	if err := mgr.Add(c); err != nil {
		return fmt.Errorf("add the mesh controller: %w", err)
	}
	return nil
}

// New returns the controller, unmanaged: the caller starts it, once (a
// controller cannot be started twice), e.g. once per leadership term. Every
// watch enqueues the one Mesh, so bursts of pod events coalesce into one
// reconcile. It reads through mgr's cache: namespaces, injected pods (as
// readmodel.PodTransform keeps them), the templates ConfigMaps of
// OwnNamespace, and the Deployments and Services of MeshNamespace.
func New(mgr ctrl.Manager, opts Options) (controller.Controller, error) {
	if opts.MeshNamespace == "" {
		return nil, errors.New("controller options: MeshNamespace is required (the namespace of the control planes, e.g. istio-system)")
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = DefaultCoalesce
	}
	if opts.CountsInterval <= 0 {
		opts.CountsInterval = DefaultCountsInterval
	}
	m, err := newControllerMetrics(ctrlmetrics.Registry)
	if err != nil {
		return nil, err
	}
	r := &Reconciler{client: mgr.GetClient(), recorder: mgr.GetEventRecorder(ControllerName), opts: opts, dp: newDataPlaneState(), metrics: m}
	if opts.RestConfig != nil {
		dir := opts.ChartCacheDir
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "meshrev-charts")
		}
		r.helm = newHelmReleases(opts.RestConfig, dir, opts.MeshNamespace)
	}
	c, err := controller.NewUnmanaged("mesh", controller.Options{
		Reconciler:         r,
		Logger:             mgr.GetLogger(),
		SkipNameValidation: ptr.To(true),
	})
	if err != nil {
		return nil, fmt.Errorf("create the mesh controller: %w", err)
	}
	enqueue := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{meshRequest}
	})
	injected := predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, ok := o.GetLabels()[revisions.LabelRevision]
		return ok
	})
	// A pod's report depends on its labels, annotations, owner and whether
	// it is terminating, not on its status: readiness changes are ignored.
	podChanged := predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		return !maps.Equal(o.GetLabels(), n.GetLabels()) || !maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
			(o.GetDeletionTimestamp() == nil) != (n.GetDeletionTimestamp() == nil) ||
			!equality.Semantic.DeepEqual(o.GetOwnerReferences(), n.GetOwnerReferences())
	}}
	ownerChanged := predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !equality.Semantic.DeepEqual(e.ObjectOld.GetOwnerReferences(), e.ObjectNew.GetOwnerReferences())
		},
		DeleteFunc: func(event.DeleteEvent) bool { return false },
	}
	controlPlane := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == opts.MeshNamespace && o.GetLabels()[LabelApp] == AppIstiod
	})
	ownConfigMaps := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return opts.TemplatesCheck != nil && o.GetNamespace() == opts.OwnNamespace
	})
	cache := mgr.GetCache()
	for _, src := range []source.Source{
		source.Kind(cache, client.Object(&v1alpha1.Mesh{}), &handler.EnqueueRequestForObject{}, predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == v1alpha1.MeshName
		})),
		source.Kind(cache, client.Object(&corev1.Namespace{}), r.markNamespace(0), predicate.LabelChangedPredicate{}),
		source.Kind(cache, client.Object(readmodel.Pod()), r.markNamespace(opts.Coalesce), injected, podChanged),
		// A pod's top owner goes through its ReplicaSet: a ReplicaSet that
		// reaches the cache after its pods makes its namespace read again.
		source.Kind(cache, client.Object(readmodel.ReplicaSetMeta()), r.markNamespace(opts.Coalesce), ownerChanged),
		source.Kind(cache, client.Object(&appsv1.Deployment{}), enqueue, controlPlane),
		source.Kind(cache, client.Object(&corev1.Service{}), enqueue, controlPlane),
		source.Kind(cache, client.Object(&corev1.ConfigMap{}), enqueue, ownConfigMaps),
	} {
		if err := c.Watch(src); err != nil {
			return nil, fmt.Errorf("set up the mesh controller: %w", err)
		}
	}
	return c, nil
}

// meshRequest is the one request every watch enqueues.
var meshRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: v1alpha1.MeshName}}

// markNamespace is the handler of the pod and namespace watches: it marks
// the object's namespace (a namespace's own name) for the next reconcile
// and enqueues the Mesh, after delay so that a burst of events makes one
// reconcile.
func (r *Reconciler) markNamespace(delay time.Duration) handler.EventHandler {
	mark := func(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		ns := o.GetNamespace()
		if ns == "" {
			ns = o.GetName()
		}
		r.dp.markDirty(ns)
		if delay > 0 {
			q.AddAfter(meshRequest, delay)
		} else {
			q.Add(meshRequest)
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			mark(e.Object, q)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			mark(e.ObjectNew, q)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			mark(e.Object, q)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			mark(e.Object, q)
		},
	}
}

// Reconcile brings the cluster and the Mesh status in line with the Mesh spec.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	var mesh v1alpha1.Mesh
	if err := r.client.Get(ctx, req.NamespacedName, &mesh); err != nil {
		// Gone: the garbage collector removes the control planes it owned.
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if mesh.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	if r.staleRV != "" && mesh.ResourceVersion == r.staleRV {
		// The cache has not seen the last status write yet: computing from
		// it would only end in a conflict. Its update event requeues too.
		return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}

	if err := r.reconcileControlPlanes(ctx, &mesh); err != nil {
		return reconcile.Result{}, err
	}
	// A failed Helm install is reported in the status, then retried with
	// the controller's backoff (the error returned at the end).
	helmErr := r.reconcileHelm(ctx, &mesh)

	// The facts without the pods: the data-plane report is kept per
	// namespace and only the namespaces that changed are read again.
	computeStart := time.Now()
	var facts revisions.Facts
	var err error
	if facts.Namespaces, err = readmodel.Namespaces(ctx, r.client); err != nil {
		return reconcile.Result{}, fmt.Errorf("read the cluster for mesh %s: %w", mesh.Name, err)
	}
	if facts.ControlPlaneReady, err = readmodel.ControlPlaneReadiness(ctx, r.client, &mesh, r.opts.MeshNamespace); err != nil {
		return reconcile.Result{}, fmt.Errorf("read the cluster for mesh %s: %w", mesh.Name, err)
	}
	dp, refreshed, err := r.dp.refresh(ctx, r.client, &mesh, r.opts.OwnNamespace, facts.Namespaces)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("read the pods for mesh %s: %w", mesh.Name, err)
	}
	r.metrics.namespacesRefreshed.Add(float64(refreshed))
	status, steps := ComputeStatusWith(&mesh, StatusInput{OwnNamespace: r.opts.OwnNamespace, HistoryLimit: r.opts.HistoryLimit, Now: r.now()}, &facts, &dp)
	r.metrics.computeSeconds.Observe(time.Since(computeStart).Seconds())
	r.reportControlPlanes(&mesh, &status)
	templatesBroke := r.templatesCondition(ctx, &mesh, &status)

	// The steps (history, previous, recorded tags) are written before any
	// relabel: the intent is on record first, and the relabel below is an
	// invariant the next reconcile finishes whatever happened in between.
	// A change of counts alone waits until CountsInterval has passed since
	// the last write, so that churn costs one write per interval at most.
	var result reconcile.Result
	if !equality.Semantic.DeepEqual(mesh.Status, status) {
		urgent := len(steps) > 0 || !CountsOnly(&mesh.Status, &status)
		if wait := r.opts.CountsInterval - time.Since(r.lastWrite); !urgent && wait > 0 {
			result.RequeueAfter = wait
		} else {
			from := mesh.ResourceVersion
			mesh.Status = status
			if err := r.client.Status().Update(ctx, &mesh); err != nil {
				if apierrors.IsConflict(err) {
					// Someone else changed the Mesh (its spec, or another writer):
					// say so, count it, and compute again from the fresh object.
					r.metrics.statusConflicts.Inc()
					logger.Info("warning: the Mesh changed while its status was written (409 conflict); recomputing", "mesh", mesh.Name, "resourceVersion", from)
					return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
				}
				return reconcile.Result{}, fmt.Errorf("update status of mesh %s: %w", mesh.Name, err)
			}
			r.staleRV, r.lastWrite = from, time.Now()
			r.metrics.statusWrites.Inc()
			logger.V(1).Info("status updated", "phase", status.Phase, "outdated", status.DataPlane.Outdated)
		}
	}
	if templatesBroke != nil {
		r.recorder.Eventf(&mesh, nil, corev1.EventTypeWarning, templatesBroke.Reason, "Inject", "%s", templatesBroke.Message)
	}
	for _, s := range steps {
		logger.Info("lifecycle step", "action", s.Action, "from", s.From, "to", s.To)
		r.recorder.Eventf(&mesh, nil, corev1.EventTypeNormal, s.Action, s.Action, "%s", describeStep(s))
	}

	if err := r.relabel(ctx, &mesh, PendingRelabel(&mesh.Spec, facts.Namespaces)); err != nil {
		if apierrors.IsConflict(err) {
			// The cache was behind the namespace (or a person changed it):
			// look again with fresh data rather than report an error.
			logger.V(1).Info("namespace changed while relabelling; retrying", "reason", err.Error())
			return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
		return reconcile.Result{}, err
	}
	if helmErr != nil {
		return result, fmt.Errorf("helm control planes of mesh %s: %w", mesh.Name, helmErr)
	}
	return result, nil
}

// templatesCondition sets ConditionTemplatesReady in st from
// Options.TemplatesCheck: False while a revision's templates (its
// ConfigMap, the defaults ConfigMap) do not render, which the injector
// survives by injecting its last good render or the built-in templates. It
// returns the condition when it has just turned False (for an Event).
func (r *Reconciler) templatesCondition(ctx context.Context, mesh *v1alpha1.Mesh, st *v1alpha1.MeshStatus) *metav1.Condition {
	if r.opts.TemplatesCheck == nil {
		return nil
	}
	var broken []string
	for _, rev := range mesh.Spec.Revisions {
		if err := r.opts.TemplatesCheck(ctx, mesh, rev); err != nil {
			broken = append(broken, fmt.Sprintf("revision %s: %v", rev.Name, err))
		}
	}
	c := metav1.Condition{Type: ConditionTemplatesReady, Status: metav1.ConditionTrue, Reason: "TemplatesRender",
		Message: "the templates of every published revision render", ObservedGeneration: mesh.Generation, LastTransitionTime: r.now()}
	if len(broken) > 0 {
		c.Status, c.Reason = metav1.ConditionFalse, "TemplatesBroken"
		c.Message = fmt.Sprintf("injection templates do not render, so pods are injected with their last good render or the built-in templates until they are fixed: %s", strings.Join(broken, "; "))
	}
	was := meta.FindStatusCondition(mesh.Status.Conditions, ConditionTemplatesReady)
	meta.SetStatusCondition(&st.Conditions, c)
	if c.Status == metav1.ConditionFalse && (was == nil || was.Status != metav1.ConditionFalse || was.Message != c.Message) {
		return &c
	}
	return nil
}

func (r *Reconciler) now() metav1.Time {
	now := time.Now
	if r.opts.Now != nil {
		now = r.opts.Now
	}
	// Whole seconds: that is what the API server keeps, so the status read
	// back compares equal to the status written.
	return metav1.NewTime(now().Truncate(time.Second))
}

// describeStep says what a lifecycle step did, for events.
func describeStep(s v1alpha1.HistoryEntry) string {
	switch revisions.Action(s.Action) {
	case revisions.ActionInstall:
		return fmt.Sprintf("installed with stable revision %s", s.To)
	case revisions.ActionDeployCanary:
		return fmt.Sprintf("deployed canary revision %s beside stable %s", s.To, s.From)
	case revisions.ActionPromote:
		return fmt.Sprintf("promoted canary %s to stable (was %s); namespaces labelled %s=%s are relabelled %s", s.To, s.From, revisions.LabelRev, revisions.TagCanary, revisions.TagStable)
	case revisions.ActionRevoke:
		return fmt.Sprintf("revoked canary revision %s; stable stays %s", s.From, s.To)
	case revisions.ActionUnpublish:
		return fmt.Sprintf("unpublished revision %s; stable is %s", s.From, s.To)
	}
	return fmt.Sprintf("%s from %q to %q", s.Action, s.From, s.To)
}

// relabel rewrites istio.io/rev=canary to stable on each pending namespace,
// one at a time, each with an optimistic lock so that a concurrent change by
// a person is not overwritten (the next reconcile looks again).
func (r *Reconciler) relabel(ctx context.Context, mesh *v1alpha1.Mesh, pending []string) error {
	logger := log.FromContext(ctx)
	for _, name := range pending {
		var ns corev1.Namespace
		if err := r.client.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("relabel namespace %s: %w", name, err)
		}
		if ns.Labels[revisions.LabelRev] != revisions.TagCanary || ns.DeletionTimestamp != nil {
			continue
		}
		patch := client.MergeFromWithOptions(ns.DeepCopy(), client.MergeFromWithOptimisticLock{})
		ns.Labels[revisions.LabelRev] = revisions.TagStable
		if err := r.client.Patch(ctx, &ns, patch); err != nil {
			return fmt.Errorf("relabel namespace %s %s=%s to %s: %w", name, revisions.LabelRev, revisions.TagCanary, revisions.TagStable, err)
		}
		logger.Info("relabelled namespace after promotion", "namespace", name, "label", revisions.LabelRev, "from", revisions.TagCanary, "to", revisions.TagStable)
		note := fmt.Sprintf("%s=%s relabelled %s: no canary is published, stable is %s", revisions.LabelRev, revisions.TagCanary, revisions.TagStable, mesh.Spec.Stable)
		r.recorder.Eventf(&ns, mesh, corev1.EventTypeNormal, "Relabelled", "Relabel", "%s", note)
		r.recorder.Eventf(mesh, &ns, corev1.EventTypeNormal, "Relabelled", "Relabel", "namespace %s: %s", name, note)
		if r.opts.AfterRelabel != nil {
			if err := r.opts.AfterRelabel(ctx, name); err != nil {
				return fmt.Errorf("after relabelling namespace %s: %w", name, err)
			}
		}
	}
	return nil
}

// reconcileControlPlanes applies the Deployment and Service of every
// revision with an image control plane and deletes those of revisions that
// are gone (revoked, unpublished) or no longer ask for one.
func (r *Reconciler) reconcileControlPlanes(ctx context.Context, mesh *v1alpha1.Mesh) error {
	logger := log.FromContext(ctx)
	ns := r.opts.MeshNamespace
	want := map[string]bool{}
	for _, rev := range mesh.Spec.Revisions {
		// Helm control planes are reconcileHelm's; external ones nobody's.
		if revisions.ControlPlaneSource(&rev) != revisions.SourceImage {
			continue
		}
		want[rev.Name] = true
		name := revisions.ControlPlaneName(rev.Name)
		var existing appsv1.Deployment
		err := r.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &existing)
		created := apierrors.IsNotFound(err)
		if err != nil && !created {
			return fmt.Errorf("get control plane %s/%s: %w", ns, name, err)
		}
		// Written only when the fields meshrev owns differ from what it
		// wants (read from the cache, managedFields kept for these objects):
		// a reconcile that changes nothing writes nothing.
		dep := desiredDeployment(mesh, rev, ns)
		if created || !deploymentUpToDate(&existing, dep) {
			if err := r.client.Apply(ctx, dep, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
				return fmt.Errorf("apply control plane deployment %s/%s of revision %s: %w", ns, name, rev.Name, err)
			}
			r.metrics.controlPlaneApplies.Inc()
		}
		var existingSvc corev1.Service
		err = r.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &existingSvc)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("get control plane service %s/%s: %w", ns, name, err)
		}
		svc := desiredService(mesh, rev, ns)
		if err != nil || !serviceUpToDate(&existingSvc, svc) {
			if err := r.client.Apply(ctx, svc, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
				return fmt.Errorf("apply control plane service %s/%s of revision %s: %w", ns, name, rev.Name, err)
			}
			r.metrics.controlPlaneApplies.Inc()
		}
		if created {
			logger.Info("control plane created", "revision", rev.Name, "deployment", ns+"/"+name)
			r.recorder.Eventf(mesh, nil, corev1.EventTypeNormal, "ControlPlaneCreated", "Create", "created control plane %s/%s (image %s) for revision %s", ns, name, rev.ControlPlane.Image, rev.Name)
		}
	}

	sel := client.MatchingLabels{LabelApp: AppIstiod, LabelManagedBy: ManagedBy}
	var deps appsv1.DeploymentList
	if err := r.client.List(ctx, &deps, client.InNamespace(ns), sel); err != nil {
		return fmt.Errorf("list control plane deployments in %s: %w", ns, err)
	}
	var svcs corev1.ServiceList
	if err := r.client.List(ctx, &svcs, client.InNamespace(ns), sel); err != nil {
		return fmt.Errorf("list control plane services in %s: %w", ns, err)
	}
	var stale []client.Object
	for i := range deps.Items {
		stale = append(stale, &deps.Items[i])
	}
	for i := range svcs.Items {
		stale = append(stale, &svcs.Items[i])
	}
	for _, o := range stale {
		rev := o.GetLabels()[revisions.LabelRevision]
		if want[rev] || !ownedBy(o, mesh) || o.GetDeletionTimestamp() != nil {
			continue
		}
		if err := r.client.Delete(ctx, o, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete control plane %s/%s of revision %s: %w", ns, o.GetName(), rev, err)
		}
		kind := "service"
		if _, ok := o.(*appsv1.Deployment); ok {
			kind = "deployment"
		}
		logger.Info("control plane removed", "revision", rev, kind, ns+"/"+o.GetName())
		r.recorder.Eventf(mesh, nil, corev1.EventTypeNormal, "ControlPlaneDeleted", "Delete", "deleted control plane %s %s/%s of revision %s: it is no longer published with a control plane", kind, ns, o.GetName(), rev)
	}
	return nil
}

func ownedBy(o client.Object, mesh *v1alpha1.Mesh) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.UID == mesh.UID {
			return true
		}
	}
	return false
}
