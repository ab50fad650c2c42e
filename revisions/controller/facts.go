package controller

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// podMetaList is an empty metadata-only pod list: pods are read as
// metav1.PartialObjectMetadata, because a cluster may have many and the
// report needs only their labels, annotations and owners.
func podMetaList() *metav1.PartialObjectMetadataList {
	l := &metav1.PartialObjectMetadataList{}
	l.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	return l
}

// replicaSetMetaList is an empty metadata-only ReplicaSet list (for the owner chain).
func replicaSetMetaList() *metav1.PartialObjectMetadataList {
	l := &metav1.PartialObjectMetadataList{}
	l.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("ReplicaSetList"))
	return l
}

// PodMeta returns an empty metadata-only pod, the object the manager's cache
// must watch for the controller (builder.OnlyMetadata).
func PodMeta() *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	return p
}

// ReplicaSetMeta returns an empty metadata-only ReplicaSet.
func ReplicaSetMeta() *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	return p
}

// GatherFacts reads what revisions.ValidateTransition needs from r (the
// manager's cache): every namespace's labels, the injected pods per revision
// (metadata only, by label meshrev.io/revision), and the readiness of each
// revision's control plane in meshNamespace.
func GatherFacts(ctx context.Context, r client.Reader, mesh *v1alpha1.Mesh, meshNamespace string) (revisions.Facts, error) {
	facts := revisions.Facts{Pods: map[string][]string{}}
	var err error
	if facts.Namespaces, err = namespaceLabels(ctx, r); err != nil {
		return revisions.Facts{}, err
	}
	pods, err := injectedPods(ctx, r)
	if err != nil {
		return revisions.Facts{}, err
	}
	for _, p := range pods {
		rev := p.Labels[revisions.LabelRevision]
		facts.Pods[rev] = append(facts.Pods[rev], p.Namespace+"/"+p.Name)
	}
	for _, names := range facts.Pods {
		slices.Sort(names)
	}
	if facts.ControlPlaneReady, err = controlPlaneReadiness(ctx, r, mesh, meshNamespace); err != nil {
		return revisions.Facts{}, err
	}
	return facts, nil
}

func namespaceLabels(ctx context.Context, r client.Reader) (map[string]map[string]string, error) {
	var list corev1.NamespaceList
	if err := r.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	out := make(map[string]map[string]string, len(list.Items))
	for _, ns := range list.Items {
		if ns.DeletionTimestamp != nil {
			continue // a terminating namespace takes no new pods
		}
		out[ns.Name] = ns.Labels
	}
	return out, nil
}

func injectedPods(ctx context.Context, r client.Reader) ([]metav1.PartialObjectMetadata, error) {
	list := podMetaList()
	if err := r.List(ctx, list, client.HasLabels{revisions.LabelRevision}); err != nil {
		return nil, fmt.Errorf("list pods with label %s: %w", revisions.LabelRevision, err)
	}
	out := list.Items[:0]
	for _, p := range list.Items {
		// A terminating pod is on its way out: an upgrade does not wait for it.
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// controlPlaneReadiness reports, per revision of mesh, whether its control
// plane is available; a revision whose control plane meshrev does not run
// counts as ready.
func controlPlaneReadiness(ctx context.Context, r client.Reader, mesh *v1alpha1.Mesh, meshNamespace string) (map[string]bool, error) {
	out := map[string]bool{}
	if mesh == nil {
		return out, nil
	}
	for _, rev := range mesh.Spec.Revisions {
		if rev.ControlPlane == nil {
			out[rev.Name] = true
			continue
		}
		var d appsv1.Deployment
		err := r.Get(ctx, client.ObjectKey{Namespace: meshNamespace, Name: ControlPlaneName(rev.Name)}, &d)
		switch {
		case apierrors.IsNotFound(err):
			out[rev.Name] = false
		case err != nil:
			return nil, fmt.Errorf("get control plane deployment %s/%s: %w", meshNamespace, ControlPlaneName(rev.Name), err)
		default:
			out[rev.Name] = DeploymentAvailable(&d)
		}
	}
	return out, nil
}

// snapshot reads the controller's inputs from the cache.
func snapshot(ctx context.Context, r client.Reader, mesh *v1alpha1.Mesh, meshNamespace string) (Snapshot, error) {
	var snap Snapshot
	var err error
	if snap.Namespaces, err = namespaceLabels(ctx, r); err != nil {
		return Snapshot{}, err
	}
	if snap.Pods, err = injectedPods(ctx, r); err != nil {
		return Snapshot{}, err
	}
	if snap.ControlPlaneReady, err = controlPlaneReadiness(ctx, r, mesh, meshNamespace); err != nil {
		return Snapshot{}, err
	}
	// Only the ReplicaSets that own an injected pod matter.
	snap.ReplicaSetOwners = map[string]*metav1.OwnerReference{}
	needRS := map[string]bool{}
	for i := range snap.Pods {
		if ref := metav1.GetControllerOfNoCopy(&snap.Pods[i]); ref != nil && ref.Kind == "ReplicaSet" {
			needRS[snap.Pods[i].Namespace] = true
		}
	}
	for ns := range needRS {
		list := replicaSetMetaList()
		if err := r.List(ctx, list, client.InNamespace(ns)); err != nil {
			return Snapshot{}, fmt.Errorf("list replicasets in %s: %w", ns, err)
		}
		for i := range list.Items {
			rs := &list.Items[i]
			if ref := metav1.GetControllerOf(rs); ref != nil {
				snap.ReplicaSetOwners[rs.Namespace+"/"+rs.Name] = ref
			}
		}
	}
	return snap, nil
}
