package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// defaultTimeout bounds --wait.
const defaultTimeout = 10 * time.Minute

// pollInterval is how often --wait looks at rollouts.
const pollInterval = time.Second

// redeployOptions are the inputs of "redeploy".
type redeployOptions struct {
	*globals
	namespace string
	args      []string
	wait      bool
	timeout   time.Duration

	workloads []workloadRef
}

func newRedeployCommand(g *globals) *cobra.Command {
	o := &redeployOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "redeploy -n NS WORKLOAD... [--wait]",
		Short: "Restart workloads so their new pods get the sidecar their labels resolve to",
		Long: `Restart workloads the way "kubectl rollout restart" does (a new
kubectl.kubernetes.io/restartedAt pod-template annotation), so their own rolling
update replaces the pods and the new pods are injected with the revision their
labels resolve to today. WORKLOAD is a Deployment name, or kind/name for a
deployment, statefulset or daemonset.`,
		Example: `  meshrev redeploy -n default reviews-v2 --wait
  meshrev redeploy -n default deployment/reviews-v1 statefulset/ratings`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(args); err != nil {
				return err
			}
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "", "namespace of the workloads (default: the kubeconfig context's)")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "follow the rollouts until they complete")
	cmd.Flags().DurationVar(&o.timeout, "timeout", defaultTimeout, "how long --wait waits for all rollouts")
	return cmd
}

func (o *redeployOptions) complete(args []string) error {
	o.args = args
	if o.namespace == "" && len(args) > 0 {
		ns, err := o.contextNamespace()
		if err != nil {
			return fmt.Errorf("redeploy: %w", err)
		}
		o.namespace = ns
	}
	return nil
}

func (o *redeployOptions) validate() error {
	if len(o.args) == 0 {
		return fmt.Errorf("redeploy: name the workloads to restart: meshrev redeploy -n NS WORKLOAD... (a Deployment name, or kind/name)")
	}
	if o.timeout <= 0 {
		return fmt.Errorf("redeploy: --timeout must be positive, got %s", o.timeout)
	}
	seen := map[workloadRef]bool{}
	o.workloads = nil
	for _, a := range o.args {
		w, err := parseWorkload(o.namespace, a)
		if err != nil {
			return fmt.Errorf("redeploy: %w", err)
		}
		if !seen[w] {
			seen[w] = true
			o.workloads = append(o.workloads, w)
		}
	}
	return nil
}

func (o *redeployOptions) run(ctx context.Context) error {
	c, err := o.Client()
	if err != nil {
		return err
	}
	at := o.now().Format(time.RFC3339)
	var targets []rolloutTarget
	for _, w := range o.workloads {
		gen, err := restart(ctx, c, w, at)
		if err != nil {
			return fmt.Errorf("redeploy: %w", err)
		}
		fmt.Fprintf(o.streams.Out, "%s in %s restarted\n", w, w.Namespace)
		targets = append(targets, rolloutTarget{ref: w, generation: gen})
	}
	if !o.wait {
		return nil
	}
	rw := newRolloutWaiter(c, o.streams.Out, len(targets), o.timeout)
	if err := rw.wait(ctx, targets); err != nil {
		return fmt.Errorf("redeploy: %w", err)
	}
	return nil
}
