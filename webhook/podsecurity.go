package webhook

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// LabelPodSecurityEnforce is the namespace label of the Pod Security level
// the API server enforces (its version: pod-security.kubernetes.io/enforce-version).
const LabelPodSecurityEnforce = psaapi.EnforceLevelLabel

// podSecurityEvaluator is Kubernetes' own Pod Security evaluator (the
// checks the API server's PodSecurity admission runs), built once.
var podSecurityEvaluator = sync.OnceValues(func() (policy.Evaluator, error) {
	return policy.NewEvaluator(policy.DefaultChecks(), nil)
})

// PodSecurityResult is what a namespace's enforced Pod Security level says
// of a pod injected with a sidecar template.
type PodSecurityResult struct {
	// Enforced is the level and version the namespace enforces, as
	// "level:version" (e.g. "baseline:latest").
	Enforced string
	// Problems are the failing checks, each as the API server words it: the
	// check's reason and, in parentheses, what breaks it.
	Problems []string
}

// PodSecurityProblems evaluates a pod injected with f against the Pod
// Security level and version that nsLabels enforce
// (pod-security.kubernetes.io/enforce and enforce-version; an invalid value
// counts as restricted, as for the API server), with the evaluator of
// k8s.io/pod-security-admission: all the checks of the standard, on the
// whole pod. The pod is a representative one that meets the restricted
// level on its own (a non-root app container that drops all capabilities
// and cannot escalate, RuntimeDefault seccomp), so every problem found is
// the sidecar template's. Empty Problems: the level admits the injected pod.
func PodSecurityProblems(nsLabels map[string]string, f Fragment) (PodSecurityResult, error) {
	p, _ := psaapi.PolicyToEvaluate(nsLabels, psaapi.Policy{
		Enforce: psaapi.LevelVersion{Level: psaapi.LevelPrivileged, Version: psaapi.LatestVersion()},
	})
	out := PodSecurityResult{Enforced: p.Enforce.String()}
	if p.Enforce.Level == psaapi.LevelPrivileged {
		return out, nil
	}
	ev, err := podSecurityEvaluator()
	if err != nil {
		return out, fmt.Errorf("pod security evaluator: %w", err)
	}
	meta, spec := representativeInjectedPod(f)
	agg := policy.AggregateCheckResults(ev.EvaluatePod(p.Enforce, meta, spec))
	for i, reason := range agg.ForbiddenReasons {
		if d := agg.ForbiddenDetails[i]; d != "" {
			reason += " (" + d + ")"
		}
		out.Problems = append(out.Problems, reason)
	}
	return out, nil
}

// representativeInjectedPod is a pod that meets the restricted level by
// itself, with f's init containers, containers and volumes added as
// injection adds them.
func representativeInjectedPod(f Fragment) (*metav1.ObjectMeta, *corev1.PodSpec) {
	meta := &metav1.ObjectMeta{Name: "app", Labels: f.Labels, Annotations: f.Annotations}
	spec := &corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   new(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{
			Name:  "app",
			Image: "app",
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: new(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
	}
	spec.InitContainers = append(spec.InitContainers, f.InitContainers...)
	spec.Containers = append(spec.Containers, f.Containers...)
	for _, v := range f.Volumes {
		// The API server defaults a volume without a source to emptyDir
		// (Istio's template leaves workload-socket and others so); the
		// evaluator sees the pod as stored.
		if v.VolumeSource == (corev1.VolumeSource{}) {
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
		spec.Volumes = append(spec.Volumes, v)
	}
	return meta, spec
}
