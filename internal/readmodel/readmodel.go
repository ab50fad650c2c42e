// Package readmodel reads meshrev's one model of the cluster, revisions.Facts
// (namespaces and their labels, the injected pods with their top owners, the
// readiness of each revision's control plane), from a controller-runtime
// client.Reader: the manager's cache for the validating webhook and the
// controller, the API server for the CLI. It decides nothing: the decisions
// that read the facts live in package revisions.
package readmodel

import (
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Pod returns an empty pod: the object the manager's cache watches for
// injected pods, with PodTransform, and the controller's pod watch.
func Pod() *corev1.Pod { return &corev1.Pod{} }

// PodTransform is the manager cache's transform of pods (a cache.TransformFunc):
// it keeps what the model reads — the metadata without managedFields, and
// the names and images of the containers and init containers (whether the
// pod really runs its proxy) — and drops the rest of the spec and the
// status, so that a cached pod costs a few KiB whatever its spec.
func PodTransform(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := slimPod(p)
	return &out, nil
}

// slimPod is p as PodTransform keeps it.
func slimPod(p *corev1.Pod) corev1.Pod {
	out := corev1.Pod{TypeMeta: p.TypeMeta, ObjectMeta: p.ObjectMeta}
	out.ManagedFields = nil
	out.Spec.Containers = namesAndImages(p.Spec.Containers)
	out.Spec.InitContainers = namesAndImages(p.Spec.InitContainers)
	return out
}

func namesAndImages(cs []corev1.Container) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image}
	}
	return out
}

// ContainerNames are the names of a pod's containers and init containers.
func ContainerNames(spec *corev1.PodSpec) []string {
	out := make([]string, 0, len(spec.Containers)+len(spec.InitContainers))
	for _, c := range spec.Containers {
		out = append(out, c.Name)
	}
	for _, c := range spec.InitContainers {
		out = append(out, c.Name)
	}
	return out
}

// ReplicaSetMeta returns an empty metadata-only ReplicaSet (for the owner chain).
func ReplicaSetMeta() *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	return p
}

// Read reads the facts from r. mesh (may be nil) names the revisions whose
// control-plane readiness is read in meshNamespace.
func Read(ctx context.Context, r client.Reader, mesh *v1alpha1.Mesh, meshNamespace string) (revisions.Facts, error) {
	var facts revisions.Facts
	var err error
	if facts.Namespaces, err = Namespaces(ctx, r); err != nil {
		return revisions.Facts{}, err
	}
	if facts.Pods, err = InjectedPods(ctx, r, true); err != nil {
		return revisions.Facts{}, err
	}
	if facts.ControlPlaneReady, err = ControlPlaneReadiness(ctx, r, mesh, meshNamespace); err != nil {
		return revisions.Facts{}, err
	}
	if facts.IstioCRDVersion, err = IstioCRDVersion(ctx, r); err != nil {
		return revisions.Facts{}, err
	}
	return facts, nil
}

// Namespaces maps every live namespace to its labels; a terminating one
// takes no new pods and is left out.
func Namespaces(ctx context.Context, r client.Reader) (map[string]map[string]string, error) {
	var list corev1.NamespaceList
	if err := r.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	out := make(map[string]map[string]string, len(list.Items))
	for _, ns := range list.Items {
		if ns.DeletionTimestamp != nil {
			continue
		}
		out[ns.Name] = ns.Labels
	}
	return out, nil
}

// PageSize is the page size of the metadata lists sent to the API server
// (the CLI): a large cluster's pods come in pages, never in one response.
const PageSize = 500

// InjectedPods lists the live pods that carry the meshrev.io/revision label
// (their metadata and container names are read); opts narrow the list (client.InNamespace: the controller
// reads one namespace of its cache at a time, through the cache's namespace
// index; client.Limit: pages from the API server). With owners, each pod
// gets its top owner, at the cost of one metadata list of ReplicaSets per
// namespace that has a ReplicaSet-owned pod (paged from the API server: one
// cluster-wide list when there are several); without, Owner is left empty.
func InjectedPods(ctx context.Context, r client.Reader, owners bool, opts ...client.ListOption) ([]revisions.Pod, error) {
	items, err := listPods(ctx, r, append([]client.ListOption{client.HasLabels{revisions.LabelRevision}}, opts...))
	if err != nil {
		return nil, fmt.Errorf("list pods with label %s: %w", revisions.LabelRevision, err)
	}
	// Only the ReplicaSets of namespaces with a ReplicaSet-owned pod matter.
	rsOwners := map[string]*metav1.OwnerReference{}
	if owners {
		var namespaces []string
		seen := map[string]bool{}
		for i := range items {
			p := &items[i]
			if ref := metav1.GetControllerOfNoCopy(p); ref != nil && ref.Kind == "ReplicaSet" && p.DeletionTimestamp == nil && !seen[p.Namespace] {
				seen[p.Namespace] = true
				namespaces = append(namespaces, p.Namespace)
			}
		}
		// From the API server (paged), many namespaces take one paged
		// cluster-wide list rather than a request per namespace; the
		// cache answers per namespace from its index.
		if paged(opts) && len(namespaces) > 1 {
			namespaces = []string{""}
		}
		for _, ns := range namespaces {
			if err := replicaSetOwners(ctx, r, ns, rsOwners, opts); err != nil {
				return nil, err
			}
		}
	}
	out := make([]revisions.Pod, 0, len(items))
	for i := range items {
		p := &items[i]
		// A terminating pod is on its way out: an upgrade does not wait for it.
		if p.DeletionTimestamp != nil {
			continue
		}
		pod := revisions.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, Annotations: p.Annotations, Containers: ContainerNames(&p.Spec)}
		if owners {
			pod.Owner = TopOwner(p, rsOwners)
		}
		out = append(out, pod)
	}
	return out, nil
}

// paged reports whether opts ask for pages (client.Limit).
func paged(opts []client.ListOption) bool {
	for _, o := range opts {
		if _, ok := o.(client.Limit); ok {
			return true
		}
	}
	return false
}

// replicaSetOwners adds the controlling owner of every ReplicaSet of
// namespace ("" for all) to owners, keyed "namespace/name".
func replicaSetOwners(ctx context.Context, r client.Reader, namespace string, owners map[string]*metav1.OwnerReference, opts []client.ListOption) error {
	// Of the pods' options, only the page size applies to ReplicaSets.
	var page []client.ListOption
	for _, o := range opts {
		if l, ok := o.(client.Limit); ok {
			page = append(page, l)
		}
	}
	if namespace != "" {
		page = append(page, client.InNamespace(namespace))
	}
	items, err := listMeta(ctx, r, appsv1.SchemeGroupVersion.WithKind("ReplicaSetList"), page)
	if err != nil {
		return fmt.Errorf("list replicasets in %s: %w", namespace, err)
	}
	for i := range items {
		rs := &items[i]
		if ref := metav1.GetControllerOf(rs); ref != nil {
			owners[rs.Namespace+"/"+rs.Name] = ref
		}
	}
	return nil
}

// listPods lists pods, page by page as listMeta, each kept as PodTransform
// keeps it: a page of whole pods is dropped before the next is read.
func listPods(ctx context.Context, r client.Reader, opts []client.ListOption) ([]corev1.Pod, error) {
	var items []corev1.Pod
	cont := ""
	for {
		list := &corev1.PodList{}
		page := opts
		if cont != "" {
			page = append(slices.Clone(opts), client.Continue(cont))
		}
		if err := r.List(ctx, list, page...); err != nil {
			return nil, err
		}
		for i := range list.Items {
			items = append(items, slimPod(&list.Items[i]))
		}
		cont = list.Continue
		if cont == "" || cont == "continue-not-supported" {
			return items, nil
		}
	}
}

// listMeta lists metadata-only objects of kind (a ...List kind), page by
// page when opts carry a client.Limit (the API server; the cache answers in
// one page and says "continue-not-supported").
func listMeta(ctx context.Context, r client.Reader, kind schema.GroupVersionKind, opts []client.ListOption) ([]metav1.PartialObjectMetadata, error) {
	var items []metav1.PartialObjectMetadata
	cont := ""
	for {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(kind)
		page := opts
		if cont != "" {
			page = append(slices.Clone(opts), client.Continue(cont))
		}
		if err := r.List(ctx, list, page...); err != nil {
			return nil, err
		}
		if items == nil {
			items = list.Items
		} else {
			items = append(items, list.Items...)
		}
		cont = list.Continue
		if cont == "" || cont == "continue-not-supported" {
			return items, nil
		}
	}
}

// TopOwner follows a pod's controller reference to the workload that owns
// it: ReplicaSet → its Deployment (through replicaSetOwners, keyed
// "namespace/name"), StatefulSet, DaemonSet, any other controller, or the
// pod itself when it has none.
func TopOwner(pod metav1.Object, replicaSetOwners map[string]*metav1.OwnerReference) revisions.Owner {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return revisions.Owner{Kind: "Pod", Name: pod.GetName()}
	}
	if ref.Kind == "ReplicaSet" && strings.HasPrefix(ref.APIVersion, "apps/") {
		if up := replicaSetOwners[pod.GetNamespace()+"/"+ref.Name]; up != nil {
			return revisions.Owner{Kind: up.Kind, Name: up.Name}
		}
	}
	return revisions.Owner{Kind: ref.Kind, Name: ref.Name}
}

// ControlPlaneReadiness reports, per revision of mesh, whether its control
// plane (Deployment istiod-<revision> in meshNamespace) is available; a
// revision whose control plane meshrev does not run counts as ready.
func ControlPlaneReadiness(ctx context.Context, r client.Reader, mesh *v1alpha1.Mesh, meshNamespace string) (map[string]bool, error) {
	out := map[string]bool{}
	if mesh == nil {
		return out, nil
	}
	for _, rev := range mesh.Spec.Revisions {
		if rev.ControlPlane == nil {
			out[rev.Name] = true
			continue
		}
		name := revisions.ControlPlaneName(rev.Name)
		var d appsv1.Deployment
		err := r.Get(ctx, client.ObjectKey{Namespace: meshNamespace, Name: name}, &d)
		switch {
		case apierrors.IsNotFound(err):
			out[rev.Name] = false
		case err != nil:
			return nil, fmt.Errorf("get control plane deployment %s/%s: %w", meshNamespace, name, err)
		default:
			out[rev.Name] = DeploymentAvailable(&d)
		}
	}
	return out, nil
}

// DeploymentAvailable reports whether d has rolled out its current spec and
// has at least one available replica (a Deployment scaled to zero is not).
func DeploymentAvailable(d *appsv1.Deployment) bool {
	if d == nil || (d.Spec.Replicas != nil && *d.Spec.Replicas == 0) || d.Status.AvailableReplicas < 1 {
		return false
	}
	// A condition older than the spec says nothing about the current spec's rollout.
	if d.Status.ObservedGeneration < d.Generation {
		return false
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
