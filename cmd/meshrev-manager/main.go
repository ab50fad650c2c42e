// Command meshrev-manager serves meshrev's admission webhooks (the revision
// router, the Mesh validator, namespace warnings) and runs its lifecycle
// controller. It only turns flags into manager.Options; see internal/manager.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshrev/meshrev/internal/manager"
	"github.com/meshrev/meshrev/internal/pki"
	"github.com/meshrev/meshrev/internal/version"
)

// errVersion is parseFlags' answer to --version: print it and exit.
var errVersion = errors.New("version requested")

func main() {
	opts, zapOpts, err := parseFlags(os.Args[1:], os.Stderr)
	switch {
	case errors.Is(err, errVersion):
		fmt.Println("meshrev-manager " + version.Get().String())
		os.Exit(0)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		os.Exit(2) // the flag package printed the error and the usage
	}
	// meshrev_build_info on the metrics server: which build each replica runs.
	metrics.Registry.MustRegister(version.Collector())
	logger := zap.New(zap.UseFlagOptions(zapOpts))
	ctrl.SetLogger(logger)
	if limit, err := manager.SetMemoryLimitFromEnv(os.Getenv); err != nil {
		logger.Error(err, "Go memory limit not set")
	} else if limit > 0 {
		logger.Info("Go memory limit set from the container's", "bytes", limit)
	}
	ctx := log.IntoContext(ctrl.SetupSignalHandler(), logger)
	if err := manager.Run(ctx, opts); err != nil {
		logger.Error(err, "meshrev-manager failed")
		os.Exit(1)
	}
}

// parseFlags turns the command line into manager options; --version makes it
// return errVersion. It uses its own
// flag set: controller-runtime registers --kubeconfig on the global one.
func parseFlags(args []string, out io.Writer) (manager.Options, *zap.Options, error) {
	var o manager.Options
	fs := flag.NewFlagSet("meshrev-manager", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: meshrev-manager [flags]\n\nServes meshrev's admission webhooks on every replica and runs its controller on the elected leader.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to manage (default $KUBECONFIG, the in-cluster config, then ~/.kube/config)")
	fs.StringVar(&o.OwnNamespace, "namespace", "", "meshrev's own namespace: never injected; holds the templates ConfigMaps, the certificate Secret and the leader Lease (default $"+manager.PodNamespaceEnv+", else "+manager.DefaultOwnNamespace+")")
	fs.StringVar(&o.MeshNamespace, "mesh-namespace", manager.DefaultMeshNamespace, "namespace of the control planes istiod-<revision>")
	fs.StringVar(&o.ProxyImageRepo, "proxy-image-repo", manager.DefaultProxyImageRepo, "repository of the sidecar image; a revision without proxyImage gets <repo>:<version>")
	fs.StringVar(&o.WebhookHost, "webhook-host", "", "address the webhook server listens on (default all)")
	fs.IntVar(&o.WebhookPort, "webhook-port", manager.DefaultWebhookPort, "port of the HTTPS webhook server")
	fs.StringVar(&o.CertDir, "cert-dir", "", "directory of the webhook server's tls.crt and tls.key, reloaded when they change (required with --manage-certs, which writes them)")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", manager.DefaultMetricsAddr, "address of the Prometheus /metrics endpoint (0 disables it)")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", manager.DefaultProbeAddr, "address of /healthz and /readyz (0 disables them)")
	fs.StringVar(&o.ChartCacheDir, "chart-cache-dir", "", "directory keeping the Istio charts fetched for helm control planes, by repository and version (default <temp dir>/meshrev-charts)")
	fs.BoolVar(&o.LeaderElection, "leader-elect", false, "elect one replica to run the controller (webhooks are served by every replica)")
	fs.StringVar(&o.TemplatesConfigMap, "templates-configmap", "", "ConfigMap in --namespace (keys sidecar, gateway) replacing the embedded default injection templates")
	fs.BoolVar(&o.Certs.Manage, "manage-certs", false, "keep a CA and serving certificate in --cert-secret, write them into --cert-dir, patch caBundle into the webhook configurations and rotate them")
	fs.StringVar(&o.Certs.SecretName, "cert-secret", pki.DefaultSecretName, "Secret in --namespace holding the self-managed certificates")
	fs.StringVar(&o.Certs.ServiceName, "webhook-service", pki.DefaultServiceName, "Service in front of the webhook server; the serving certificate covers <service>.<namespace>.svc")
	fs.StringVar(&o.Certs.MutatingWebhookConfig, "mutating-webhook-config", pki.DefaultWebhookConfig, "MutatingWebhookConfiguration whose caBundle --manage-certs patches (- for none)")
	fs.StringVar(&o.Certs.ValidatingWebhookConfig, "validating-webhook-config", pki.DefaultWebhookConfig, "ValidatingWebhookConfiguration whose caBundle --manage-certs patches (- for none)")
	fs.StringVar(&o.Certs.WebhookURL, "webhook-url", "", "https URL the API server calls the webhooks at when the manager runs outside the cluster; its host joins the serving certificate")
	fs.DurationVar(&o.Certs.CALifetime, "ca-lifetime", pki.DefaultCALifetime, "lifetime of a self-managed CA (renewed at two thirds)")
	fs.DurationVar(&o.Certs.CertLifetime, "cert-lifetime", pki.DefaultCertLifetime, "lifetime of a self-managed serving certificate (renewed at two thirds)")
	printVersion := fs.Bool("version", false, "print the version and exit")
	fs.StringVar((*string)(&o.NoMeshPolicy), "no-mesh-policy", "Deny", "what happens to a pod that asks for injection while no Mesh exists: Deny (refuse it, the default) or Allow (admit it without a sidecar, with a warning)")
	fs.DurationVar(&o.Server.ReadHeaderTimeout, "webhook-read-header-timeout", manager.DefaultReadHeaderTimeout, "webhook server: time allowed to read a request's headers")
	fs.DurationVar(&o.Server.ReadTimeout, "webhook-read-timeout", manager.DefaultReadTimeout, "webhook server: time allowed to read a whole request, headers and body")
	fs.DurationVar(&o.Server.WriteTimeout, "webhook-write-timeout", manager.DefaultWriteTimeout, "webhook server: time allowed from a request's headers to the end of its response")
	fs.DurationVar(&o.Server.IdleTimeout, "webhook-idle-timeout", manager.DefaultIdleTimeout, "webhook server: an idle kept-alive connection is closed after this")
	fs.IntVar(&o.Server.MaxConcurrentRequests, "webhook-max-concurrent-requests", manager.DefaultMaxConcurrentRequests, "webhook server: requests handled at once; more are answered 429")
	fs.Int64Var(&o.Server.MaxInFlightBytes, "webhook-max-inflight-bytes", manager.DefaultMaxInFlightBytes, "webhook server: request body bytes (beyond 64 KiB each) of all requests being handled; a request that does not fit is answered 429")
	fs.Int64Var(&o.Server.MaxRequestBytes, "webhook-max-request-bytes", manager.DefaultMaxRequestBytes, "webhook server: the largest request body (413 beyond)")
	fs.IntVar(&o.Server.MaxConnections, "webhook-max-connections", manager.DefaultMaxConnections, "webhook server: open connections; when full, a new one replaces the oldest waiting connection of the address with the most waiting, or is closed before its TLS handshake")
	fs.IntVar(&o.Server.MaxPendingConnectionsPerIP, "webhook-max-pending-connections-per-ip", manager.DefaultMaxPendingConnectionsPerIP, "webhook server: connections per client address that have not completed a request; more wait, without TLS, until the handshake timeout")
	fs.IntVar(&o.Server.MaxConcurrentHandshakes, "webhook-max-concurrent-handshakes", manager.DefaultMaxConcurrentHandshakes, "webhook server: TLS handshakes run at once")
	fs.IntVar(&o.Server.HandshakesPerSecondPerIP, "webhook-handshakes-per-second-per-ip", manager.DefaultHandshakesPerSecondPerIP, "webhook server: TLS handshakes one client address starts a second (bursts of twice as many)")
	fs.DurationVar(&o.Server.HandshakeTimeout, "webhook-handshake-timeout", manager.DefaultHandshakeTimeout, "webhook server: time from accepting a connection to the end of its TLS handshake, waiting for a slot included")
	fs.BoolVar(&o.Server.EnableHTTP2, "enable-http2", false, "offer HTTP/2 on the webhook and metrics servers (off: Go's HTTP/2 rapid-reset advisory, CVE-2023-44487)")
	zapOpts := &zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return manager.Options{}, nil, err
	}
	if *printVersion {
		return manager.Options{}, nil, errVersion
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments %q: meshrev-manager takes flags only", fs.Args())
		fmt.Fprintln(out, err)
		return manager.Options{}, nil, err
	}
	return o, zapOpts, nil
}
