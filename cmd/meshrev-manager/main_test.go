package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/internal/manager"
	"github.com/meshrev/meshrev/internal/pki"
)

func TestParseFlags(t *testing.T) {
	defaults := manager.Options{
		MeshNamespace:  manager.DefaultMeshNamespace,
		ProxyImageRepo: manager.DefaultProxyImageRepo,
		WebhookPort:    manager.DefaultWebhookPort,
		MetricsAddr:    manager.DefaultMetricsAddr,
		ProbeAddr:      manager.DefaultProbeAddr,
		Certs: manager.CertOptions{
			SecretName:              pki.DefaultSecretName,
			ServiceName:             pki.DefaultServiceName,
			MutatingWebhookConfig:   pki.DefaultWebhookConfig,
			ValidatingWebhookConfig: pki.DefaultWebhookConfig,
			CALifetime:              pki.DefaultCALifetime,
			CertLifetime:            pki.DefaultCertLifetime,
		},
		Server: manager.ServerLimits{
			ReadHeaderTimeout:          manager.DefaultReadHeaderTimeout,
			ReadTimeout:                manager.DefaultReadTimeout,
			WriteTimeout:               manager.DefaultWriteTimeout,
			IdleTimeout:                manager.DefaultIdleTimeout,
			MaxConcurrentRequests:      manager.DefaultMaxConcurrentRequests,
			MaxInFlightBytes:           manager.DefaultMaxInFlightBytes,
			MaxRequestBytes:            manager.DefaultMaxRequestBytes,
			MaxConnections:             manager.DefaultMaxConnections,
			MaxPendingConnectionsPerIP: manager.DefaultMaxPendingConnectionsPerIP,
			MaxConcurrentHandshakes:    manager.DefaultMaxConcurrentHandshakes,
			HandshakesPerSecondPerIP:   manager.DefaultHandshakesPerSecondPerIP,
			HandshakeTimeout:           manager.DefaultHandshakeTimeout,
		},
		NoMeshPolicy: "Deny",
	}
	tests := map[string]struct {
		args []string
		want func(o *manager.Options)
		err  string
	}{
		"no flags give the documented defaults": {
			want: func(*manager.Options) {},
		},
		"the chart's in-cluster command line with self-managed certificates": {
			args: []string{"--namespace=meshrev-system", "--mesh-namespace=istio-system", "--proxy-image-repo=registry.example.com/proxyv2",
				"--webhook-port=9443", "--cert-dir=/var/run/meshrev/certs", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081",
				"--leader-elect=true", "--templates-configmap=meshrev-templates", "--manage-certs", "--cert-secret=meshrev-webhook-tls",
				"--webhook-service=meshrev-webhook", "--mutating-webhook-config=meshrev", "--validating-webhook-config=meshrev"},
			want: func(o *manager.Options) {
				o.OwnNamespace = "meshrev-system"
				o.ProxyImageRepo = "registry.example.com/proxyv2"
				o.CertDir = "/var/run/meshrev/certs"
				o.LeaderElection = true
				o.TemplatesConfigMap = "meshrev-templates"
				o.Certs.Manage = true
			},
		},
		"a local manager called by URL": {
			args: []string{"--kubeconfig", ".dev/kubeconfig", "--webhook-host=127.0.0.1", "--webhook-port=19443", "--manage-certs",
				"--cert-dir=/tmp/certs", "--webhook-url=https://127.0.0.1:19443", "--cert-lifetime=1h", "--ca-lifetime=24h"},
			want: func(o *manager.Options) {
				o.Kubeconfig = ".dev/kubeconfig"
				o.WebhookHost = "127.0.0.1"
				o.WebhookPort = 19443
				o.CertDir = "/tmp/certs"
				o.Certs.Manage = true
				o.Certs.WebhookURL = "https://127.0.0.1:19443"
				o.Certs.CertLifetime = time.Hour
				o.Certs.CALifetime = 24 * time.Hour
			},
		},
		"the webhook server's bounds, HTTP/2 and the no-Mesh policy": {
			args: []string{"--webhook-read-header-timeout=2s", "--webhook-read-timeout=3s", "--webhook-write-timeout=4s", "--webhook-idle-timeout=5s",
				"--webhook-max-concurrent-requests=10", "--webhook-max-inflight-bytes=1048576", "--webhook-max-request-bytes=65536",
				"--webhook-max-connections=100", "--webhook-max-pending-connections-per-ip=7", "--webhook-max-concurrent-handshakes=3", "--webhook-handshake-timeout=2s", "--webhook-handshakes-per-second-per-ip=9",
				"--enable-http2", "--no-mesh-policy=Allow"},
			want: func(o *manager.Options) {
				o.Server = manager.ServerLimits{ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 4 * time.Second,
					IdleTimeout: 5 * time.Second, MaxConcurrentRequests: 10, MaxInFlightBytes: 1 << 20, MaxRequestBytes: 64 << 10,
					MaxConnections: 100, MaxPendingConnectionsPerIP: 7, MaxConcurrentHandshakes: 3, HandshakesPerSecondPerIP: 9, HandshakeTimeout: 2 * time.Second, EnableHTTP2: true}
				o.NoMeshPolicy = "Allow"
			},
		},
		"an unknown flag is an error": {
			args: []string{"--webhook-prot=1"},
			err:  "flag provided but not defined: -webhook-prot",
		},
		"positional arguments are an error": {
			args: []string{"serve"},
			err:  "takes flags only",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			got, zapOpts, err := parseFlags(tc.args, &out)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				assert.Contains(t, out.String(), tc.err, "the error is shown to the person")
				return
			}
			require.NoError(t, err)
			require.NotNil(t, zapOpts)
			want := defaults
			tc.want(&want)
			assert.Equal(t, want, got)
		})
	}
}

func TestParseFlagsBindsZapFlags(t *testing.T) {
	_, zapOpts, err := parseFlags([]string{"--zap-devel", "--zap-log-level=debug"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.True(t, zapOpts.Development)
	require.NotNil(t, zapOpts.Level)
	assert.Equal(t, "debug", zapOpts.Level.(interface{ String() string }).String())
}

func TestParseFlagsVersionAsksToPrintIt(t *testing.T) {
	var out bytes.Buffer
	_, _, err := parseFlags([]string{"--metrics-bind-address=:8080", "--version"}, &out)
	require.ErrorIs(t, err, errVersion)
	assert.Empty(t, out.String(), "the version goes to stdout from main, nothing to stderr")
}
