package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func newCanaryCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "canary",
		Short: "Deploy a canary control-plane revision",
	}
	cmd.AddCommand(newCanaryDeployCommand(g))
	return cmd
}

// canaryDeployOptions are the inputs of "canary deploy".
type canaryDeployOptions struct {
	*globals
	version           string
	proxyImage        string
	controlPlaneImage string
	loadBalancer      bool

	// revision is the revision name derived from version.
	revision string
}

func newCanaryDeployCommand(g *globals) *cobra.Command {
	o := &canaryDeployOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "deploy VERSION",
		Short: "Publish VERSION as the canary revision beside stable",
		Long: `Publish a new control-plane revision named after VERSION (1.23.6 → 1-23-6) and
tag it canary, in one update of the Mesh. No workload uses it until a namespace
is switched to it (meshrev namespace switch NS --to canary).

The proxy image defaults to stable's repository tagged VERSION; when stable names
no proxy image, the manager's --proxy-image-repo (docker.io/istio/proxyv2 unless
configured) is used at injection, as for stable. The canary gets a control plane
when stable has one, with stable's replicas and service type and stable's image
repository (docker.io/istio/pilot when none) tagged VERSION.`,
		Example: `  meshrev canary deploy 1.23.6
  meshrev canary deploy 1.23.6 --load-balancer`,
		Args: exactArgs(1, "VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.execute(cmd.Context(), args) },
	}
	f := cmd.Flags()
	f.StringVar(&o.proxyImage, "proxy-image", "", "sidecar proxy image (default: stable's proxy repository tagged VERSION, else the manager's --proxy-image-repo, "+revisions.DefaultProxyImageRepo+" unless configured)")
	f.StringVar(&o.controlPlaneImage, "control-plane-image", "", "control plane image (default: stable's control-plane repository, or "+revisions.DefaultControlPlaneImageRepo+", tagged VERSION; when stable's control plane is a Helm release, the canary's is one too, from the same repository, unless this flag or --load-balancer asks for an image)")
	f.BoolVar(&o.loadBalancer, "load-balancer", false, "expose the canary's control plane through a Service of type LoadBalancer")
	return cmd
}

// execute is "canary deploy VERSION": the verb and the dashboard's button
// both run it.
func (o *canaryDeployOptions) execute(ctx context.Context, args []string) error {
	if err := o.complete(args); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	return o.run(ctx)
}

func (o *canaryDeployOptions) complete(args []string) error {
	o.version = strings.TrimPrefix(args[0], "v")
	name, err := revisions.RevisionName(o.version)
	if err != nil {
		return fmt.Errorf("canary deploy: %w", err)
	}
	o.revision = name
	return nil
}

func (o *canaryDeployOptions) validate() error {
	for flag, image := range map[string]string{"--proxy-image": o.proxyImage, "--control-plane-image": o.controlPlaneImage} {
		if strings.ContainsAny(image, " \t\n") {
			return fmt.Errorf("canary deploy: %s %q is not an image reference", flag, image)
		}
	}
	return nil
}

// canaryRevision builds the revision to publish from the flags and the
// stable revision it sits beside.
func (o *canaryDeployOptions) canaryRevision(stable *v1alpha1.Revision) v1alpha1.Revision {
	rev := v1alpha1.Revision{Name: o.revision, Version: o.version, ProxyImage: o.proxyImage}
	// Left empty, the proxy image is defaulted at injection from the
	// manager's --proxy-image-repo (docker.io/istio/proxyv2 unless
	// configured), as stable's is; a stable that names its image is followed.
	if rev.ProxyImage == "" && stable != nil && stable.ProxyImage != "" {
		rev.ProxyImage = imageRepository(stable.ProxyImage) + ":" + o.version
	}
	var stableCP *v1alpha1.ControlPlane
	if stable != nil {
		stableCP = stable.ControlPlane
	}
	if stableCP == nil && o.controlPlaneImage == "" && !o.loadBalancer {
		return rev
	}
	if stableCP != nil && stableCP.Helm != nil && o.controlPlaneImage == "" && !o.loadBalancer {
		// Stable's control plane is a release of Istio's charts: so is the
		// canary's, from the same repository with the same values, at the
		// canary's version (its own chart version defaults to it).
		h := &v1alpha1.HelmControlPlane{Repository: stableCP.Helm.Repository}
		if stableCP.Helm.Values != nil {
			h.Values = stableCP.Helm.Values.DeepCopy()
		}
		rev.ControlPlane = &v1alpha1.ControlPlane{Helm: h}
		return rev
	}
	cp := &v1alpha1.ControlPlane{Image: o.controlPlaneImage}
	if stableCP != nil {
		cp.Replicas, cp.ServiceType = stableCP.Replicas, stableCP.ServiceType
		if cp.Replicas != nil {
			r := *cp.Replicas
			cp.Replicas = &r
		}
	}
	if cp.Image == "" {
		repo := revisions.DefaultControlPlaneImageRepo
		if stableCP != nil && stableCP.Image != "" {
			repo = imageRepository(stableCP.Image)
		}
		cp.Image = repo + ":" + o.version
	}
	if o.loadBalancer {
		cp.ServiceType = corev1.ServiceTypeLoadBalancer
	}
	rev.ControlPlane = cp
	return rev
}

func (o *canaryDeployOptions) run(ctx context.Context) error {
	c, err := o.Client()
	if err != nil {
		return err
	}
	var added v1alpha1.Revision
	m, err := updateMesh(ctx, c, func(m *v1alpha1.Mesh) error {
		if m.Spec.Canary == o.revision {
			if r := revisions.FindRevision(&m.Spec, o.revision); r != nil && r.Version == o.version {
				return errNoChange
			}
		}
		added = o.canaryRevision(revisions.FindRevision(&m.Spec, m.Spec.Stable))
		m.Spec.Revisions = append(m.Spec.Revisions, added)
		m.Spec.Canary = o.revision
		return nil
	})
	switch {
	case errors.Is(err, errNoChange):
		fmt.Fprintf(o.streams.ErrOut, "canary %s (version %s) is already deployed\n", o.revision, o.version)
		return o.printMesh(m)
	case err != nil:
		return fmt.Errorf("canary deploy %s: %w", o.revision, err)
	}
	if o.output != outputTable {
		return o.printMesh(m)
	}
	out := o.streams.Out
	fmt.Fprintf(out, "canary %s (version %s) deployed beside stable %s\n", added.Name, added.Version, m.Spec.Stable)
	if added.ProxyImage != "" {
		fmt.Fprintf(out, "  proxy image:   %s\n", added.ProxyImage)
	} else {
		fmt.Fprintf(out, "  proxy image:   the manager's --proxy-image-repo (%s unless configured) tagged %s\n", revisions.DefaultProxyImageRepo, added.Version)
	}
	if cp := added.ControlPlane; cp != nil && cp.Helm != nil {
		fmt.Fprintf(out, "  control plane: Helm release %s of Istio's istiod chart %s from %s\n",
			revisions.ControlPlaneName(added.Name), revisions.ChartVersion(&added), revisions.ChartRepository(cp.Helm))
	} else if cp != nil {
		st := cp.ServiceType
		if st == "" {
			st = corev1.ServiceTypeClusterIP
		}
		fmt.Fprintf(out, "  control plane: %s (Service %s)\n", cp.Image, st)
	}
	next := revisions.Next(&m.Spec, v1alpha1.PhaseCanaryDeployed)
	fmt.Fprintf(out, "Next: %s\n  %s\n", next.Text, next.Command)
	return nil
}

// printMesh prints the Mesh for -o json|yaml (nothing for the table output).
func (g *globals) printMesh(m *v1alpha1.Mesh) error {
	if g.output == outputTable || m == nil {
		return nil
	}
	m = m.DeepCopy()
	m.APIVersion, m.Kind = v1alpha1.GroupVersion.String(), "Mesh"
	m.ManagedFields = nil
	return printStructured(g.streams.Out, g.output, m)
}

// imageRepository strips the tag or digest from an image reference:
// registry:5000/istio/proxyv2:1.22.6 → registry:5000/istio/proxyv2.
func imageRepository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

// stepOptions are the inputs of promote, unpublish and revoke: destructive
// steps that ask for confirmation.
type stepOptions struct {
	*globals
	yes   bool
	force bool
}

func (o *stepOptions) addFlags(cmd *cobra.Command, force string) {
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	if force != "" {
		cmd.Flags().BoolVar(&o.force, "force", false, force)
	}
}

func (o *stepOptions) confirmer() confirmer {
	return confirmer{in: o.streams.In, errOut: o.streams.ErrOut, isTerminal: o.isTerminal}
}

func newPromoteCommand(g *globals) *cobra.Command {
	o := &stepOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "promote",
		Short: "Promote the canary revision to stable",
		Long: `Make the canary the stable revision, in one update of the Mesh. The controller then
relabels every namespace labelled istio.io/rev=canary to stable. Pods keep their
sidecar until they are redeployed (meshrev dataplane upgrade).

After a promotion the upgrade can no longer be revoked.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.runPromote(cmd.Context()) },
	}
	o.addFlags(cmd, "promote even if the canary's control plane is not Ready (sets annotation "+revisions.AnnotationForce+"=true for this step)")
	return cmd
}

func (o *stepOptions) runPromote(ctx context.Context) error {
	return o.run(ctx, step{
		verb: "promote",
		target: func(m *v1alpha1.Mesh) (string, error) {
			if m.Spec.Canary == "" {
				return "", fmt.Errorf("no canary is deployed, nothing to promote (stable is %s); deploy one first (meshrev canary deploy VERSION)", m.Spec.Stable)
			}
			return m.Spec.Canary, nil
		},
		question: func(m *v1alpha1.Mesh, canary string) string {
			return fmt.Sprintf("Promote canary %s to stable (replacing %s)? After a promotion the upgrade cannot be revoked.", canary, m.Spec.Stable)
		},
		apply: func(m *v1alpha1.Mesh, canary string) error {
			if m.Spec.Canary != canary {
				return fmt.Errorf("the Mesh changed meanwhile: canary is now %q; run meshrev status and decide again", m.Spec.Canary)
			}
			m.Spec.Stable, m.Spec.Canary = canary, ""
			return nil
		},
		done: func(w io.Writer, before, after *v1alpha1.Mesh, canary string) {
			fmt.Fprintf(w, "promoted %s to stable (was %s); namespaces labelled %s=%s are relabelled %s by the controller\n",
				canary, before.Spec.Stable, revisions.LabelRev, revisions.TagCanary, revisions.TagStable)
			next := revisions.Next(&after.Spec, v1alpha1.PhaseDataPlaneUpgrading)
			fmt.Fprintf(w, "Next: %s\n  %s\n", next.Text, next.Command)
		},
	})
}

func newUnpublishCommand(g *globals) *cobra.Command {
	o := &stepOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "unpublish",
		Short: "Remove the old revision (neither stable nor canary) after an upgrade",
		Long: `Remove the published revision that is neither stable nor canary (the old stable after
a promotion), in one update of the Mesh. The controller removes its control plane.
The server refuses while a namespace pins it or pods still run its sidecar.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.runUnpublish(cmd.Context()) },
	}
	o.addFlags(cmd, "unpublish even if pods still run the revision's sidecar (they lose their control plane)")
	return cmd
}

func (o *stepOptions) runUnpublish(ctx context.Context) error {
	return o.run(ctx, step{
		verb: "unpublish",
		target: func(m *v1alpha1.Mesh) (string, error) {
			if old := revisions.Previous(&m.Spec); old != "" {
				return old, nil
			}
			return "", fmt.Errorf("no revision other than stable %s and the canary is published, nothing to unpublish", m.Spec.Stable)
		},
		question: func(m *v1alpha1.Mesh, old string) string {
			if n := m.Status.DataPlane.Outdated; n > 0 {
				return fmt.Sprintf("Unpublish revision %s and remove its control plane? The last report counts %d outdated pods.", old, n)
			}
			return fmt.Sprintf("Unpublish revision %s and remove its control plane?", old)
		},
		apply: func(m *v1alpha1.Mesh, old string) error {
			if now := revisions.Previous(&m.Spec); now != old {
				return fmt.Errorf("the Mesh changed meanwhile: the old revision is now %q; run meshrev status and decide again", now)
			}
			m.Spec.Revisions = removeRevision(m.Spec.Revisions, old)
			return nil
		},
		done: func(w io.Writer, _, after *v1alpha1.Mesh, old string) {
			fmt.Fprintf(w, "unpublished %s; stable %s is the only revision left and the upgrade is complete\n", old, after.Spec.Stable)
		},
	})
}

func newRevokeCommand(g *globals) *cobra.Command {
	o := &stepOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Remove the canary revision (roll back before promotion)",
		Long: `Remove the canary tag and the canary revision, in one update of the Mesh; the
controller removes its control plane. The server refuses while a namespace is
still labelled istio.io/rev=canary or with the canary's name: switch them back
first (meshrev namespace switch NS --to stable) and redeploy their workloads.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.runRevoke(cmd.Context()) },
	}
	o.addFlags(cmd, "")
	return cmd
}

func (o *stepOptions) runRevoke(ctx context.Context) error {
	return o.run(ctx, step{
		verb: "revoke",
		target: func(m *v1alpha1.Mesh) (string, error) {
			if m.Spec.Canary == "" {
				return "", fmt.Errorf("no canary is deployed, nothing to revoke (stable is %s)", m.Spec.Stable)
			}
			return m.Spec.Canary, nil
		},
		question: func(_ *v1alpha1.Mesh, canary string) string {
			return fmt.Sprintf("Revoke canary %s and remove its control plane?", canary)
		},
		apply: func(m *v1alpha1.Mesh, canary string) error {
			if m.Spec.Canary != canary {
				return fmt.Errorf("the Mesh changed meanwhile: canary is now %q; run meshrev status and decide again", m.Spec.Canary)
			}
			m.Spec.Canary = ""
			m.Spec.Revisions = removeRevision(m.Spec.Revisions, canary)
			return nil
		},
		done: func(w io.Writer, _, after *v1alpha1.Mesh, canary string) {
			fmt.Fprintf(w, "revoked canary %s; stable %s serves every namespace again\n", canary, after.Spec.Stable)
		},
	})
}

// step is one destructive lifecycle step: one update of the Mesh, confirmed
// first. The rules are the server's; a step only says what it changes.
type step struct {
	// verb names the step in prompts and errors.
	verb string
	// target picks the revision the step acts on, or says why there is none.
	target func(m *v1alpha1.Mesh) (string, error)
	// question is the confirmation asked on a terminal.
	question func(m *v1alpha1.Mesh, target string) string
	// apply changes the Mesh; it refuses when the Mesh moved on since target was picked.
	apply func(m *v1alpha1.Mesh, target string) error
	// done reports the step in table output.
	done func(w io.Writer, before, after *v1alpha1.Mesh, target string)
}

// run reads the Mesh, confirms, and takes the step in one update (retried on
// conflict), with meshrev.io/force set in that same update when --force is given.
func (o *stepOptions) run(ctx context.Context, s step) error {
	c, err := o.Client()
	if err != nil {
		return err
	}
	before, err := getMesh(ctx, c)
	if err != nil {
		return fmt.Errorf("%s: %w", s.verb, err)
	}
	target, err := s.target(before)
	if err != nil {
		return fmt.Errorf("%s: %w", s.verb, err)
	}
	if err := o.confirmer().confirm(o.yes, s.verb, s.question(before, target)); err != nil {
		return err
	}
	after, err := updateMesh(ctx, c, func(m *v1alpha1.Mesh) error {
		if err := s.apply(m, target); err != nil {
			return err
		}
		if o.force {
			setForce(m)
		}
		return nil
	})
	if o.force {
		clearForce(ctx, c, o.streams.ErrOut)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", s.verb, target, err)
	}
	if o.output != outputTable {
		return o.printMesh(after)
	}
	s.done(o.streams.Out, before, after, target)
	return nil
}

func removeRevision(revs []v1alpha1.Revision, name string) []v1alpha1.Revision {
	out := make([]v1alpha1.Revision, 0, len(revs))
	for _, r := range revs {
		if r.Name != name {
			out = append(out, r)
		}
	}
	return out
}

// exactArgs is cobra.ExactArgs with a message that names the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %s (got %d arguments); see %s --help", cmd.CommandPath(), names, len(args), cmd.CommandPath())
		}
		return nil
	}
}

// noArgs refuses positional arguments with a clear message.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments (got %q); see %s --help", cmd.CommandPath(), args, cmd.CommandPath())
	}
	return nil
}
