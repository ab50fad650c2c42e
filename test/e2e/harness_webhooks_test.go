//go:build e2e

package e2e

// The harness's wiring of the API server to an in-process manager: the
// webhook server's certificate, the chart's webhook configurations pointed
// at it by URL, the Mesh CRD, and checks that the API server reaches it.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/internal/devcluster"
	"github.com/meshrev/meshrev/revisions"
)

// prepareCerts gives the webhook server its certificate: with
// withManageCerts the manager makes its own (in a Secret the owning manager
// starts without and leaves none of); otherwise a fresh test CA signs one in
// the cert dir and becomes h.CABundle.
func (h *managerHandle) prepareCerts(t *testing.T, c client.Client) {
	t.Helper()
	if !h.Options.Certs.Manage {
		ca, err := devcluster.NewCA("meshrev-e2e-webhook-ca")
		require.NoError(t, err)
		kp, err := ca.ServingCert("127.0.0.1", "localhost")
		require.NoError(t, err)
		require.NoError(t, kp.WriteFiles(filepath.Join(h.Options.CertDir, "tls.crt"), filepath.Join(h.Options.CertDir, "tls.key")))
		h.CABundle = ca.CertPEM
		return
	}
	h.Options.Certs.WebhookURL = h.URL
	if h.replica {
		return
	}
	// A fresh CA per test: nothing carries over from an earlier one.
	secret := func() *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meshrevNamespace, Name: h.secretName()}}
	}
	deleteIfExists(t, c, secret())
	t.Cleanup(func() { deleteIfExists(t, c, secret()) })
}

// installWebhookConfigs replaces meshrev's webhook configurations with the
// chart's, pointed at h by URL (with h's CA bundle unless the manager
// patches its own in), and deletes them when the test ends.
func (h *managerHandle) installWebhookConfigs(t *testing.T, c client.Client) {
	t.Helper()
	mutating, validating := renderWebhookConfigs(t, h.URL)
	if !h.Options.Certs.Manage {
		for i := range mutating.Webhooks {
			mutating.Webhooks[i].ClientConfig.CABundle = h.CABundle
		}
		for i := range validating.Webhooks {
			validating.Webhooks[i].ClientConfig.CABundle = h.CABundle
		}
	}
	for _, obj := range []client.Object{mutating, validating} {
		deleteIfExists(t, c, obj.DeepCopyObject().(client.Object))
		require.NoError(t, c.Create(t.Context(), obj), "create %T %s", obj, obj.GetName())
	}
	t.Cleanup(func() {
		deleteIfExists(t, c, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName}})
		deleteIfExists(t, c, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookConfigName}})
	})
}

// renderWebhookConfigs renders the chart's two webhook configurations with
// webhook.url pointing at url, so that the tests exercise the selectors that
// ship.
func renderWebhookConfigs(t *testing.T, url string) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	t.Helper()
	root, err := devcluster.RepoRoot()
	require.NoError(t, err)
	chrt, err := loader.LoadDir(filepath.Join(root, "charts", "meshrev"))
	require.NoError(t, err, "load the chart")
	vals, err := chartutil.ToRenderValues(chrt, map[string]any{
		"manager": map[string]any{"enabled": false},
		"webhook": map[string]any{"url": url},
	}, chartutil.ReleaseOptions{Name: "meshrev", Namespace: meshrevNamespace, IsInstall: true}, nil)
	require.NoError(t, err, "chart values")
	files, err := engine.Render(chrt, vals)
	require.NoError(t, err, "render the chart")
	var m admissionregistrationv1.MutatingWebhookConfiguration
	var v admissionregistrationv1.ValidatingWebhookConfiguration
	for name, obj := range map[string]any{"mutatingwebhookconfiguration.yaml": &m, "validatingwebhookconfiguration.yaml": &v} {
		text, ok := files["meshrev/templates/"+name]
		require.True(t, ok, "the chart has templates/%s", name)
		require.NoError(t, yaml.UnmarshalStrict([]byte(text), obj), "decode templates/%s", name)
	}
	require.Equal(t, webhookConfigName, m.Name)
	require.Equal(t, webhookConfigName, v.Name)
	require.NotEmpty(t, m.Webhooks)
	require.NotEmpty(t, v.Webhooks)
	return &m, &v
}

// ensureMeshCRD applies the Mesh CRD from charts/meshrev/crds and waits until
// it is Established.
func ensureMeshCRD(t *testing.T, c client.Client) {
	t.Helper()
	root, err := devcluster.RepoRoot()
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(root, "charts", "meshrev", "crds", "meshrev.io_meshes.yaml"))
	require.NoError(t, err)
	var want apiextensionsv1.CustomResourceDefinition
	require.NoError(t, yaml.Unmarshal(data, &want))
	ctx := t.Context()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var have apiextensionsv1.CustomResourceDefinition
		err := c.Get(ctx, client.ObjectKey{Name: want.Name}, &have)
		if apierrors.IsNotFound(err) {
			return c.Create(ctx, want.DeepCopy())
		}
		if err != nil {
			return err
		}
		have.Spec = want.Spec
		return c.Update(ctx, &have)
	})
	require.NoError(t, err, "apply CRD %s", want.Name)
	waitCRDEstablished(t, c, want.Name)
}

// waitCRDEstablished waits until the CRD name is Established (its API served).
func waitCRDEstablished(t *testing.T, c client.Client, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var have apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &have); err != nil {
			return false, err
		}
		for _, cond := range have.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "CRD %s Established", name)
}

// webhookReached dry-runs a pod labelled sidecar.istio.io/inject=true in the
// unlabelled probe namespace. The injector answers it either by injecting
// (a Mesh exists) or, with no Mesh, by refusing it (--no-mesh-policy Deny)
// or warning (Allow); without the webhook in the path the pod comes back
// untouched and silent.
func webhookReached(ctx context.Context) error {
	pod := probePod("reach")
	got, warnings, err := dryRunPodCtx(ctx, probeNamespace, pod)
	if err != nil {
		if strings.Contains(err.Error(), "no Mesh") {
			return nil
		}
		return fmt.Errorf("dry-run pod: %w", err)
	}
	if got.Labels[revisions.LabelRevision] != "" {
		return nil
	}
	for _, w := range warnings {
		if strings.Contains(w, "no Mesh") {
			return nil
		}
	}
	return fmt.Errorf("dry-run pod in %s was neither injected nor warned about (warnings %q): the API server does not reach the injector yet", probeNamespace, warnings)
}

// servingCert returns the certificate the webhook server presents, verified
// against h.CABundle for 127.0.0.1 (as the API server does).
func (h *managerHandle) servingCert(ctx context.Context) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(h.CABundle) {
		return nil, errors.New("no CA bundle to verify the webhook server")
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(h.URL, "https://"))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// httpClient returns a client that trusts the webhook server's CA bundle.
func (h *managerHandle) httpClient(t *testing.T) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(h.CABundle), "CA bundle of manager %s", h.Name)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}
