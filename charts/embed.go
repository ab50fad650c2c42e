// Package charts embeds meshrev's Helm chart, so that the manager and the CLI
// carry the exact chart (and its default injection templates) they were built
// with.
package charts

import (
	"embed"
	"io/fs"
)

// Chart holds the whole meshrev/ chart directory, dot files included, as
// Helm's loader expects it (use fs.Sub(Chart, "meshrev")).
//
//go:embed all:meshrev
var Chart embed.FS

// Paths of the default injection templates inside Chart. The chart renders the
// same files into the ConfigMap meshrev-templates through .Files.Get.
const (
	SidecarTemplatePath = "meshrev/files/sidecar.tmpl"
	GatewayTemplatePath = "meshrev/files/gateway.tmpl"
)

// DefaultTemplates returns the text of the default sidecar and gateway
// injection templates. The files are embedded at build time, so a missing
// file is a build defect and panics.
func DefaultTemplates() (sidecar, gateway string) {
	return mustRead(SidecarTemplatePath), mustRead(GatewayTemplatePath)
}

func mustRead(path string) string {
	b, err := fs.ReadFile(Chart, path)
	if err != nil {
		panic("charts: embedded template missing: " + err.Error())
	}
	return string(b)
}
