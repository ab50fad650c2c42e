package dashboard

import (
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strings"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"join":    strings.Join,
	"diagram": diagram,
	"link": func(token, p string) string {
		return p + "?token=" + url.QueryEscape(token)
	},
	"role": role,
	"has": func(list []string, s string) bool {
		return slices.Contains(list, s)
	},
	"lower":       strings.ToLower,
	"workloadArg": workloadArg,
}

// Box geometry of the revision diagram, in SVG user units.
const (
	boxWidth  = 250
	boxHeight = 150
	boxGap    = 60
	margin    = 10
	lineStep  = 24
)

// svgBox is one revision drawn as a box.
type svgBox struct {
	X, Y, W, H int
	// Role is stable, canary or old: it picks the colour.
	Role  string
	Title string
	Lines []svgLine
	// ArrowFrom and ArrowTo are where the arrow from the previous box
	// starts and ends, at height ArrowY (ArrowTo 0: no arrow).
	ArrowFrom, ArrowTo, ArrowY int
}

// svgLine is one line of a box.
type svgLine struct {
	Y     int
	Label string
	Value string
	// Class colours the value (ready, notready, unknown).
	Class string
}

// svgDiagram is the whole drawing.
type svgDiagram struct {
	W, H  int
	Boxes []svgBox
	// Summary describes the drawing in words, for screen readers.
	Summary string
}

// role is a revision's part in the upgrade: stable, canary or old.
func role(s *State, name string) string {
	switch name {
	case s.Stable:
		return "stable"
	case s.Canary:
		return "canary"
	}
	return "old"
}

// diagram lays out the revision boxes side by side, like "meshrev status"
// draws them on a terminal, with an arrow from each box to the next (the
// direction of the upgrade).
func diagram(s *State) svgDiagram {
	d := svgDiagram{H: boxHeight + 2*margin}
	var said []string
	for i, r := range s.Revisions {
		x := margin + i*(boxWidth+boxGap)
		tags := strings.Join(r.Tags, ", ")
		if tags == "" {
			tags = "-"
			if r.Name == s.Previous {
				tags = "- (old stable)"
			}
		}
		cp := r.ControlPlane
		if r.ServiceType != "" {
			cp += " (" + r.ServiceType + ")"
		}
		b := svgBox{
			X: x, Y: margin, W: boxWidth, H: boxHeight,
			Role:  role(s, r.Name),
			Title: r.Name,
			Lines: []svgLine{
				{Label: "version", Value: r.Version},
				{Label: "tags", Value: tags},
				{Label: "control", Value: cp, Class: strings.ToLower(r.ControlPlane)},
				{Label: "pods", Value: fmt.Sprint(r.Pods)},
			},
		}
		for j := range b.Lines {
			b.Lines[j].Y = margin + 56 + j*lineStep
		}
		if i > 0 {
			b.ArrowFrom, b.ArrowTo, b.ArrowY = x-boxGap+4, x-6, margin+boxHeight/2
		}
		d.Boxes = append(d.Boxes, b)
		said = append(said, fmt.Sprintf("revision %s, version %s, tags %s, control plane %s, %d pods", r.Name, r.Version, tags, cp, r.Pods))
	}
	d.W = 2*margin + len(s.Revisions)*boxWidth + max(len(s.Revisions)-1, 0)*boxGap
	if d.W < 2*margin+boxWidth {
		d.W = 2*margin + boxWidth
	}
	d.Summary = strings.Join(said, "; ")
	return d
}

// workloadArg names a workload as "dataplane upgrade" takes it: kind/name
// for the kinds a restart upgrades, the bare name otherwise (the verb then
// says why it cannot restart it).
func workloadArg(kind, name string) string {
	switch k := strings.ToLower(kind); k {
	case "deployment", "statefulset", "daemonset":
		return k + "/" + name
	}
	return name
}
