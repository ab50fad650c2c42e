package controller

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/repo"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func helmMesh(policy v1alpha1.ControlPlaneDeletionPolicy, h v1alpha1.HelmControlPlane) (*v1alpha1.Mesh, *v1alpha1.Revision) {
	m := &v1alpha1.Mesh{
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName, UID: "mesh-uid"},
		Spec: v1alpha1.MeshSpec{Stable: "1-23-6", ControlPlaneDeletionPolicy: policy, Revisions: []v1alpha1.Revision{
			{Name: "1-23-6", Version: "1.23.6", ControlPlane: &v1alpha1.ControlPlane{Helm: &h}},
		}},
	}
	return m, &m.Spec.Revisions[0]
}

func TestIstiodRelease(t *testing.T) {
	cases := map[string]struct {
		policy      v1alpha1.ControlPlaneDeletionPolicy
		helm        v1alpha1.HelmControlPlane
		wantVersion string
		wantRepo    string
		wantValues  map[string]any
		wantOwner   bool
	}{
		"defaults: the revision's version from Istio's repository, owned by the Mesh": {
			wantVersion: "1.23.6", wantRepo: v1alpha1.DefaultChartRepository, wantOwner: true,
			wantValues: map[string]any{"revision": "1-23-6", "global": map[string]any{"istioNamespace": "istio-system", "operatorManageWebhooks": true}},
		},
		"the user's values are merged under meshrev's, which win": {
			helm: v1alpha1.HelmControlPlane{Repository: "oci://mirror/istio", ChartVersion: "1.23.5", Values: &apiextensionsv1.JSON{Raw: []byte(
				`{"revision":"other","pilot":{"replicaCount":2},"global":{"hub":"mirror/istio","operatorManageWebhooks":false}}`)}},
			policy:      v1alpha1.ControlPlaneUninstall,
			wantVersion: "1.23.5", wantRepo: "oci://mirror/istio", wantOwner: true,
			wantValues: map[string]any{"revision": "1-23-6", "pilot": map[string]any{"replicaCount": float64(2)},
				"global": map[string]any{"istioNamespace": "istio-system", "operatorManageWebhooks": true, "hub": "mirror/istio"}},
		},
		"deletion policy Orphan: no owner": {
			policy: v1alpha1.ControlPlaneOrphan, wantVersion: "1.23.6", wantRepo: v1alpha1.DefaultChartRepository,
			wantValues: map[string]any{"revision": "1-23-6", "global": map[string]any{"istioNamespace": "istio-system", "operatorManageWebhooks": true}},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			m, rev := helmMesh(c.policy, c.helm)
			d, err := istiodRelease(m, rev, "istio-system")
			require.NoError(t, err)
			assert.Equal(t, "istiod-1-23-6", d.name)
			assert.Equal(t, ChartIstiod, d.chart)
			assert.Equal(t, c.wantVersion, d.version)
			assert.Equal(t, c.wantRepo, d.repo)
			assert.Equal(t, c.wantValues, d.values)
			assert.Equal(t, c.wantOwner, d.owner != nil)
			assert.NotEmpty(t, d.hash)
		})
	}
}

func TestReleaseHashFollowsWhatIsInstalled(t *testing.T) {
	hash := func(policy v1alpha1.ControlPlaneDeletionPolicy, h v1alpha1.HelmControlPlane) string {
		m, rev := helmMesh(policy, h)
		d, err := istiodRelease(m, rev, "istio-system")
		require.NoError(t, err)
		return d.hash
	}
	base := hash("", v1alpha1.HelmControlPlane{Values: &apiextensionsv1.JSON{Raw: []byte(`{"a":1,"b":{"c":2}}`)}})
	assert.Equal(t, base, hash("", v1alpha1.HelmControlPlane{Values: &apiextensionsv1.JSON{Raw: []byte(`{"b":{"c":2},"a":1}`)}}), "the same values in another order: nothing to upgrade")
	assert.NotEqual(t, base, hash("", v1alpha1.HelmControlPlane{Values: &apiextensionsv1.JSON{Raw: []byte(`{"a":2,"b":{"c":2}}`)}}), "other values")
	assert.NotEqual(t, base, hash("", v1alpha1.HelmControlPlane{ChartVersion: "1.23.5", Values: &apiextensionsv1.JSON{Raw: []byte(`{"a":1,"b":{"c":2}}`)}}), "another chart version")
	assert.NotEqual(t, base, hash(v1alpha1.ControlPlaneOrphan, v1alpha1.HelmControlPlane{Values: &apiextensionsv1.JSON{Raw: []byte(`{"a":1,"b":{"c":2}}`)}}), "another deletion policy")
	m, _ := helmMesh("", v1alpha1.HelmControlPlane{})
	assert.NotEqual(t, baseRelease("r", "1.23.6", "1-22-6", m, "istio-system").hash, baseRelease("r", "1.23.6", "1-23-6", m, "istio-system").hash, "a promotion moves the default validating webhook")
}

const rendered = `---
# Source: istiod/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: istiod-1-23-6
  namespace: istio-system
---
# Source: istiod/templates/mutatingwebhook.yaml
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: istio-sidecar-injector-1-23-6
---
# Source: istiod/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istiod-1-23-6
  namespace: istio-system
  labels:
    app: istiod
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: other
`

func TestPostRenderer(t *testing.T) {
	cases := map[string]struct {
		owner     *ownerRef
		wantOwner bool
	}{
		"with the Mesh as owner (Uninstall)": {owner: &ownerRef{APIVersion: "meshrev.io/v1alpha1", Kind: "Mesh", Name: "default", UID: "u"}, wantOwner: true},
		"without owner (Orphan)":             {},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := &postRenderer{d: desiredRelease{name: "istiod-1-23-6", owner: c.owner, stampKind: "Deployment", stampName: "istiod-1-23-6", hash: "h1"}}
			out, err := p.Run(bytes.NewBufferString(rendered))
			require.NoError(t, err)
			var objs []map[string]any
			for _, doc := range bytes.Split(out.Bytes(), []byte("---\n")) {
				if len(bytes.TrimSpace(doc)) == 0 {
					continue
				}
				var o map[string]any
				require.NoError(t, yaml.Unmarshal(doc, &o))
				objs = append(objs, o)
			}
			require.Len(t, objs, 3, "the MutatingWebhookConfiguration is dropped, the rest kept in order")
			kinds := []string{}
			for _, o := range objs {
				kinds = append(kinds, o["kind"].(string))
				md := o["metadata"].(map[string]any)
				_, hasOwner := md["ownerReferences"]
				assert.Equal(t, c.wantOwner, hasOwner, "%s %s", o["kind"], md["name"])
			}
			assert.Equal(t, []string{"ServiceAccount", "Deployment", "Deployment"}, kinds)
			dep := objs[1]["metadata"].(map[string]any)
			assert.Equal(t, "h1", dep["annotations"].(map[string]any)[AnnotationReleaseHash])
			assert.Equal(t, "istiod-1-23-6", dep["labels"].(map[string]any)[LabelRelease])
			assert.Equal(t, "istiod", dep["labels"].(map[string]any)["app"], "the chart's labels are kept")
			assert.NotContains(t, objs[2]["metadata"], "annotations", "only the release's Deployment is stamped")
		})
	}
}

// packageChart writes a minimal chart name-version.tgz into dir.
func packageChart(t *testing.T, dir, name, version string) {
	t.Helper()
	ch := &chart.Chart{Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: name, Version: version, AppVersion: version}}
	_, err := chartutil.Save(ch, dir)
	require.NoError(t, err)
}

func TestChartCache(t *testing.T) {
	repoDir := t.TempDir()
	packageChart(t, repoDir, "istiod", "1.23.6")
	packageChart(t, repoDir, "base", "1.23.6")
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests++
		http.FileServer(http.Dir(repoDir)).ServeHTTP(w, r)
	}))
	defer srv.Close()
	idx, err := repo.IndexDirectory(repoDir, srv.URL)
	require.NoError(t, err)
	require.NoError(t, idx.WriteFile(filepath.Join(repoDir, "index.yaml"), 0o644))

	cache := &chartCache{dir: t.TempDir()}
	cases := map[string]struct {
		repo, name, version string
		wantErr             string
	}{
		"a chart of an HTTP repository": {repo: srv.URL, name: "istiod", version: "1.23.6"},
		"a version the repository does not have fails naming chart, version and repository": {repo: srv.URL, name: "istiod", version: "1.23.9",
			wantErr: "fetch chart istiod 1.23.9 from " + srv.URL + ": the repository has no chart istiod version 1.23.9"},
		"a repository that cannot be reached fails naming it": {repo: "http://127.0.0.1:1/charts", name: "istiod", version: "1.23.6",
			wantErr: "fetch chart istiod 1.23.6 from http://127.0.0.1:1/charts: read the repository index"},
		"a chart of a local directory":                 {repo: "file://" + repoDir, name: "base", version: "1.23.6"},
		"a chart missing from a local directory fails": {repo: "file://" + repoDir, name: "base", version: "1.22.6", wantErr: "fetch chart base 1.22.6 from file://" + repoDir},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ch, err := cache.load(c.repo, c.name, c.version)
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.name, ch.Metadata.Name)
			assert.Equal(t, c.version, ch.Metadata.Version)
		})
	}

	t.Run("a chart once fetched is read from the cache", func(t *testing.T) {
		before := requests
		_, err := cache.load(srv.URL, "istiod", "1.23.6")
		require.NoError(t, err)
		assert.Equal(t, before, requests, "no request for a cached version")
		entries, err := os.ReadDir(cache.dir)
		require.NoError(t, err)
		require.Len(t, entries, 1, "one directory per repository fetched from (a local directory is its own cache)")
		assert.FileExists(t, filepath.Join(cache.dir, entries[0].Name(), "istiod-1.23.6.tgz"))
	})
}

func TestResultOfReleaseRecord(t *testing.T) {
	withChart := func(status release.Status, desc string) *release.Release {
		return &release.Release{Info: &release.Info{Status: status, Description: desc},
			Chart: &chart.Chart{Metadata: &chart.Metadata{Name: "istiod", Version: "1.23.6"}}}
	}
	cases := map[string]struct {
		rel  *release.Release
		want releaseResult
	}{
		"a deployed release reports its status and chart version": {
			rel: withChart(release.StatusDeployed, "Upgrade complete"), want: releaseResult{status: ReleaseDeployed, chartVersion: "1.23.6"},
		},
		"a failed release also reports Helm's description as the error": {
			rel:  withChart(release.StatusFailed, "Release \"istiod-1-23-6\" failed: timed out"),
			want: releaseResult{status: ReleaseFailed, chartVersion: "1.23.6", err: "Release \"istiod-1-23-6\" failed: timed out"},
		},
		"a release half way through an upgrade says so": {
			rel: withChart(release.StatusPendingUpgrade, "Preparing upgrade"), want: releaseResult{status: "pending-upgrade", chartVersion: "1.23.6"},
		},
		"a record without its chart reports the status only": {
			rel: &release.Release{Info: &release.Info{Status: release.StatusDeployed}}, want: releaseResult{status: ReleaseDeployed},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, c.want, resultOf(c.rel))
		})
	}
}
