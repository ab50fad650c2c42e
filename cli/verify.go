package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// VerifyView is the outcome of "meshrev verify".
type VerifyView struct {
	// Namespace checked.
	Namespace string `json:"namespace"`
	// Pods checked, with their verdict.
	Pods []PodCheck `json:"pods"`
	// Problems lists what is wrong (empty when verification passed), beyond
	// single pods: workloads without pods.
	Problems []string `json:"problems,omitempty"`
	// OK is true when every pod runs the revision it should and is Ready.
	OK bool `json:"ok"`
}

// PodCheck is one pod's verdict.
type PodCheck struct {
	// Name of the pod.
	Name string `json:"name"`
	// Workload is the workload argument the pod belongs to ("" when verifying a namespace).
	Workload string `json:"workload,omitempty"`
	// Runs is the revision whose sidecar the pod runs ("" for none).
	Runs string `json:"runs"`
	// Want is the revision the decision table resolves for the pod today ("" for none).
	Want string `json:"want"`
	// Ready is the pod's Ready condition.
	Ready bool `json:"ready"`
	// Problem says what is wrong ("" when the pod is fine).
	Problem string `json:"problem,omitempty"`
}

// verifyOptions are the inputs of "verify".
type verifyOptions struct {
	*globals
	namespace string
	args      []string
	workloads []workloadRef
}

func newVerifyCommand(g *globals) *cobra.Command {
	o := &verifyOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "verify -n NS [WORKLOAD...]",
		Short: "Check that pods run the revision their labels resolve to and are Ready",
		Long: `Check the pods of the named workloads (or every pod of the namespace): each must run
the sidecar of the revision the decision table resolves for it today, and be
Ready. Exits non-zero with the list of pods that are not.`,
		Example: `  meshrev verify -n default reviews-v2`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(args); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "", "namespace of the pods (default: the kubeconfig context's)")
	return cmd
}

func (o *verifyOptions) complete(args []string) error {
	o.args = args
	if o.namespace == "" {
		ns, err := o.contextNamespace()
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		o.namespace = ns
	}
	o.workloads = nil
	for _, a := range args {
		w, err := parseWorkload(o.namespace, a)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		o.workloads = append(o.workloads, w)
	}
	return nil
}

func (o *verifyOptions) run(ctx context.Context) error {
	c, err := o.Client()
	if err != nil {
		return err
	}
	v, err := o.gather(ctx, c)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if o.output != outputTable {
		if err := printStructured(o.streams.Out, o.output, v); err != nil {
			return err
		}
	} else if err := renderVerify(o.streams.Out, v); err != nil {
		return err
	}
	if !v.OK {
		if o.output != outputTable {
			fmt.Fprintf(o.streams.ErrOut, "verify: %d problems in namespace %s\n", countProblems(v), v.Namespace)
		}
		return ErrSilent
	}
	return nil
}

func countProblems(v *VerifyView) int {
	n := len(v.Problems)
	for _, p := range v.Pods {
		if p.Problem != "" {
			n++
		}
	}
	return n
}

// gather lists the pods to check and resolves each through the decision table.
func (o *verifyOptions) gather(ctx context.Context, c client.Reader) (*VerifyView, error) {
	mesh, err := getMeshOrNil(ctx, c)
	if err != nil {
		return nil, err
	}
	var ns corev1.Namespace
	if err := c.Get(ctx, types.NamespacedName{Name: o.namespace}, &ns); err != nil {
		return nil, fmt.Errorf("read namespace %s: %w", o.namespace, err)
	}
	v := &VerifyView{Namespace: o.namespace, Pods: []PodCheck{}}
	type group struct {
		workload string
		pods     []corev1.Pod
	}
	var groups []group
	if len(o.workloads) == 0 {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(o.namespace)); err != nil {
			return nil, fmt.Errorf("list pods in %s: %w", o.namespace, err)
		}
		groups = append(groups, group{pods: pods.Items})
	}
	for _, w := range o.workloads {
		obj, err := newWorkloadObject(w.Kind)
		if err != nil {
			return nil, err
		}
		if err := c.Get(ctx, types.NamespacedName{Namespace: w.Namespace, Name: w.Name}, obj); err != nil {
			return nil, fmt.Errorf("read %s in %s: %w", w, w.Namespace, err)
		}
		sel, err := metav1.LabelSelectorAsSelector(selectorOf(obj))
		if err != nil {
			return nil, fmt.Errorf("%s in %s has an invalid selector: %w", w, w.Namespace, err)
		}
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(w.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, fmt.Errorf("list pods of %s in %s: %w", w, w.Namespace, err)
		}
		groups = append(groups, group{workload: w.String(), pods: pods.Items})
	}
	for _, g := range groups {
		counted := 0
		for _, p := range g.pods {
			if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue // on its way out; its replacement is what counts
			}
			counted++
			v.Pods = append(v.Pods, checkPod(meshSpec(mesh), o.ownNamespace, ns.Labels, &p, g.workload))
		}
		if counted == 0 {
			what := g.workload
			if what == "" {
				what = "namespace " + o.namespace
			}
			v.Problems = append(v.Problems, what+" has no running pods to verify")
		}
	}
	v.OK = countProblems(v) == 0
	return v, nil
}

// checkPod compares what a pod runs with what the decision table resolves
// for it today, and checks it is Ready.
func checkPod(mesh *v1alpha1.MeshSpec, ownNamespace string, nsLabels map[string]string, p *corev1.Pod, workload string) PodCheck {
	d := revisions.Resolve(mesh, ownNamespace, revisions.Subject{
		Namespace:       p.Namespace,
		NamespaceLabels: nsLabels,
		Labels:          p.Labels,
		Annotations:     p.Annotations,
		HostNetwork:     p.Spec.HostNetwork,
	})
	pc := PodCheck{Name: p.Name, Workload: workload, Runs: p.Labels[revisions.LabelRevision], Want: d.RevisionName(), Ready: podReady(p)}
	var problems []string
	switch {
	case pc.Runs == pc.Want:
	case pc.Want == "":
		problems = append(problems, fmt.Sprintf("runs %s but should have no sidecar (%s)", pc.Runs, d.Message))
	case pc.Runs == "":
		problems = append(problems, fmt.Sprintf("has no sidecar but should run %s; redeploy it", pc.Want))
	default:
		problems = append(problems, fmt.Sprintf("runs %s but should run %s; redeploy it", pc.Runs, pc.Want))
	}
	if !pc.Ready {
		problems = append(problems, "not Ready")
	}
	pc.Problem = strings.Join(problems, "; ")
	return pc
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func renderVerify(w io.Writer, v *VerifyView) error {
	var b strings.Builder
	if len(v.Pods) > 0 {
		rows := [][]string{{"POD", "WORKLOAD", "RUNS", "WANTS", "READY", "RESULT"}}
		for _, p := range v.Pods {
			result := "ok"
			if p.Problem != "" {
				result = p.Problem
			}
			rows = append(rows, []string{p.Name, orDash(p.Workload), orDash(p.Runs), orDash(p.Want), fmt.Sprint(p.Ready), result})
		}
		b.WriteString(table(rows))
	}
	for _, p := range v.Problems {
		fmt.Fprintf(&b, "%s\n", p)
	}
	if v.OK {
		fmt.Fprintf(&b, "verified: %d pods in %s run the revision they resolve to and are Ready\n", len(v.Pods), v.Namespace)
	} else {
		fmt.Fprintf(&b, "verification failed: %d problems in namespace %s\n", countProblems(v), v.Namespace)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// isAre is " is" or " are" for n things.
func isAre(n int) string {
	if n == 1 {
		return " is"
	}
	return " are"
}

// parseLabels reads k=v,k2=v2 (check-inject's -l).
func parseLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]string{}, nil
	}
	set, err := labels.ConvertSelectorToLabelsMap(s)
	if err != nil {
		return nil, fmt.Errorf("-l %q must be key=value pairs separated by commas: %w", s, err)
	}
	return set, nil
}
