package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// StatusView is what "meshrev status" shows; -o json|yaml prints it as is.
type StatusView struct {
	// Mesh is the Mesh object's name.
	Mesh string `json:"mesh"`
	// Phase is the lifecycle phase.
	Phase v1alpha1.MeshPhase `json:"phase"`
	// Stable is the stable revision.
	Stable string `json:"stable"`
	// Canary is the canary revision, if any.
	Canary string `json:"canary,omitempty"`
	// Previous is the old stable after a promotion, until it is unpublished.
	Previous string `json:"previous,omitempty"`
	// Revisions are the published revisions, in the Mesh's order.
	Revisions []RevisionView `json:"revisions"`
	// Namespaces are the namespaces that carry an injection label or (with
	// --pods) run injected pods.
	Namespaces []NamespaceView `json:"namespaces"`
	// DataPlane counts the injected pods, from the controller's report.
	DataPlane DataPlaneCounts `json:"dataPlane"`
	// Next is the step to take next.
	Next NextView `json:"next"`
	// Stale is set when the controller has not yet reported on the latest
	// spec, so readiness and counts may lag.
	Stale bool `json:"stale,omitempty"`
	// PodsCounted is set when the namespaces' pods were counted (--pods);
	// otherwise the namespaces carry no counts.
	PodsCounted bool `json:"podsCounted,omitempty"`
}

// NextView is the next step of the lifecycle (revisions.Next).
type NextView struct {
	// Text says what to do.
	Text string `json:"text"`
	// Command is the meshrev command for it.
	Command string `json:"command"`
}

// RevisionView is one control-plane revision.
type RevisionView struct {
	// Name of the revision.
	Name string `json:"name"`
	// Version of the revision.
	Version string `json:"version"`
	// Tags that resolve to it.
	Tags []string `json:"tags,omitempty"`
	// ProxyImage injected for it.
	ProxyImage string `json:"proxyImage,omitempty"`
	// ControlPlane is "Ready", "NotReady", "Unknown" (not reported yet) or
	// "External" (meshrev does not run it).
	ControlPlane string `json:"controlPlane"`
	// ServiceType of its control plane, when meshrev runs one.
	ServiceType string `json:"serviceType,omitempty"`
	// Pods that run its sidecar.
	Pods int32 `json:"pods"`
}

// NamespaceView is one namespace: the label it carries and the revision new
// pods there get.
type NamespaceView struct {
	// Name of the namespace.
	Name string `json:"name"`
	// Label is the injection label it carries, e.g. istio.io/rev=canary.
	Label string `json:"label"`
	// Revision is what a new pod there resolves to ("" when not injected).
	Revision string `json:"revision,omitempty"`
	// Reason is the decision table's reason.
	Reason revisions.Reason `json:"reason"`
	// Pods counts the injected pods per revision they run.
	Pods map[string]int32 `json:"pods,omitempty"`
}

// DataPlaneCounts are the controller's data-plane counts.
type DataPlaneCounts struct {
	// Pods carrying a meshrev sidecar.
	Pods int32 `json:"pods"`
	// UpToDate pods run the revision they resolve to.
	UpToDate int32 `json:"upToDate"`
	// Outdated pods run another revision.
	Outdated int32 `json:"outdated"`
}

// Control plane states of RevisionView.ControlPlane.
const (
	controlPlaneReady    = "Ready"
	controlPlaneNotReady = "NotReady"
	controlPlaneUnknown  = "Unknown"
	controlPlaneExternal = "External"
)

func newStatusCommand(g *globals) *cobra.Command {
	var countPods bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the control-plane revisions, namespaces, pods, phase and next step",
		Long: `Show the control-plane revisions, the namespaces that carry an injection
label, the data plane's counts, the phase and the next step. The counts come
from the controller's report in the Mesh status, so this stays fast on a
large cluster; --pods also counts each namespace's pods per revision, by
listing every injected pod (metadata only, in pages).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			v, err := gatherStatus(cmd.Context(), c, g.ownNamespace, countPods)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			if g.output != outputTable {
				return printStructured(g.streams.Out, g.output, v)
			}
			return renderStatus(g.streams.Out, v, g.colour())
		},
	}
	cmd.Flags().BoolVar(&countPods, "pods", false, "count each namespace's pods per revision (lists every injected pod)")
	return cmd
}

// gatherStatus reads the Mesh and the namespaces, and with countPods the
// injected pods' metadata (in pages) for the per-namespace counts.
func gatherStatus(ctx context.Context, c client.Reader, ownNamespace string, countPods bool) (*StatusView, error) {
	mesh, err := getMesh(ctx, c)
	if err != nil {
		return nil, err
	}
	labels, err := readmodel.Namespaces(ctx, c)
	if err != nil {
		return nil, err
	}
	if !countPods {
		return buildStatusView(mesh, labels, nil, ownNamespace), nil
	}
	pods, err := readmodel.InjectedPods(ctx, c, false, client.Limit(readmodel.PageSize))
	if err != nil {
		return nil, err
	}
	counts := map[string]map[string]int32{}
	for _, p := range pods {
		if counts[p.Namespace] == nil {
			counts[p.Namespace] = map[string]int32{}
		}
		counts[p.Namespace][p.Revision()]++
	}
	return buildStatusView(mesh, labels, counts, ownNamespace), nil
}

// buildStatusView turns what was read into the view; pure, so that the view
// of fixed objects can be checked. pods (namespace → revision → count) is
// nil when the pods were not counted: the revisions' counts then come from
// the Mesh status and the namespaces show none.
func buildStatusView(mesh *v1alpha1.Mesh, nsLabels map[string]map[string]string, pods map[string]map[string]int32, ownNamespace string) *StatusView {
	spec := &mesh.Spec
	v := &StatusView{
		Mesh:     mesh.Name,
		Stable:   spec.Stable,
		Canary:   spec.Canary,
		Previous: revisions.Previous(spec),
		DataPlane: DataPlaneCounts{
			Pods:     mesh.Status.DataPlane.Pods,
			UpToDate: mesh.Status.DataPlane.UpToDate,
			Outdated: mesh.Status.DataPlane.Outdated,
		},
		Stale:      mesh.Status.ObservedGeneration < mesh.Generation,
		Namespaces: []NamespaceView{},
	}
	v.Phase = revisions.Phase(spec, mesh.Status.DataPlane.Outdated)
	next := revisions.Next(spec, v.Phase)
	v.Next = NextView{Text: next.Text, Command: next.Command}

	perRevision := map[string]int32{}
	for _, byRev := range pods {
		for rev, n := range byRev {
			perRevision[rev] += n
		}
	}
	reported := map[string]v1alpha1.RevisionStatus{}
	for _, rs := range mesh.Status.Revisions {
		reported[rs.Name] = rs
		if pods == nil {
			perRevision[rs.Name] = rs.Pods
		}
	}
	v.PodsCounted = pods != nil
	for _, r := range spec.Revisions {
		rv := RevisionView{
			Name:       r.Name,
			Version:    r.Version,
			Tags:       revisions.Tags(spec, r.Name),
			ProxyImage: r.ProxyImage,
			Pods:       perRevision[r.Name],
		}
		rs, ok := reported[r.Name]
		switch {
		case r.ControlPlane == nil:
			rv.ControlPlane = controlPlaneExternal
		case !ok:
			rv.ControlPlane = controlPlaneUnknown
		case rs.ControlPlaneReady:
			rv.ControlPlane = controlPlaneReady
		default:
			rv.ControlPlane = controlPlaneNotReady
		}
		if r.ControlPlane != nil {
			rv.ServiceType = string(r.ControlPlane.ServiceType)
			if rv.ServiceType == "" {
				rv.ServiceType = string(corev1.ServiceTypeClusterIP)
			}
		}
		v.Revisions = append(v.Revisions, rv)
	}

	names := map[string]bool{}
	for ns, l := range nsLabels {
		if l[revisions.LabelInjection] != "" || l[revisions.LabelRev] != "" {
			names[ns] = true
		}
	}
	for ns := range pods {
		names[ns] = true
	}
	for _, ns := range slices.Sorted(maps.Keys(names)) {
		d := revisions.Resolve(spec, ownNamespace, revisions.Subject{Namespace: ns, NamespaceLabels: nsLabels[ns]})
		v.Namespaces = append(v.Namespaces, NamespaceView{
			Name:     ns,
			Label:    injectionLabel(nsLabels[ns]),
			Revision: d.RevisionName(),
			Reason:   d.Reason,
			Pods:     pods[ns],
		})
	}
	return v
}

// palette colours the terminal output; the zero value prints plain text.
type palette struct{ on bool }

func (p palette) paint(code, s string) string {
	if !p.on || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
func (p palette) bold(s string) string   { return p.paint("1", s) }
func (p palette) green(s string) string  { return p.paint("32", s) }
func (p palette) yellow(s string) string { return p.paint("33", s) }
func (p palette) red(s string) string    { return p.paint("31", s) }
func (p palette) cyan(s string) string   { return p.paint("36", s) }
func (p palette) dim(s string) string    { return p.paint("2", s) }

// tagged colours a revision name by its tag: stable green, canary yellow,
// the previous stable dim.
func (p palette) revision(v *StatusView, name string) string {
	switch name {
	case v.Stable:
		return p.green(name)
	case v.Canary:
		return p.yellow(name)
	}
	return p.dim(name)
}

// renderStatus draws the view: one box per control-plane revision, the
// namespaces and what they resolve to, the data plane, the phase and the
// next step.
func renderStatus(w io.Writer, v *StatusView, color bool) error {
	p := palette{on: color}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s   phase %s\n", p.bold("Mesh"), v.Mesh, p.bold(string(v.Phase)))
	if v.Stale {
		fmt.Fprintf(&b, "%s\n", p.yellow("(the controller has not reported on the latest change yet; readiness and counts may lag)"))
	}
	b.WriteString("\n")

	var boxes [][]string
	for _, r := range v.Revisions {
		tags := strings.Join(r.Tags, ", ")
		if tags == "" {
			tags = "-"
			if r.Name == v.Previous {
				tags = "- (old stable)"
			}
		}
		cp := r.ControlPlane
		switch cp {
		case controlPlaneReady:
			cp = p.green(cp)
		case controlPlaneNotReady:
			cp = p.red(cp)
		case controlPlaneUnknown:
			cp = p.yellow(cp)
		}
		if r.ServiceType != "" {
			cp += " (" + r.ServiceType + ")"
		}
		boxes = append(boxes, box(p.revision(v, r.Name), []string{
			"version  " + r.Version,
			"tags     " + tags,
			"control  " + cp,
			fmt.Sprintf("pods     %d", r.Pods),
		}))
	}
	b.WriteString(sideBySide(boxes, "  "))
	b.WriteString("\n")

	if len(v.Namespaces) == 0 {
		b.WriteString("No namespace carries an injection label.\n")
	} else {
		rows := [][]string{{p.bold("NAMESPACE"), p.bold("LABEL"), p.bold("NEW PODS GET")}}
		if v.PodsCounted {
			rows[0] = append(rows[0], p.bold("PODS BY REVISION"))
		}
		for _, ns := range v.Namespaces {
			target := p.dim("no sidecar (" + string(ns.Reason) + ")")
			if ns.Revision != "" {
				target = p.revision(v, ns.Revision)
				if tags := tagsOf(v, ns.Revision); tags != "" {
					target += " (" + tags + ")"
				}
			}
			var pods []string
			for _, rev := range slices.Sorted(maps.Keys(ns.Pods)) {
				pods = append(pods, fmt.Sprintf("%s: %d", p.revision(v, rev), ns.Pods[rev]))
			}
			podText := strings.Join(pods, ", ")
			if podText == "" {
				podText = "-"
			}
			row := []string{ns.Name, ns.Label, target}
			if v.PodsCounted {
				row = append(row, podText)
			}
			rows = append(rows, row)
		}
		b.WriteString(table(rows))
	}
	b.WriteString("\n")

	dp := v.DataPlane
	outdated := fmt.Sprintf("%d outdated", dp.Outdated)
	if dp.Outdated > 0 {
		outdated = p.yellow(outdated)
	}
	fmt.Fprintf(&b, "%s %d pods with a sidecar, %d up to date, %s\n", p.bold("Data plane:"), dp.Pods, dp.UpToDate, outdated)
	fmt.Fprintf(&b, "%s %s\n  %s %s\n", p.bold("Next:"), v.Next.Text, p.dim("$"), p.cyan(v.Next.Command))
	_, err := io.WriteString(w, b.String())
	return err
}

func tagsOf(v *StatusView, name string) string {
	for _, r := range v.Revisions {
		if r.Name == name {
			return strings.Join(r.Tags, ", ")
		}
	}
	return ""
}

// visibleLen is the width of s on a terminal: runes, without colour codes.
func visibleLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if s[i] == 0x1b {
			if j := strings.IndexByte(s[i:], 'm'); j >= 0 {
				i += j + 1
				continue
			}
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return n
}

func pad(s string, width int) string {
	if n := visibleLen(s); n < width {
		return s + strings.Repeat(" ", width-n)
	}
	return s
}

// box draws lines in a frame titled title.
func box(title string, lines []string) []string {
	width := visibleLen(title) + 4
	for _, l := range lines {
		width = max(width, visibleLen(l)+2)
	}
	top := "┌─ " + title + " " + strings.Repeat("─", width-visibleLen(title)-3) + "┐"
	out := []string{top}
	for _, l := range lines {
		out = append(out, "│ "+pad(l, width-2)+" │")
	}
	return append(out, "└"+strings.Repeat("─", width)+"┘")
}

// sideBySide lays boxes out in a row.
func sideBySide(boxes [][]string, gap string) string {
	height := 0
	for _, bx := range boxes {
		height = max(height, len(bx))
	}
	var b strings.Builder
	for i := range height {
		var parts []string
		for _, bx := range boxes {
			line := ""
			if i < len(bx) {
				line = bx[i]
			}
			parts = append(parts, pad(line, visibleLen(bx[0])))
		}
		b.WriteString(strings.TrimRight(strings.Join(parts, gap), " ") + "\n")
	}
	return b.String()
}

// table aligns rows in columns (colour codes do not count towards widths).
func table(rows [][]string) string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], visibleLen(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				line.WriteString(c)
				break
			}
			line.WriteString(pad(c, widths[i]) + "   ")
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	return b.String()
}

// meshSpec is the spec of mesh, or nil when there is no Mesh.
func meshSpec(mesh *v1alpha1.Mesh) *v1alpha1.MeshSpec {
	if mesh == nil {
		return nil
	}
	return &mesh.Spec
}
