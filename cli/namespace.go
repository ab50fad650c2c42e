package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
)

func newNamespaceCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "namespace",
		Aliases: []string{"ns"},
		Short:   "Choose which revision injects a namespace's new pods",
	}
	cmd.AddCommand(newNamespaceSwitchCommand(g), newNamespaceEnableCommand(g), newNamespaceDisableCommand(g))
	return cmd
}

// namespaceMode is what a namespace command makes of the injection labels.
type namespaceMode int

const (
	// modeRevision drops istio-injection and sets istio.io/rev.
	modeRevision namespaceMode = iota
	// modeEnabled sets istio-injection=enabled (stable) and drops istio.io/rev.
	modeEnabled
	// modeDisabled sets istio-injection=disabled and drops istio.io/rev.
	modeDisabled
)

// namespaceOptions are the inputs of namespace switch|enable|disable.
type namespaceOptions struct {
	*globals
	verb      string
	namespace string
	mode      namespaceMode
	// revision is stable, canary or a revision name (modeRevision).
	revision string
}

func newNamespaceSwitchCommand(g *globals) *cobra.Command {
	o := &namespaceOptions{globals: g, verb: "namespace switch", mode: modeRevision}
	cmd := &cobra.Command{
		Use:   "switch NS --to stable|canary|REVISION",
		Short: "Point a namespace at a tag or revision (drops istio-injection, sets istio.io/rev)",
		Long: `Relabel a namespace in one update: remove istio-injection and set istio.io/rev to
stable, canary or a revision name. Only new pods are affected: redeploy the
namespace's workloads to move them (meshrev redeploy -n NS WORKLOAD --wait).`,
		Example: `  meshrev namespace switch default --to canary
  meshrev namespace switch default --to stable`,
		Args: exactArgs(1, "NS"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.execute(cmd.Context(), args) },
	}
	cmd.Flags().StringVar(&o.revision, "to", "", "stable, canary or a published revision name (required)")
	return cmd
}

func newNamespaceEnableCommand(g *globals) *cobra.Command {
	o := &namespaceOptions{globals: g, verb: "namespace enable", mode: modeEnabled}
	cmd := &cobra.Command{
		Use:   "enable NS [--revision stable|canary|REVISION]",
		Short: "Enable injection in a namespace",
		Long: `Enable sidecar injection for a namespace's new pods. Without --revision the
namespace gets istio-injection=enabled (always the stable revision, and it
follows promotions); with --revision it gets istio.io/rev=<revision> instead.`,
		Args: exactArgs(1, "NS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.revision != "" {
				o.mode = modeRevision
			}
			return o.execute(cmd.Context(), args)
		},
	}
	cmd.Flags().StringVar(&o.revision, "revision", "", "stable, canary or a published revision name (default: istio-injection=enabled)")
	return cmd
}

func newNamespaceDisableCommand(g *globals) *cobra.Command {
	o := &namespaceOptions{globals: g, verb: "namespace disable", mode: modeDisabled}
	return &cobra.Command{
		Use:   "disable NS",
		Short: "Disable injection in a namespace (istio-injection=disabled, drops istio.io/rev)",
		Args:  exactArgs(1, "NS"),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.execute(cmd.Context(), args) },
	}
}

func (o *namespaceOptions) execute(ctx context.Context, args []string) error {
	o.complete(args)
	if err := o.validate(); err != nil {
		return err
	}
	return o.run(ctx)
}

func (o *namespaceOptions) complete(args []string) {
	o.namespace = args[0]
}

func (o *namespaceOptions) validate() error {
	if errs := validation.IsDNS1123Label(o.namespace); len(errs) > 0 {
		return fmt.Errorf("%s: %q is not a namespace name: %s", o.verb, o.namespace, strings.Join(errs, "; "))
	}
	if o.mode != modeRevision {
		return nil
	}
	if o.revision == "" {
		return fmt.Errorf("%s: say which revision: --to stable, --to canary or --to <revision>", o.verb)
	}
	if errs := validation.IsValidLabelValue(o.revision); len(errs) > 0 {
		return fmt.Errorf("%s: %q cannot be a label value: %s", o.verb, o.revision, strings.Join(errs, "; "))
	}
	return nil
}

// apply sets the labels of the mode on a namespace's labels; it reports
// whether anything changed.
func (o *namespaceOptions) apply(labels map[string]string) bool {
	want := map[string]string{}
	switch o.mode {
	case modeRevision:
		want[revisions.LabelRev] = o.revision
	case modeEnabled:
		want[revisions.LabelInjection] = revisions.InjectionEnabled
	case modeDisabled:
		want[revisions.LabelInjection] = revisions.InjectionDisabled
	}
	changed := false
	for _, k := range []string{revisions.LabelInjection, revisions.LabelRev} {
		v, ok := want[k]
		switch {
		case ok && labels[k] != v:
			labels[k] = v
			changed = true
		case !ok:
			if _, had := labels[k]; had {
				delete(labels, k)
				changed = true
			}
		}
	}
	return changed
}

func (o *namespaceOptions) run(ctx context.Context) error {
	c, err := o.Client()
	if err != nil {
		return err
	}
	ns, err := relabelNamespace(ctx, c, o.namespace, o.apply)
	unchanged := errors.Is(err, errNoChange)
	if err != nil && !unchanged {
		return fmt.Errorf("%s %s: %w", o.verb, o.namespace, err)
	}
	if o.output != outputTable {
		ns.APIVersion, ns.Kind, ns.ManagedFields = "v1", "Namespace", nil
		return printStructured(o.streams.Out, o.output, ns)
	}
	label := injectionLabel(ns.Labels)
	if unchanged {
		fmt.Fprintf(o.streams.Out, "namespace %s already carries %s\n", o.namespace, label)
	} else {
		fmt.Fprintf(o.streams.Out, "namespace %s now carries %s\n", o.namespace, label)
	}
	// Say what the label means today, through the same decision table the
	// revision router applies.
	mesh, err := getMeshOrNil(ctx, c)
	if err != nil {
		return err
	}
	d := revisions.Resolve(meshSpec(mesh), o.ownNamespace, revisions.Subject{Namespace: o.namespace, NamespaceLabels: ns.Labels})
	if d.Inject {
		fmt.Fprintf(o.streams.Out, "new pods get revision %s (version %s): %s\n", d.Revision.Name, d.Revision.Version, d.Message)
		if !unchanged {
			fmt.Fprintf(o.streams.Out, "Next: redeploy the namespace's workloads to move them: meshrev redeploy -n %s WORKLOAD... --wait\n", o.namespace)
		}
	} else {
		fmt.Fprintf(o.streams.Out, "new pods get no sidecar: %s\n", d.Message)
	}
	return nil
}

// relabelNamespace applies change to a namespace's labels in one update,
// re-reading on conflict.
func relabelNamespace(ctx context.Context, c client.Client, name string, change func(map[string]string) bool) (*corev1.Namespace, error) {
	var ns corev1.Namespace
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %s does not exist", name)
			}
			return err
		}
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		if !change(ns.Labels) {
			return errNoChange
		}
		return c.Update(ctx, &ns)
	})
	return &ns, err
}

// injectionLabel describes the injection labels a namespace carries:
// "istio.io/rev=canary", "istio-injection=enabled", or "no injection label".
func injectionLabel(labels map[string]string) string {
	var parts []string
	for _, k := range []string{revisions.LabelInjection, revisions.LabelRev} {
		if v, ok := labels[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return "no injection label"
	}
	return strings.Join(parts, ", ")
}
