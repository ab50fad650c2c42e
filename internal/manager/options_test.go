package manager

import (
	"crypto/tls"
	"fmt"
	"slices"
	"testing"

	"github.com/meshrev/meshrev/webhook"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func TestOptionsComplete(t *testing.T) {
	tests := map[string]struct {
		opts   Options
		podEnv string
		check  func(t *testing.T, o Options)
		err    string
	}{
		"empty options get the contract's defaults": {
			check: func(t *testing.T, o Options) {
				assert.Equal(t, "meshrev-system", o.OwnNamespace)
				assert.Equal(t, "istio-system", o.MeshNamespace)
				assert.Equal(t, "docker.io/istio/proxyv2", o.ProxyImageRepo)
				assert.Equal(t, 9443, o.WebhookPort)
				assert.Equal(t, ":8080", o.MetricsAddr)
				assert.Equal(t, ":8081", o.ProbeAddr)
				assert.Equal(t, "meshrev-manager", o.LeaderElectionID)
				assert.Equal(t, "meshrev-system", o.LeaderElectionNamespace, "the Lease lives in meshrev's namespace")
				assert.Equal(t, "meshrev-webhook-tls", o.Certs.SecretName)
				assert.Equal(t, "meshrev-webhook", o.Certs.ServiceName)
				assert.Equal(t, "meshrev", o.Certs.MutatingWebhookConfig)
				assert.Equal(t, "meshrev", o.Certs.ValidatingWebhookConfig)
				assert.Equal(t, webhook.NoMeshDeny, o.NoMeshPolicy, "no Mesh fails closed by default")
				assert.Equal(t, DefaultMaxConcurrentRequests, o.Server.MaxConcurrentRequests)
				assert.Equal(t, DefaultReadTimeout, o.Server.ReadTimeout)
			},
		},
		"a no-Mesh policy other than Deny or Allow is an error": {
			opts: Options{NoMeshPolicy: "Maybe"},
			err:  "--no-mesh-policy \"Maybe\": want Deny or Allow",
		},
		"the pod's namespace (downward API) is meshrev's namespace": {
			podEnv: "mesh-admin",
			check: func(t *testing.T, o Options) {
				assert.Equal(t, "mesh-admin", o.OwnNamespace)
				assert.Equal(t, "mesh-admin", o.LeaderElectionNamespace)
			},
		},
		"an explicit namespace wins over the pod's": {
			opts: Options{OwnNamespace: "ops"}, podEnv: "mesh-admin",
			check: func(t *testing.T, o Options) { assert.Equal(t, "ops", o.OwnNamespace) },
		},
		"meshrev's namespace cannot be the mesh namespace": {
			opts: Options{OwnNamespace: "istio-system"},
			err:  "must be separate",
		},
		"self-managed certificates need a directory to write": {
			opts: Options{Certs: CertOptions{Manage: true}},
			err:  "--manage-certs writes the serving certificate into --cert-dir",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Setenv(PodNamespaceEnv, tc.podEnv)
			o := tc.opts
			err := o.complete()
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			tc.check(t, o)
		})
	}
}

func TestCertHosts(t *testing.T) {
	tests := map[string]struct {
		url  string
		want []string
		err  string
	}{
		"loopback is always covered, for local runs and the readiness check": {
			want: []string{"127.0.0.1", "localhost"},
		},
		"the host of the webhook URL is added": {
			url: "https://meshrev.example.com:9443", want: []string{"127.0.0.1", "localhost", "meshrev.example.com"},
		},
		"an IP webhook URL adds the IP": {
			url: "https://10.1.2.3:443/", want: []string{"127.0.0.1", "localhost", "10.1.2.3"},
		},
		"a plain-http URL is refused: the API server only calls webhooks over TLS": {
			url: "http://127.0.0.1:9443", err: "must be an https:// URL",
		},
		"a URL without a host is refused": {
			url: "https:///inject", err: "must be an https:// URL",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o := Options{Certs: CertOptions{WebhookURL: tc.url}}
			got, err := o.certHosts()
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestManagerOptionsRestrictTheCache(t *testing.T) {
	scheme, err := readmodel.Scheme()
	require.NoError(t, err)
	gvks, _, err := scheme.ObjectKinds(&v1alpha1.Mesh{})
	require.NoError(t, err, "the scheme knows the Mesh")
	assert.Equal(t, "meshrev.io", gvks[0].Group)

	o := Options{OwnNamespace: "meshrev-system", LeaderElection: true}
	require.NoError(t, o.complete())
	mo := managerOptions(logr.Discard(), scheme, o)

	namespaces := map[string][]string{}
	var podSelector string
	for obj, by := range mo.Cache.ByObject {
		kind := fmt.Sprintf("%T", obj)
		for ns := range by.Namespaces {
			namespaces[kind] = append(namespaces[kind], ns)
		}
		slices.Sort(namespaces[kind])
		if _, ok := obj.(*corev1.Pod); ok {
			podSelector = by.Label.String()
		}
	}
	assert.Equal(t, map[string][]string{
		"*v1.ConfigMap":  {"istio-system", "meshrev-system"},
		"*v1.Deployment": {"istio-system"},
		"*v1.Service":    {"istio-system"},
	}, namespaces, "templates are read from meshrev's namespace, control planes and their releases' injection values from the mesh namespace")
	assert.Equal(t, "meshrev.io/revision", podSelector, "only injected pods are cached")
	require.NotNil(t, mo.Client.Cache)
	assert.Contains(t, mo.Client.Cache.DisableFor, client.Object(&corev1.Secret{}), "secrets are never cached")
	assert.False(t, mo.LeaderElection, "the manager elects its leader itself (leaderTerms): losing the Lease must not stop the webhooks")
	require.Len(t, mo.Metrics.TLSOpts, 1)
	var tc tls.Config
	mo.Metrics.TLSOpts[0](&tc)
	assert.Equal(t, uint16(tls.VersionTLS12), tc.MinVersion, "the metrics server speaks TLS 1.2 at least")
	assert.Equal(t, []string{"http/1.1"}, tc.NextProtos, "HTTP/2 is off by default")
}
