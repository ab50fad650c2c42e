//go:build e2e

package e2e

// The chart's certificates: cert-manager mode against cert-manager's real
// CRDs, and the self-managed certificate rotating under load.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/internal/devcluster"
	"github.com/meshrev/meshrev/revisions"
)

func (ci *chartInstall) certManagerMode(t *testing.T) {
	installCertManagerCRDs(t, ci.c)
	ensureMeshCRD(t, ci.c)
	for _, ns := range []string{meshrevNamespace, controlPlaneNamespace} {
		ensureNamespace(t, ci.c, ns)
	}
	manifest := ci.helm.run(t, "template", chartRelease, ci.helm.chart, "-n", meshrevNamespace, "--set", "certManager.enabled=true")
	kinds := serverDryRunApply(t, manifest)
	for _, k := range []string{"Certificate/meshrev-ca", "Certificate/meshrev-webhook", "Issuer/meshrev-ca", "Issuer/meshrev-selfsigned",
		"MutatingWebhookConfiguration/meshrev", "ValidatingWebhookConfiguration/meshrev", "Deployment/meshrev-manager"} {
		assert.Contains(t, kinds, k)
	}
}

// installCertManagerCRDs applies cert-manager's CRDs from the module cache
// (the version go.mod pins) and waits until they are Established; they are
// deleted when the test ends unless they were there before.
func installCertManagerCRDs(t *testing.T, c client.Client) {
	t.Helper()
	root, err := devcluster.RepoRoot()
	require.NoError(t, err)
	cmd := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = root
	out, err := cmd.Output()
	require.NoError(t, err, "locate the cert-manager module")
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no CRDs in %s", dir)
	ctx := t.Context()
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var crd apiextensionsv1.CustomResourceDefinition
		require.NoError(t, yaml.Unmarshal(data, &crd), "%s", f)
		err = c.Create(ctx, &crd)
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		require.NoError(t, err, "create CRD %s", crd.Name)
		name := crd.Name
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = c.Delete(ctx, &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name}})
		})
		waitCRDEstablished(t, c, name)
	}
}

// serverDryRunApply server-side applies every object of manifest with
// dryRun=All and strict field validation, so that the API server checks each
// against its real schema (built-in types, the Mesh CRD, cert-manager's
// CRDs) without storing anything. It returns "Kind/name" of each object.
func serverDryRunApply(t *testing.T, manifest string) []string {
	t.Helper()
	ctx := t.Context()
	dc, err := discovery.NewDiscoveryClientForConfig(Env().Config)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(Env().Config)
	require.NoError(t, err)
	var applied []string
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		var u unstructured.Unstructured
		require.NoError(t, yaml.Unmarshal(doc, &u.Object))
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		require.NoError(t, err, "the API server does not know %s", gvk)
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
		}
		data, err := u.MarshalJSON()
		require.NoError(t, err)
		_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
			DryRun: []string{metav1.DryRunAll}, FieldManager: "meshrev-e2e", Force: ptrTo(true), FieldValidation: "Strict",
		})
		require.NoError(t, err, "server-side dry run of %s %s:\n%s", gvk.Kind, u.GetName(), doc)
		applied = append(applied, fmt.Sprintf("%s/%s", gvk.Kind, u.GetName()))
	}
	return applied
}

// certRotation dry-runs pods while the serving certificate rotates (its
// lifetime is chartCertLifetime): none may fail, and the server then serves
// the rotated certificate under the unchanged CA bundle.
func (ci *chartInstall) certRotation(t *testing.T) {
	before := secretCert(t, ci.c)
	deadline := time.Now().Add(2 * chartCertLifetime)
	rotatedAt := time.Time{}
	var creates, failures int
	for time.Now().Before(deadline) && (rotatedAt.IsZero() || time.Since(rotatedAt) < 5*time.Second) {
		got, _, err := dryRunPod(t, ci.app, testPod("rotation", nil))
		creates++
		if err != nil || got.Labels[revisions.LabelRevision] != "1-23-6" {
			failures++
			t.Errorf("pod creation during rotation: err %v, revision %q", err, revisionOf(got))
		}
		if rotatedAt.IsZero() && !bytes.Equal(secretCert(t, ci.c), before) {
			rotatedAt = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.False(t, rotatedAt.IsZero(), "the serving certificate did not rotate within %s", 2*chartCertLifetime)
	served, err := ci.h.servingCert(t.Context())
	require.NoError(t, err, "the webhook server's certificate verifies against the unchanged CA bundle")
	block, _ := pem.Decode(secretCert(t, ci.c))
	require.NotNil(t, block)
	assert.Equal(t, block.Bytes, served.Raw, "the webhook server serves the rotated certificate")
	t.Logf("%d pod creations across the rotation, %d failed", creates, failures)
}

// secretCert is the serving certificate (PEM) in the manager's Secret.
func secretCert(t *testing.T, c client.Client) []byte {
	t.Helper()
	var sec corev1.Secret
	require.NoError(t, c.Get(t.Context(), client.ObjectKey{Namespace: meshrevNamespace, Name: "meshrev-webhook-tls"}, &sec))
	require.NotEmpty(t, sec.Data[corev1.TLSCertKey])
	return sec.Data[corev1.TLSCertKey]
}
