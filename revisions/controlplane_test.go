package revisions

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func helmRev(name, version string, h v1alpha1.HelmControlPlane) v1alpha1.Revision {
	return v1alpha1.Revision{Name: name, Version: version, ControlPlane: &v1alpha1.ControlPlane{Helm: &h}}
}

func TestHelmCanaryAndInstalledCRDs(t *testing.T) {
	stable := helmRev("1-22-6", "1.22.6", v1alpha1.HelmControlPlane{})
	cases := map[string]struct {
		canary     v1alpha1.Revision
		crdVersion string
		wantErr    string
	}{
		"a canary as new as the installed CRDs is deployed": {
			canary: helmRev("1-23-6", "1.23.6", v1alpha1.HelmControlPlane{}), crdVersion: "1.23.6",
		},
		"a canary newer than the installed CRDs is deployed": {
			canary: helmRev("1-23-6", "1.23.6", v1alpha1.HelmControlPlane{}), crdVersion: "1.22.6",
		},
		"a canary older than the installed CRDs is refused with the reason": {
			canary: helmRev("1-23-0", "1.23.0", v1alpha1.HelmControlPlane{}), crdVersion: "1.23.6",
			wantErr: "cannot deploy canary 1-23-0: its charts (1.23.0) are older than the Istio CRDs installed in the cluster (1.23.6), and CRDs are never downgraded",
		},
		"the chart version, not the revision's, is compared with the CRDs": {
			canary: helmRev("1-23-6", "1.23.6", v1alpha1.HelmControlPlane{ChartVersion: "1.23.1"}), crdVersion: "1.23.6",
			wantErr: "its charts (1.23.1) are older",
		},
		"a canary whose control plane meshrev does not install is not compared": {
			canary: v1alpha1.Revision{Name: "1-23-0", Version: "1.23.0", ControlPlane: &v1alpha1.ControlPlane{External: true}}, crdVersion: "1.23.6",
		},
		"CRDs without a comparable version say nothing": {
			canary: helmRev("1-23-0", "1.23.0", v1alpha1.HelmControlPlane{}), crdVersion: "1.24-dev",
		},
		"no installed CRDs say nothing": {
			canary: helmRev("1-23-0", "1.23.0", v1alpha1.HelmControlPlane{}),
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			old := mesh("1-22-6", "", stable)
			updated := mesh("1-22-6", c.canary.Name, stable, c.canary)
			tr, errs := ValidateTransition(old, updated, Facts{IstioCRDVersion: c.crdVersion})
			if c.wantErr != "" {
				require.Len(t, errs, 1, "errors: %v", errs)
				assert.Contains(t, errs[0].Error(), c.wantErr)
				assert.Equal(t, "spec.revisions[1].version", errs[0].Field)
				return
			}
			require.Empty(t, errs)
			assert.Equal(t, ActionDeployCanary, tr.Action)
		})
	}
}

func TestValidateControlPlane(t *testing.T) {
	cases := map[string]struct {
		cp      v1alpha1.ControlPlane
		wantErr string
	}{
		"an image control plane is valid":                     {cp: v1alpha1.ControlPlane{Image: "pilot:1.22.6"}},
		"an external control plane is valid":                  {cp: v1alpha1.ControlPlane{External: true}},
		"a helm control plane with defaults is valid":         {cp: v1alpha1.ControlPlane{Helm: &v1alpha1.HelmControlPlane{}}},
		"a helm control plane from a mirror is valid":         {cp: v1alpha1.ControlPlane{Helm: &v1alpha1.HelmControlPlane{Repository: "oci://mirror.example/istio", Values: &apiextensionsv1.JSON{Raw: []byte(`{"pilot":{"replicaCount":2}}`)}}}},
		"no source is refused":                                {cp: v1alpha1.ControlPlane{}, wantErr: "set exactly one of image"},
		"two sources are refused":                             {cp: v1alpha1.ControlPlane{Image: "pilot:1", External: true}, wantErr: "set exactly one of image"},
		"a helm control plane with the CRD defaults is valid": {cp: v1alpha1.ControlPlane{Helm: &v1alpha1.HelmControlPlane{}, Replicas: ptr(int32(1)), ServiceType: "ClusterIP"}},
		"a repository of an unknown scheme is refused":        {cp: v1alpha1.ControlPlane{Helm: &v1alpha1.HelmControlPlane{Repository: "ftp://x"}}, wantErr: "must be an http(s):// or oci:// repository or a file:// directory"},
		"a chart version that is no version is refused":       {cp: v1alpha1.ControlPlane{Helm: &v1alpha1.HelmControlPlane{ChartVersion: "latest"}}, wantErr: "spec.revisions[0].controlPlane.helm.chartVersion"},
		"values that are not an object are refused":           {cp: v1alpha1.ControlPlane{Helm: &v1alpha1.HelmControlPlane{Values: &apiextensionsv1.JSON{Raw: []byte(`[1]`)}}}, wantErr: "must be an object of chart values"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cp := c.cp
			errs := ValidateMesh(mesh("1-22-6", "", v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6", ControlPlane: &cp}))
			if c.wantErr == "" {
				assert.Empty(t, errs)
				return
			}
			require.Len(t, errs, 1, "errors: %v", errs)
			assert.Contains(t, errs[0].Error(), c.wantErr)
		})
	}
}

func TestControlPlaneEditIsAnEdit(t *testing.T) {
	old := mesh("1-22-6", "", helmRev("1-22-6", "1.22.6", v1alpha1.HelmControlPlane{}))
	updated := mesh("1-22-6", "", helmRev("1-22-6", "1.22.6", v1alpha1.HelmControlPlane{Values: &apiextensionsv1.JSON{Raw: []byte(`{"pilot":{"replicaCount":2}}`)}}))
	tr, errs := ValidateTransition(old, updated, Facts{})
	require.Empty(t, errs)
	assert.Equal(t, ActionEdit, tr.Action, "new values for a release are an edit, not a new revision")
}
