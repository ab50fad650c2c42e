package v1alpha1_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// revisionSchema returns the schema of spec.revisions[] of the generated CRD.
func revisionSchema(t *testing.T) apiextensionsv1.JSONSchemaProps {
	t.Helper()
	raw, err := os.ReadFile("../../charts/meshrev/crds/meshrev.io_meshes.yaml")
	require.NoError(t, err)
	var crd apiextensionsv1.CustomResourceDefinition
	require.NoError(t, yaml.Unmarshal(raw, &crd))
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	return *spec.Properties["revisions"].Items.Schema
}

// check applies a string schema's maxLength and pattern the way the API
// server does (Go regexp, kube-openapi's validator).
func check(t *testing.T, s apiextensionsv1.JSONSchemaProps, v string) bool {
	t.Helper()
	if s.MaxLength != nil && int64(len(v)) > *s.MaxLength {
		return false
	}
	require.NotEmpty(t, s.Pattern)
	return regexp.MustCompile(s.Pattern).MatchString(v)
}

func TestCRDValidatesTheRevisionStrings(t *testing.T) {
	rev := revisionSchema(t)
	tests := map[string]struct {
		field string
		value string
		ok    bool
	}{
		"a Docker Hub image with a tag":           {"proxyImage", "docker.io/istio/proxyv2:1.22.6", true},
		"a registry with a port and a digest":     {"proxyImage", "registry.example.com:5000/mesh/proxyv2@sha256:" + strings.Repeat("a", 64), true},
		"a short image name":                      {"proxyImage", "proxyv2", true},
		"an image with a newline":                 {"proxyImage", "docker.io/istio/proxyv2:1.22.6\nevil: true", false},
		"an image with quotes":                    {"proxyImage", `docker.io/istio/proxyv2:"1.22.6"`, false},
		"an image of 1 MB":                        {"proxyImage", strings.Repeat("a", 1<<20), false},
		"an image with upper-case path":           {"proxyImage", "docker.io/Istio/proxyv2", false},
		"a control-plane image is checked alike":  {"controlPlane.image", "docker.io/istio/pilot:1.22.6 --evil", false},
		"a discovery address with a port":         {"discoveryAddress", "istiod-1-22-6.istio-system.svc:15012", true},
		"a bracketed IPv6 discovery address":      {"discoveryAddress", "[fd00::1]:15012", true},
		"a discovery address with a space":        {"discoveryAddress", "istiod x:15012", false},
		"a templates ConfigMap name":              {"templates", "tmpl-1-23-6", true},
		"a templates name that is no DNS name":    {"templates", "Tmpl_1", false},
		"a version":                               {"version", "1.23.6", true},
		"a pre-release version":                   {"version", "1.24.0-beta.1", true},
		"a version that is not MAJOR.MINOR.PATCH": {"version", "1.23", false},
		"a revision name":                         {"name", "1-23-6", true},
		"a revision name with a dot":              {"name", "1.23.6", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := rev
			for _, part := range strings.Split(tc.field, ".") {
				s = s.Properties[part]
			}
			assert.Equal(t, tc.ok, check(t, s, tc.value))
		})
	}
}
