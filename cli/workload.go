package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
)

// Workload kinds that can be restarted.
const (
	kindDeployment  = "Deployment"
	kindStatefulSet = "StatefulSet"
	kindDaemonSet   = "DaemonSet"
)

// workloadRef names a workload: kind, namespace, name.
type workloadRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (w workloadRef) String() string {
	return strings.ToLower(w.Kind) + "/" + w.Name
}

// kindAliases maps what a person types to a workload kind, as kubectl does.
var kindAliases = map[string]string{
	"deployment": kindDeployment, "deployments": kindDeployment, "deploy": kindDeployment,
	"statefulset": kindStatefulSet, "statefulsets": kindStatefulSet, "sts": kindStatefulSet,
	"daemonset": kindDaemonSet, "daemonsets": kindDaemonSet, "ds": kindDaemonSet,
}

// parseWorkload reads "name" (a Deployment) or "kind/name".
func parseWorkload(namespace, arg string) (workloadRef, error) {
	kind, name := kindDeployment, arg
	if k, n, ok := strings.Cut(arg, "/"); ok {
		var known bool
		if kind, known = kindAliases[strings.ToLower(k)]; !known {
			return workloadRef{}, fmt.Errorf("workload %q: kind %q is not deployment, statefulset or daemonset", arg, k)
		}
		name = n
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return workloadRef{}, fmt.Errorf("workload %q: %q is not a valid name: %s", arg, name, strings.Join(errs, "; "))
	}
	return workloadRef{Kind: kind, Namespace: namespace, Name: name}, nil
}

// newWorkloadObject returns an empty object of the workload's kind.
func newWorkloadObject(kind string) (client.Object, error) {
	switch kind {
	case kindDeployment:
		return &appsv1.Deployment{}, nil
	case kindStatefulSet:
		return &appsv1.StatefulSet{}, nil
	case kindDaemonSet:
		return &appsv1.DaemonSet{}, nil
	}
	return nil, fmt.Errorf("%s is not a workload meshrev can restart (Deployment, StatefulSet or DaemonSet)", kind)
}

// restartPatch is the strategic-merge patch "kubectl rollout restart" sends:
// a new pod-template annotation, so the workload's own rolling update (and
// its PodDisruptionBudget) replaces the pods.
func restartPatch(at string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"spec": map[string]any{
			"template": map[string]any{
				"metadata": map[string]any{
					"annotations": map[string]string{revisions.AnnotationRestartedAt: at},
				},
			},
		},
	})
}

// restart patches the workload's pod template and returns its generation
// after the patch, which the rollout must reach.
func restart(ctx context.Context, c client.Client, w workloadRef, at string) (int64, error) {
	obj, err := newWorkloadObject(w.Kind)
	if err != nil {
		return 0, err
	}
	patch, err := restartPatch(at)
	if err != nil {
		return 0, err
	}
	obj.SetNamespace(w.Namespace)
	obj.SetName(w.Name)
	if err := c.Patch(ctx, obj, client.RawPatch(types.StrategicMergePatchType, patch)); err != nil {
		return 0, fmt.Errorf("restart %s in %s: %w", w, w.Namespace, err)
	}
	return obj.GetGeneration(), nil
}

// selectorOf returns the pod selector of a workload.
func selectorOf(obj client.Object) *metav1.LabelSelector {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Selector
	case *appsv1.StatefulSet:
		return o.Spec.Selector
	case *appsv1.DaemonSet:
		return o.Spec.Selector
	}
	return nil
}

// templateAnnotations returns the pod-template annotations of a workload.
func templateAnnotations(obj client.Object) map[string]string {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Template.Annotations
	case *appsv1.StatefulSet:
		return o.Spec.Template.Annotations
	case *appsv1.DaemonSet:
		return o.Spec.Template.Annotations
	}
	return nil
}
