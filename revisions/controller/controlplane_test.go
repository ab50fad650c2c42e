package controller

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current output")

// goldenDir holds one file per control-plane case: the Deployment and the
// Service the controller applies, as YAML.
const goldenDir = "testdata/controlplane"

func TestControlPlaneObjects(t *testing.T) {
	mesh := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: "default", UID: "0b6f1c2e-mesh"}}
	tests := map[string]v1alpha1.Revision{
		"cluster-ip-defaults": {Name: "1-22-6", Version: "1.22.6",
			ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.22.6"}},
		"load-balancer-two-replicas": {Name: "1-23-6", Version: "1.23.6",
			ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.23.6", Replicas: ptr.To[int32](2), ServiceType: "LoadBalancer"}},
		"scaled-to-zero": {Name: "1-23-6", Version: "1.23.6",
			ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.23.6", Replicas: ptr.To[int32](0)}},
	}
	produced := map[string]bool{}
	for name, rev := range tests {
		file := filepath.Join(goldenDir, name+".yaml")
		produced[filepath.Base(file)] = true
		t.Run(name, func(t *testing.T) {
			dep, err := yaml.Marshal(desiredDeployment(mesh, rev, "istio-system"))
			require.NoError(t, err)
			svc, err := yaml.Marshal(desiredService(mesh, rev, "istio-system"))
			require.NoError(t, err)
			got := "# Deployment\n" + string(dep) + "---\n# Service\n" + string(svc)
			if *update {
				require.NoError(t, os.MkdirAll(goldenDir, 0o755))
				require.NoError(t, os.WriteFile(file, []byte(got), 0o644))
			}
			want, err := os.ReadFile(file)
			require.NoError(t, err, "golden file missing: run go test ./revisions/controller/ -run TestControlPlaneObjects -update")
			assert.Equal(t, string(want), got, "stale golden %s: run with -update and review the diff", file)
			assert.Contains(t, got, "kind: Deployment")
			assert.Contains(t, got, "name: istiod-"+rev.Name)
		})
	}
	entries, err := os.ReadDir(goldenDir)
	require.NoError(t, err)
	for _, e := range entries {
		if !produced[e.Name()] {
			if *update {
				require.NoError(t, os.Remove(filepath.Join(goldenDir, e.Name())))
				continue
			}
			t.Errorf("golden file %s is produced by no case: delete it or run with -update", filepath.Join(goldenDir, e.Name()))
		}
	}
}

func TestControlPlanePodsAreNeverDataPlane(t *testing.T) {
	mesh := &v1alpha1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	rev := v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ControlPlane: &v1alpha1.ControlPlane{Image: "pilot"}}
	d := desiredDeployment(mesh, rev, "istio-system")
	labels := d.Spec.Template.Labels
	_, counted := labels["meshrev.io/revision"]
	assert.False(t, counted, "istiod pods must not carry meshrev.io/revision, or the data-plane report would count them")
	assert.Equal(t, "false", labels["sidecar.istio.io/inject"], "istiod pods must opt out of injection")
	for k, v := range d.Spec.Selector.MatchLabels {
		assert.Equal(t, v, labels[k], "the selector must match the pod template")
	}
	assert.True(t, strings.HasPrefix(*d.Name, "istiod-"))
}
