package revisions

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Control-plane sources, as reported in a revision's status.
const (
	// SourceImage is a Deployment and Service meshrev writes itself.
	SourceImage = "Image"
	// SourceHelm is a Helm release of Istio's istiod chart meshrev installs.
	SourceHelm = "Helm"
	// SourceExternal is a control plane installed outside meshrev.
	SourceExternal = "External"
)

// ControlPlaneSource is the source of rev's control plane, or "" when it has none.
func ControlPlaneSource(rev *v1alpha1.Revision) string {
	switch cp := rev.ControlPlane; {
	case cp == nil:
		return ""
	case cp.Helm != nil:
		return SourceHelm
	case cp.External:
		return SourceExternal
	}
	return SourceImage
}

// ChartVersion is the version of the istiod and base charts of a helm
// control plane: its chartVersion, else the revision's version.
func ChartVersion(rev *v1alpha1.Revision) string {
	if cp := rev.ControlPlane; cp != nil && cp.Helm != nil && cp.Helm.ChartVersion != "" {
		return cp.Helm.ChartVersion
	}
	return rev.Version
}

// ChartRepository is where a helm control plane's charts come from.
func ChartRepository(h *v1alpha1.HelmControlPlane) string {
	if h == nil || h.Repository == "" {
		return v1alpha1.DefaultChartRepository
	}
	return h.Repository
}

// validateControlPlane checks that a revision's control plane names exactly
// one source, and that source's fields.
func validateControlPlane(p *field.Path, r v1alpha1.Revision) field.ErrorList {
	var errs field.ErrorList
	cp := r.ControlPlane
	n := 0
	for _, set := range []bool{cp.Image != "", cp.Helm != nil, cp.External} {
		if set {
			n++
		}
	}
	if n != 1 {
		errs = append(errs, field.Invalid(p, "", fmt.Sprintf("set exactly one of image (for example docker.io/istio/pilot:%s), helm or external", r.Version)))
	}
	// replicas and serviceType are defaulted by the CRD whatever the source;
	// a helm control plane takes its own through its values.
	if cp.Replicas != nil && *cp.Replicas < 0 {
		errs = append(errs, field.Invalid(p.Child("replicas"), *cp.Replicas, "must not be negative"))
	}
	if h := cp.Helm; h != nil {
		if repo := h.Repository; repo != "" && !strings.HasPrefix(repo, "http://") && !strings.HasPrefix(repo, "https://") && !strings.HasPrefix(repo, "oci://") && !strings.HasPrefix(repo, "file://") {
			errs = append(errs, field.Invalid(p.Child("helm", "repository"), repo, "must be an http(s):// or oci:// repository or a file:// directory"))
		}
		if v := h.ChartVersion; v != "" {
			if _, err := ParseVersion(v); err != nil {
				errs = append(errs, field.Invalid(p.Child("helm", "chartVersion"), v, err.Error()))
			}
		}
		if h.Values != nil && len(h.Values.Raw) > 0 && h.Values.Raw[0] != '{' {
			errs = append(errs, field.Invalid(p.Child("helm", "values"), string(h.Values.Raw), "must be an object of chart values"))
		}
	}
	return errs
}

// checkCRDVersion refuses a helm canary whose charts are older than the
// Istio CRDs already installed: meshrev applies the canary's base chart
// before its istiod, and CRDs are never downgraded.
func checkCRDVersion(m *v1alpha1.Mesh, canary v1alpha1.Revision, installed string) field.ErrorList {
	if ControlPlaneSource(&canary) != SourceHelm || installed == "" {
		return nil
	}
	have, err := ParseVersion(installed)
	if err != nil {
		// CRDs of a development build say nothing comparable.
		return nil
	}
	want, _ := ParseVersion(ChartVersion(&canary)) // ValidateMesh parsed it
	if want.Compare(have) < 0 {
		return field.ErrorList{field.Forbidden(revisionPath(m, canary.Name).Child("version"), fmt.Sprintf(
			"cannot deploy canary %s: its charts (%s) are older than the Istio CRDs installed in the cluster (%s), and CRDs are never downgraded; deploy a canary of version %s or newer",
			canary.Name, ChartVersion(&canary), installed, installed))}
	}
	return nil
}
