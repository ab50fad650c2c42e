package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// DataPlaneView is what "meshrev dataplane status" shows: the controller's
// counts, and the complete list of outdated workloads, computed from the
// pods (the Mesh lists only the first few), filtered to a namespace when -n
// is given.
type DataPlaneView struct {
	// Stable is the stable revision.
	Stable string `json:"stable"`
	// Previous is the old stable after a promotion, until it is unpublished.
	Previous string `json:"previous,omitempty"`
	// Namespace is the namespace the workloads are filtered to ("" for all).
	Namespace string `json:"namespace,omitempty"`
	// Pods counts the mesh's pods that carry a meshrev sidecar (all namespaces).
	Pods int32 `json:"pods"`
	// UpToDate counts those that run the revision they resolve to today.
	UpToDate int32 `json:"upToDate"`
	// Outdated counts those that run another revision.
	Outdated int32 `json:"outdated"`
	// Workloads are the outdated workloads (gateways marked).
	Workloads []v1alpha1.WorkloadStatus `json:"workloads"`
	// Stale is set when the report describes an older spec than the current one.
	Stale bool `json:"stale,omitempty"`
}

func newDataplaneCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "dataplane",
		Aliases: []string{"dp"},
		Short:   "Report and upgrade workloads whose sidecar is outdated",
	}
	cmd.AddCommand(newDataplaneStatusCommand(g), newDataplaneUpgradeCommand(g))
	return cmd
}

func newDataplaneStatusCommand(g *globals) *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "status [-n NS]",
		Short: "List the workloads and gateways whose pods run an outdated sidecar",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			m, err := getMesh(cmd.Context(), c)
			if err != nil {
				return fmt.Errorf("dataplane status: %w", err)
			}
			outdated, err := outdatedWorkloads(cmd.Context(), c, m, g.ownNamespace, namespace)
			if err != nil {
				return fmt.Errorf("dataplane status: %w", err)
			}
			v := buildDataPlaneView(m, outdated, namespace)
			if g.output != outputTable {
				return printStructured(g.streams.Out, g.output, v)
			}
			return renderDataPlane(g.streams.Out, v)
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "only workloads of this namespace (default: all namespaces)")
	return cmd
}

// outdatedWorkloads computes the complete list of outdated workloads (of
// namespace, or of all namespaces when "") from the shared read model: the
// namespaces' labels and the injected pods' metadata, listed by label
// selector, page by page, with the same decision the controller and the
// injector use (revisions.DataPlaneReport).
func outdatedWorkloads(ctx context.Context, c client.Reader, m *v1alpha1.Mesh, ownNamespace, namespace string) ([]v1alpha1.WorkloadStatus, error) {
	var facts revisions.Facts
	var err error
	if facts.Namespaces, err = readmodel.Namespaces(ctx, c); err != nil {
		return nil, err
	}
	opts := []client.ListOption{client.Limit(readmodel.PageSize)}
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if facts.Pods, err = readmodel.InjectedPods(ctx, c, true, opts...); err != nil {
		return nil, err
	}
	dp, _ := revisions.DataPlaneReport(&m.Spec, ownNamespace, &facts)
	return dp.OutdatedWorkloads, nil
}

// buildDataPlaneView puts the Mesh's counts and the outdated workloads
// (filtered to namespace) together.
func buildDataPlaneView(m *v1alpha1.Mesh, outdated []v1alpha1.WorkloadStatus, namespace string) *DataPlaneView {
	dp := m.Status.DataPlane
	v := &DataPlaneView{
		Stable:    m.Spec.Stable,
		Previous:  revisions.Previous(&m.Spec),
		Namespace: namespace,
		Pods:      dp.Pods,
		UpToDate:  dp.UpToDate,
		Outdated:  dp.Outdated,
		Workloads: []v1alpha1.WorkloadStatus{},
		Stale:     m.Status.ObservedGeneration < m.Generation,
	}
	for _, w := range outdated {
		if namespace == "" || w.Namespace == namespace {
			v.Workloads = append(v.Workloads, w)
		}
	}
	return v
}

// renderDataPlane prints the report: gateways, then workloads.
func renderDataPlane(w io.Writer, v *DataPlaneView) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Data plane: %d pods with a sidecar, %d up to date, %d outdated (stable %s)\n", v.Pods, v.UpToDate, v.Outdated, v.Stable)
	if v.Stale {
		b.WriteString("(the controller has not reported on the latest change yet; the list may lag)\n")
	}
	var gateways, workloads []v1alpha1.WorkloadStatus
	for _, wl := range v.Workloads {
		if wl.Gateway {
			gateways = append(gateways, wl)
		} else {
			workloads = append(workloads, wl)
		}
	}
	scope := ""
	if v.Namespace != "" {
		scope = " in namespace " + v.Namespace
	}
	if len(v.Workloads) == 0 {
		fmt.Fprintf(&b, "\nNothing to upgrade%s: every pod runs the revision its labels resolve to.\n", scope)
		_, err := io.WriteString(w, b.String())
		return err
	}
	section := func(title string, items []v1alpha1.WorkloadStatus) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n%s%s:\n", title, scope)
		rows := [][]string{{"NAMESPACE", "KIND", "NAME", "PODS", "RUNS", "WANTS"}}
		for _, wl := range items {
			rows = append(rows, []string{wl.Namespace, wl.Kind, wl.Name, fmt.Sprint(wl.Pods), strings.Join(wl.Revisions, ","), wl.Want})
		}
		b.WriteString(table(rows))
	}
	section("Gateways to upgrade", gateways)
	section("Workloads to upgrade", workloads)
	ns := ""
	if v.Namespace != "" {
		ns = " -n " + v.Namespace
	}
	b.WriteString("\nNext:\n")
	if len(workloads) > 0 {
		fmt.Fprintf(&b, "  meshrev dataplane upgrade%s --all --wait\n", ns)
	}
	if len(gateways) > 0 {
		fmt.Fprintf(&b, "  meshrev dataplane upgrade%s --gateways --wait\n", ns)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// dataplaneUpgradeOptions are the inputs of "dataplane upgrade".
type dataplaneUpgradeOptions struct {
	*globals
	namespace string
	args      []string
	all       bool
	gateways  bool
	batch     int
	wait      bool
	// timeout bounds each rollout; overallTimeout (0: none) the whole upgrade.
	timeout, overallTimeout time.Duration

	// selectors are the parsed WORKLOAD arguments; kind is "" when the
	// argument did not name one.
	selectors []workloadRef
}

func newDataplaneUpgradeCommand(g *globals) *cobra.Command {
	o := &dataplaneUpgradeOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "upgrade [-n NS] [WORKLOAD...|--all] [--gateways] [--batch N] [--wait]",
		Short: "Restart outdated workloads so their pods get the revision they resolve to",
		Long: `Restart the workloads of the data-plane report (meshrev dataplane status) whose pods
run an outdated sidecar, the way "kubectl rollout restart" does, so each
workload's own rolling update (and PodDisruptionBudget) applies.

Choose the workloads by name (a name, or kind/name; -n narrows to a namespace) or
take them all with --all. Gateways are upgraded only with --gateways: with
--gateways alone, only the gateways; with --all --gateways, everything.
--batch N keeps N rollouts in flight: as soon as one finishes, the next
workload is restarted. --timeout bounds each rollout, --overall-timeout (off by
default) the whole upgrade. Progress lines show the throughput and an estimate
of the time left. The work list is computed from the pods themselves, so
running the same command again after an interruption or a timeout continues
where it stopped: workloads already upgraded are not in it, and a workload
still rolling out from an earlier run is followed rather than restarted again.`,
		Example: `  meshrev dataplane upgrade --all --wait
  meshrev dataplane upgrade -n default reviews-v1 reviews-v3 --wait
  meshrev dataplane upgrade --gateways --wait
  meshrev dataplane upgrade --all --batch 5`,
		RunE: func(cmd *cobra.Command, args []string) error { return o.execute(cmd.Context(), args) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", "", "only workloads of this namespace (default: all namespaces)")
	f.BoolVar(&o.all, "all", false, "upgrade every outdated workload (gateways only with --gateways)")
	f.BoolVar(&o.gateways, "gateways", false, "upgrade gateways too (alone: only gateways)")
	f.IntVar(&o.batch, "batch", 0, "keep this many rollouts in flight, restarting the next as one finishes (0: all at once)")
	f.BoolVar(&o.wait, "wait", false, "follow the rollouts until they complete")
	f.DurationVar(&o.timeout, "timeout", defaultTimeout, "how long to wait for each rollout")
	f.DurationVar(&o.overallTimeout, "overall-timeout", 0, "how long to wait for the whole upgrade (0: no limit)")
	return cmd
}

// execute is "dataplane upgrade [WORKLOAD...]": the verb and the
// dashboard's buttons both run it.
func (o *dataplaneUpgradeOptions) execute(ctx context.Context, args []string) error {
	o.args = args
	if err := o.validate(); err != nil {
		return err
	}
	return o.run(ctx)
}

func (o *dataplaneUpgradeOptions) validate() error {
	switch {
	case len(o.args) > 0 && o.all:
		return fmt.Errorf("dataplane upgrade: name workloads or pass --all, not both")
	case len(o.args) == 0 && !o.all && !o.gateways:
		return fmt.Errorf("dataplane upgrade: say what to upgrade: WORKLOAD names, --all, or --gateways (see meshrev dataplane status)")
	case o.batch < 0:
		return fmt.Errorf("dataplane upgrade: --batch must be 0 (all at once) or more, got %d", o.batch)
	case o.timeout <= 0:
		return fmt.Errorf("dataplane upgrade: --timeout must be positive, got %s", o.timeout)
	case o.overallTimeout < 0:
		return fmt.Errorf("dataplane upgrade: --overall-timeout must be 0 (no limit) or positive, got %s", o.overallTimeout)
	}
	if o.namespace != "" {
		if errs := validation.IsDNS1123Label(o.namespace); len(errs) > 0 {
			return fmt.Errorf("dataplane upgrade: %q is not a namespace name: %s", o.namespace, strings.Join(errs, "; "))
		}
	}
	o.selectors = nil
	for _, a := range o.args {
		w, err := parseWorkload(o.namespace, a)
		if err != nil {
			return fmt.Errorf("dataplane upgrade: %w", err)
		}
		if !strings.Contains(a, "/") {
			w.Kind = "" // a bare name matches whatever kind the report lists
		}
		o.selectors = append(o.selectors, w)
	}
	return nil
}

// selection is what an upgrade will restart, and what it leaves out and why.
type selection struct {
	restart []workloadRef
	skipped []string
	// unrestartable are workloads a restart cannot upgrade (bare pods, other owners).
	unrestartable []string
}

// choose picks the workloads of the report the flags ask for.
func (o *dataplaneUpgradeOptions) choose(report []v1alpha1.WorkloadStatus) (selection, error) {
	var s selection
	matched := make([]bool, len(o.selectors))
	for _, wl := range report {
		if o.namespace != "" && wl.Namespace != o.namespace {
			continue
		}
		wanted := false
		if len(o.selectors) > 0 {
			for i, sel := range o.selectors {
				if sel.Name == wl.Name && (sel.Kind == "" || sel.Kind == wl.Kind) && (sel.Namespace == "" || sel.Namespace == wl.Namespace) {
					wanted, matched[i] = true, true
				}
			}
		} else {
			wanted = (o.all && !wl.Gateway) || (o.gateways && wl.Gateway)
		}
		ref := workloadRef{Kind: wl.Kind, Namespace: wl.Namespace, Name: wl.Name}
		switch {
		case !wanted:
			continue
		case wl.Gateway && !o.gateways:
			s.skipped = append(s.skipped, fmt.Sprintf("gateway %s in %s (pass --gateways to upgrade gateways)", ref, wl.Namespace))
		case wl.Kind != kindDeployment && wl.Kind != kindStatefulSet && wl.Kind != kindDaemonSet:
			s.unrestartable = append(s.unrestartable, fmt.Sprintf("%s %s in %s (%d pods): not a Deployment, StatefulSet or DaemonSet; recreate its pods to upgrade them", wl.Kind, wl.Name, wl.Namespace, wl.Pods))
		default:
			s.restart = append(s.restart, ref)
		}
	}
	var missing []string
	for i := range o.selectors {
		if !matched[i] {
			missing = append(missing, o.args[i])
		}
	}
	if len(missing) > 0 {
		return s, fmt.Errorf("%s not in the data-plane report: no outdated pods (see meshrev dataplane status)", strings.Join(missing, ", ")+isAre(len(missing)))
	}
	return s, nil
}

func (o *dataplaneUpgradeOptions) run(ctx context.Context) error {
	c, err := o.Client()
	if err != nil {
		return err
	}
	m, err := getMesh(ctx, c)
	if err != nil {
		return fmt.Errorf("dataplane upgrade: %w", err)
	}
	// The work list comes from the pods and the current spec, never from
	// the (bounded) status: a rerun after an interruption sees only what is
	// still outdated, and continues from there.
	outdated, err := outdatedWorkloads(ctx, c, m, o.ownNamespace, o.namespace)
	if err != nil {
		return fmt.Errorf("dataplane upgrade: %w", err)
	}
	sel, err := o.choose(outdated)
	if err != nil {
		return fmt.Errorf("dataplane upgrade: %w", err)
	}
	for _, s := range sel.skipped {
		fmt.Fprintf(o.streams.ErrOut, "skipped %s\n", s)
	}
	if len(sel.restart) == 0 && len(sel.unrestartable) == 0 {
		fmt.Fprintf(o.streams.Out, "nothing to upgrade: no outdated workload matches (stable %s)\n", m.Spec.Stable)
		return nil
	}

	u := &upgrader{
		c:              c,
		out:            o.streams.Out,
		inFlight:       o.batch,
		follow:         o.wait || o.batch > 0,
		rolloutTimeout: o.timeout,
		overall:        o.overallTimeout,
		at:             o.now().Format(time.RFC3339),
		interval:       pollInterval,
	}
	if err := u.run(ctx, sel.restart); err != nil {
		return fmt.Errorf("dataplane upgrade: %w", err)
	}
	if len(sel.unrestartable) > 0 {
		for _, u := range sel.unrestartable {
			fmt.Fprintf(o.streams.ErrOut, "cannot restart %s\n", u)
		}
		return errors.New("dataplane upgrade: some outdated pods cannot be upgraded by a restart (listed above)")
	}
	return nil
}
