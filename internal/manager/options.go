package manager

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/meshrev/meshrev/internal/pki"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/webhook"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Defaults of [Options].
const (
	DefaultOwnNamespace = "meshrev-system"
	// DefaultMeshNamespace and DefaultProxyImageRepo are the core's, named
	// here for the manager's flags.
	DefaultMeshNamespace    = revisions.DefaultMeshNamespace
	DefaultProxyImageRepo   = revisions.DefaultProxyImageRepo
	DefaultWebhookPort      = 9443
	DefaultMetricsAddr      = ":8080"
	DefaultProbeAddr        = ":8081"
	DefaultLeaderElectionID = "meshrev-manager"
	// PodNamespaceEnv names the environment variable (set by the chart from the
	// downward API) that defaults OwnNamespace.
	PodNamespaceEnv = "POD_NAMESPACE"
)

// Options configures [Run]. The zero value runs with the defaults against the
// cluster of $KUBECONFIG or the in-cluster config.
type Options struct {
	// RestConfig is the cluster to manage; it wins over Kubeconfig.
	RestConfig *rest.Config
	// Kubeconfig is a kubeconfig path, used when RestConfig is nil. Empty
	// means $KUBECONFIG, the in-cluster config, then ~/.kube/config.
	Kubeconfig string

	// OwnNamespace is meshrev's namespace (never injected; templates
	// ConfigMaps, certificate Secret, leader-election Lease). Default
	// $POD_NAMESPACE, else meshrev-system.
	OwnNamespace string
	// MeshNamespace is where control planes run (default istio-system).
	MeshNamespace string
	// ProxyImageRepo defaults a revision's proxy image to <repo>:<version>
	// (default docker.io/istio/proxyv2).
	ProxyImageRepo string
	// TemplatesConfigMap names a ConfigMap in OwnNamespace (keys sidecar,
	// gateway) whose templates replace the embedded defaults; empty keeps the
	// embedded ones. Read from the cache.
	TemplatesConfigMap string
	// HistoryLimit bounds the Mesh status history (0: the controller's default).
	HistoryLimit int
	// ChartCacheDir keeps the Istio charts fetched for helm control planes
	// (default <temp dir>/meshrev-charts).
	ChartCacheDir string

	// WebhookHost is the address the webhook server listens on (default all).
	WebhookHost string
	// WebhookPort is the webhook server's port (default 9443).
	WebhookPort int
	// CertDir holds tls.crt and tls.key of the webhook server; rotated files
	// are picked up without restart. Required with Certs.Manage (it is
	// written); otherwise default controller-runtime's
	// <tmp>/k8s-webhook-server/serving-certs.
	CertDir string

	// MetricsAddr serves Prometheus metrics on /metrics (default :8080; "0"
	// disables).
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz (default :8081; "0" disables).
	ProbeAddr string

	// LeaderElection elects one replica to run the controller; webhooks
	// serve on every replica regardless.
	LeaderElection bool
	// LeaderElectionID is the Lease name (default meshrev-manager).
	LeaderElectionID string
	// LeaderElectionNamespace holds the Lease (default OwnNamespace).
	LeaderElectionNamespace string
	// LeaseDuration is how long a standby waits before taking over a Lease
	// that was not released (zero: 30s). Tests shorten it, with
	// RenewDeadline and RetryPeriod.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader retries renewing before it
	// gives up leadership (zero: 20s).
	RenewDeadline time.Duration
	// RetryPeriod is the interval of leader-election attempts and of the
	// leader's renewals, one Lease write each (zero: 5s).
	RetryPeriod time.Duration

	// GracefulShutdownTimeout bounds how long Run waits for runnables after
	// ctx ends (zero: controller-runtime's 30s).
	GracefulShutdownTimeout time.Duration

	// Certs configures self-managed webhook certificates.
	Certs CertOptions

	// Server bounds what clients of the webhook server can hold (timeouts,
	// concurrency, body bytes) and turns HTTP/2 on (webhook and metrics).
	Server ServerLimits

	// NoMeshPolicy is what the injector does with a pod that asks for
	// injection while no Mesh exists: Deny (the default) refuses it, as an
	// unreachable injector would; Allow admits it without a sidecar, with a
	// warning.
	NoMeshPolicy webhook.NoMeshPolicy

	// AfterRelabel is passed to the controller: called after each namespace a
	// promotion relabels. Tests use it to stop the manager half way.
	AfterRelabel func(ctx context.Context, namespace string) error
}

// CertOptions configures self-managed webhook certificates (--manage-certs).
type CertOptions struct {
	// Manage makes the manager keep a CA and a serving certificate in
	// SecretName, write them into CertDir, patch caBundle into the webhook
	// configurations and rotate them before they expire.
	Manage bool
	// SecretName holds the CA and serving certificate (default meshrev-webhook-tls).
	SecretName string
	// ServiceName is the webhook Service whose DNS names the certificate
	// covers (default meshrev-webhook).
	ServiceName string
	// MutatingWebhookConfig gets caBundle patched into all its webhooks
	// (default meshrev; "-" for none).
	MutatingWebhookConfig string
	// ValidatingWebhookConfig gets caBundle patched into all its webhooks
	// (default meshrev; "-" for none).
	ValidatingWebhookConfig string
	// WebhookURL, when the apiserver calls the manager by URL (a manager
	// outside the cluster), adds the URL's host to the certificate.
	WebhookURL string
	// CALifetime of a new CA (default 10 years); renewed at two thirds.
	CALifetime time.Duration
	// CertLifetime of a new serving certificate (default 1 year); renewed
	// at two thirds.
	CertLifetime time.Duration
	// ResyncInterval is how often the Secret, files and caBundle are
	// checked when nothing is due (default 1m).
	ResyncInterval time.Duration
	// CAPropagation is how long a new CA is published in caBundle before
	// the serving certificate switches to it (default 1m).
	CAPropagation time.Duration
}

// complete applies the defaults and checks opts.
func (o *Options) complete() error {
	if o.OwnNamespace == "" {
		o.OwnNamespace = os.Getenv(PodNamespaceEnv)
	}
	if o.OwnNamespace == "" {
		o.OwnNamespace = DefaultOwnNamespace
	}
	if o.MeshNamespace == "" {
		o.MeshNamespace = DefaultMeshNamespace
	}
	if o.MeshNamespace == o.OwnNamespace {
		return fmt.Errorf("the mesh namespace and meshrev's own namespace are both %q: meshrev's namespace is never injected and must be separate (--namespace, --mesh-namespace)", o.OwnNamespace)
	}
	if o.ProxyImageRepo == "" {
		o.ProxyImageRepo = DefaultProxyImageRepo
	}
	if o.WebhookPort == 0 {
		o.WebhookPort = DefaultWebhookPort
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = DefaultMetricsAddr
	}
	if o.ProbeAddr == "" {
		o.ProbeAddr = DefaultProbeAddr
	}
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = DefaultLeaderElectionID
	}
	if o.LeaderElectionNamespace == "" {
		o.LeaderElectionNamespace = o.OwnNamespace
	}
	switch o.NoMeshPolicy {
	case "":
		o.NoMeshPolicy = webhook.NoMeshDeny
	case webhook.NoMeshDeny, webhook.NoMeshAllow:
	default:
		return fmt.Errorf("--no-mesh-policy %q: want %s or %s", o.NoMeshPolicy, webhook.NoMeshDeny, webhook.NoMeshAllow)
	}
	o.Server.complete()
	if o.Certs.Manage && o.CertDir == "" {
		return errors.New("--manage-certs writes the serving certificate into --cert-dir: set it to a writable directory (e.g. an emptyDir)")
	}
	if o.Certs.SecretName == "" {
		o.Certs.SecretName = pki.DefaultSecretName
	}
	if o.Certs.ServiceName == "" {
		o.Certs.ServiceName = pki.DefaultServiceName
	}
	if o.Certs.MutatingWebhookConfig == "" {
		o.Certs.MutatingWebhookConfig = pki.DefaultWebhookConfig
	}
	if o.Certs.ValidatingWebhookConfig == "" {
		o.Certs.ValidatingWebhookConfig = pki.DefaultWebhookConfig
	}
	return nil
}

// restConfig returns the cluster config of opts.
func (o *Options) restConfig() (*rest.Config, error) {
	if o.RestConfig != nil {
		return rest.CopyConfig(o.RestConfig), nil
	}
	if o.Kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", o.Kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster config (set --kubeconfig or $KUBECONFIG, or run in a pod): %w", err)
	}
	return cfg, nil
}

// certHosts are the extra names of the serving certificate: loopback (for the
// readiness check and local runs) and the host of the webhook URL.
func (o *Options) certHosts() ([]string, error) {
	hosts := []string{"127.0.0.1", "localhost"}
	if o.Certs.WebhookURL != "" {
		u, err := url.Parse(o.Certs.WebhookURL)
		if err != nil || u.Scheme != "https" || u.Hostname() == "" {
			return nil, fmt.Errorf("--webhook-url %q must be an https:// URL with a host, e.g. https://127.0.0.1:9443", o.Certs.WebhookURL)
		}
		hosts = append(hosts, u.Hostname())
	}
	return hosts, nil
}

func durationPtr(d time.Duration) *time.Duration {
	if d <= 0 {
		return nil
	}
	return &d
}
