package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// CheckInjectView is the answer of "meshrev check-inject": what a new pod
// with the given labels in the namespace would get, and why.
type CheckInjectView struct {
	// Namespace of the hypothetical pod.
	Namespace string `json:"namespace"`
	// NamespaceLabel is the injection label the namespace carries.
	NamespaceLabel string `json:"namespaceLabel"`
	// PodLabels are the pod labels given with -l.
	PodLabels map[string]string `json:"podLabels,omitempty"`
	// Inject is true when the pod would get a sidecar.
	Inject bool `json:"inject"`
	// Deny is true when the pod would be refused.
	Deny bool `json:"deny,omitempty"`
	// Revision is the revision it would get.
	Revision string `json:"revision,omitempty"`
	// Version of that revision.
	Version string `json:"version,omitempty"`
	// Tags of that revision.
	Tags []string `json:"tags,omitempty"`
	// Selector is the label that decided.
	Selector string `json:"selector,omitempty"`
	// Reason is the decision table's row.
	Reason revisions.Reason `json:"reason"`
	// Message explains the decision.
	Message string `json:"message"`
	// Warnings are what the revision router would warn about.
	Warnings []string `json:"warnings,omitempty"`
}

// checkInjectOptions are the inputs of "check-inject".
type checkInjectOptions struct {
	*globals
	namespace string
	selector  string
	labels    map[string]string
}

func newCheckInjectCommand(g *globals) *cobra.Command {
	o := &checkInjectOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "check-inject -n NS [-l k=v,...]",
		Short: "Say which revision a new pod would get, and why",
		Long: `Apply the revision router's decision table to a new pod with the given labels in
namespace NS, and print the revision it would get, the rule that decided and any
warning the router would give.`,
		Example: `  meshrev check-inject -n default
  meshrev check-inject -n default -l app=reviews,istio.io/rev=canary`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.complete(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "", "namespace of the pod (default: the kubeconfig context's)")
	cmd.Flags().StringVarP(&o.selector, "labels", "l", "", "the pod's labels, k=v,k2=v2")
	return cmd
}

func (o *checkInjectOptions) complete() error {
	lbls, err := parseLabels(o.selector)
	if err != nil {
		return fmt.Errorf("check-inject: %w", err)
	}
	o.labels = lbls
	if o.namespace == "" {
		ns, err := o.contextNamespace()
		if err != nil {
			return fmt.Errorf("check-inject: %w", err)
		}
		o.namespace = ns
	}
	return nil
}

func (o *checkInjectOptions) run(ctx context.Context) error {
	c, err := o.Client()
	if err != nil {
		return err
	}
	var ns corev1.Namespace
	if err := c.Get(ctx, types.NamespacedName{Name: o.namespace}, &ns); err != nil {
		return fmt.Errorf("check-inject: read namespace %s: %w", o.namespace, err)
	}
	mesh, err := getMeshOrNil(ctx, c)
	if err != nil {
		return fmt.Errorf("check-inject: %w", err)
	}
	v := checkInjectView(mesh, o.namespace, ns.Labels, o.labels, o.ownNamespace)
	podSecurityDryRun(ctx, c, v, ns.Labels)
	if o.output != outputTable {
		return printStructured(o.streams.Out, o.output, v)
	}
	return renderCheckInject(o.streams.Out, v)
}

// checkInjectView applies the decision table to a new pod with podLabels in
// a namespace with nsLabels (mesh nil: no Mesh installed).
func checkInjectView(mesh *v1alpha1.Mesh, namespace string, nsLabels, podLabels map[string]string, ownNamespace string) *CheckInjectView {
	d := revisions.Resolve(meshSpec(mesh), ownNamespace, revisions.Subject{Namespace: namespace, NamespaceLabels: nsLabels, Labels: podLabels})
	v := &CheckInjectView{
		Namespace:      namespace,
		NamespaceLabel: injectionLabel(nsLabels),
		PodLabels:      podLabels,
		Inject:         d.Inject,
		Deny:           d.Deny,
		Revision:       d.RevisionName(),
		Selector:       d.Selector,
		Reason:         d.Reason,
		Message:        d.Message,
		Warnings:       d.Warnings,
	}
	if d.Revision != nil {
		v.Version = d.Revision.Version
		v.Tags = revisions.Tags(meshSpec(mesh), d.Revision.Name)
	}
	if level := nsLabels[labelPodSecurityEnforce]; d.Inject && (level == "baseline" || level == "restricted") {
		v.Warnings = append(slices.Clip(v.Warnings), fmt.Sprintf(
			"%s %q (label %s): the API server refuses the injected pod if its sidecar template needs more than that level allows, and meshrev's built-in template does (its istio-init container adds NET_ADMIN and NET_RAW); the Deployment would stay at 0 ready. Labelling the namespace warns with the actual template's findings",
			podSecurityWarningPrefix(namespace), level, labelPodSecurityEnforce))
	}
	if d.Reason == revisions.ReasonNoMesh {
		v.Warnings = append(slices.Clip(v.Warnings), "with no Mesh the manager refuses this pod by default (--no-mesh-policy=Deny), rather than start it without its sidecar")
	}
	return v
}

// podSecurityDryRun replaces the general Pod Security warning of v with the
// API server's own verdict: a server-side dry run of a pod that meets the
// restricted level by itself, in the namespace, with the pod labels. The
// API server injects it (meshrev's webhook) and runs Pod Security admission
// on the result, so a refusal names every failing check of the injected
// pod; an admitted dry run removes the warning. Without permission to
// create pods the general warning stays, saying why.
func podSecurityDryRun(ctx context.Context, c client.Client, v *CheckInjectView, nsLabels map[string]string) {
	i := slices.IndexFunc(v.Warnings, func(w string) bool { return strings.HasPrefix(w, podSecurityWarningPrefix(v.Namespace)) })
	if i < 0 {
		return
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "meshrev-check-inject-", Namespace: v.Namespace, Labels: v.PodLabels},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: new(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "app", Image: "app", SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: new(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			}}},
		},
	}
	err := c.Create(ctx, pod, client.DryRunAll)
	switch {
	case err == nil:
		v.Warnings = slices.Delete(slices.Clip(v.Warnings), i, i+1)
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "violates PodSecurity"):
		v.Warnings = slices.Clone(v.Warnings)
		v.Warnings[i] = fmt.Sprintf("%s (label %s): the API server refuses the injected pod (server-side dry run of a pod that meets the level by itself): %s. "+
			"Install the istio-cni node agent and use a revision with trafficInterception: CNI (istio-validation, no added capability; the injected pod then passes baseline), set the namespace's level to privileged for injected workloads, or do not label it for injection",
			podSecurityWarningPrefix(v.Namespace), labelPodSecurityEnforce, err.Error())
	default:
		v.Warnings = slices.Clone(v.Warnings)
		v.Warnings[i] += fmt.Sprintf(" (a server-side dry run of a pod, which would name the failing checks, was not possible: %v)", err)
	}
}

func podSecurityWarningPrefix(namespace string) string {
	return fmt.Sprintf("namespace %s enforces Pod Security", namespace)
}

// labelPodSecurityEnforce is the namespace label of the Pod Security level
// the API server enforces.
const labelPodSecurityEnforce = "pod-security.kubernetes.io/enforce"

func renderCheckInject(w io.Writer, v *CheckInjectView) error {
	var b strings.Builder
	fmt.Fprintf(&b, "namespace:  %s (%s)\n", v.Namespace, v.NamespaceLabel)
	if len(v.PodLabels) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(v.PodLabels)) {
			kv = append(kv, k+"="+v.PodLabels[k])
		}
		fmt.Fprintf(&b, "pod labels: %s\n", strings.Join(kv, ","))
	}
	switch {
	case v.Inject:
		rev := v.Revision + " (version " + v.Version
		if len(v.Tags) > 0 {
			rev += ", " + strings.Join(v.Tags, ", ")
		}
		fmt.Fprintf(&b, "revision:   %s)\n", rev)
	case v.Deny:
		b.WriteString("revision:   none, the pod is refused\n")
	default:
		b.WriteString("revision:   none, no sidecar\n")
	}
	fmt.Fprintf(&b, "reason:     %s: %s\n", v.Reason, v.Message)
	for _, warn := range v.Warnings {
		if warn == v.Message {
			continue // an unknown revision is both the reason and a warning
		}
		fmt.Fprintf(&b, "warning:    %s\n", warn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
