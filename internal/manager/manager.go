// Package manager runs meshrev-manager: one controller-runtime manager that
// serves the admission webhooks (pod injection, Mesh validation, namespace
// warnings, templates ConfigMap validation) on every replica, runs the
// lifecycle controller on the elected leader, and optionally keeps its own
// webhook certificates.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	crmanager "sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshrev/meshrev/internal/pki"
	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/controller"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
	"github.com/meshrev/meshrev/webhook"
)

// Run runs the manager until ctx ends, then shuts down gracefully: the
// webhook server drains in-flight requests and the leader releases its
// Lease so that a standby takes over at once. It returns nil after a clean
// shutdown. The logger comes from ctx (log.FromContext).
func Run(ctx context.Context, opts Options) error {
	if err := opts.complete(); err != nil {
		return fmt.Errorf("manager options: %w", err)
	}
	logger := log.FromContext(ctx).WithName("meshrev-manager")
	ctx = logr.NewContext(ctx, logger)
	cfg, err := opts.restConfig()
	if err != nil {
		return err
	}
	scheme, err := readmodel.Scheme()
	if err != nil {
		return err
	}

	// Self-managed certificates are in place before the webhook server
	// starts: its certwatcher needs the files to exist.
	var rotator *pki.Rotator
	if opts.Certs.Manage {
		if rotator, err = newRotator(cfg, scheme, opts); err != nil {
			return err
		}
		if err := rotator.Sync(ctx); err != nil {
			if rotator.Current() == nil {
				return fmt.Errorf("prepare webhook certificates: %w", err)
			}
			// Certificates are written; the caBundle patch is retried in the background.
			logger.Info("webhook certificates ready; caBundle not patched yet", "reason", err.Error())
		}
	}

	mopts := managerOptions(logger, scheme, opts)
	srv, err := newBoundedServer(opts.WebhookHost, opts.WebhookPort, opts.CertDir, opts.Server, nil)
	if err != nil {
		return err
	}
	mopts.WebhookServer = srv
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if rotator != nil {
		if err := mgr.Add(rotator); err != nil {
			return fmt.Errorf("add certificate rotation: %w", err)
		}
	}
	// Every replica answers admission requests from these informers, not only
	// the leader whose controller watches them: start them with the cache.
	for _, obj := range []client.Object{&v1alpha1.Mesh{}, &corev1.Namespace{}, &corev1.ConfigMap{}, &appsv1.Deployment{}, readmodel.PodMeta(), readmodel.CRDMeta()} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("register informer for %T: %w", obj, err)
		}
	}

	injector, err := setupWebhooks(ctx, mgr, opts)
	if err != nil {
		return err
	}
	copts := controller.Options{
		OwnNamespace:   opts.OwnNamespace,
		MeshNamespace:  opts.MeshNamespace,
		HistoryLimit:   opts.HistoryLimit,
		AfterRelabel:   opts.AfterRelabel,
		TemplatesCheck: injector.ValidateRevision,
		RestConfig:     mgr.GetConfig(),
		ChartCacheDir:  opts.ChartCacheDir,
	}
	if err := setupController(mgr, cfg, opts, copts); err != nil {
		return err
	}
	if err := setupProbes(mgr, rotator); err != nil {
		return err
	}

	logger.Info("starting", "namespace", opts.OwnNamespace, "meshNamespace", opts.MeshNamespace,
		"webhookPort", opts.WebhookPort, "certDir", opts.CertDir, "manageCerts", opts.Certs.Manage,
		"leaderElection", opts.LeaderElection, "templatesConfigMap", opts.TemplatesConfigMap)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// managerOptions translates opts for controller-runtime.
func managerOptions(logger logr.Logger, scheme *runtime.Scheme, opts Options) ctrl.Options {
	injected, _ := labels.NewRequirement(revisions.LabelRevision, selection.Exists, nil)
	return ctrl.Options{
		Scheme: scheme,
		Logger: logger,
		// Runnables (the certificate rotation) log through ctx too.
		BaseContext: func() context.Context { return logr.NewContext(context.Background(), logger) },
		Cache: cache.Options{
			// Nothing reads managedFields; dropping them halves the cache.
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				// Templates ConfigMaps live in meshrev's namespace; the
				// releases' injection values (istio-sidecar-injector-<rev>)
				// in the mesh namespace.
				&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{opts.OwnNamespace: {}, opts.MeshNamespace: {}}},
				// Control planes live in the mesh namespace only.
				&appsv1.Deployment{}: {Namespaces: map[string]cache.Config{opts.MeshNamespace: {}}},
				&corev1.Service{}:    {Namespaces: map[string]cache.Config{opts.MeshNamespace: {}}},
				// Only injected pods matter (status, facts), as metadata: a
				// cluster's other pods never enter the cache.
				&corev1.Pod{}: {Label: labels.NewSelector().Add(*injected)},
				// Nodes decide sidecarMode Auto: only name and kubelet
				// version are kept.
				&corev1.Node{}: {Transform: webhook.TrimNode},
			},
		},
		Client: client.Options{Cache: &client.CacheOptions{
			// Secrets are never cached: the rotation reads its one Secret directly.
			DisableFor: []client.Object{&corev1.Secret{}},
		}},
		Metrics: metricsserver.Options{
			BindAddress: opts.MetricsAddr,
			TLSOpts:     []func(*tls.Config){tlsOptions(opts.Server.EnableHTTP2)},
		},
		HealthProbeBindAddress: opts.ProbeAddr,
		// Leader election is the manager's own (leaderTerms): losing the
		// Lease must not end the process that serves the webhooks.
		LeaderElection:          false,
		GracefulShutdownTimeout: durationPtr(opts.GracefulShutdownTimeout),
		// A process may run several managers over its life (tests restart
		// one): controller names need not be unique process-wide.
		Controller: config.Controller{SkipNameValidation: new(true)},
	}
}

// setupController runs the lifecycle controller: on every term this replica
// leads (leader election), or for the manager's whole life.
func setupController(mgr ctrl.Manager, cfg *rest.Config, opts Options, copts controller.Options) error {
	newTerm := func() (func(context.Context) error, error) {
		c, err := controller.New(mgr, copts)
		if err != nil {
			return nil, err
		}
		return c.Start, nil
	}
	if !opts.LeaderElection {
		run, err := newTerm()
		if err != nil {
			return err
		}
		if err := mgr.Add(crmanager.RunnableFunc(run)); err != nil {
			return fmt.Errorf("add the mesh controller: %w", err)
		}
		return nil
	}
	terms := &leaderTerms{
		cfg:       cfg,
		namespace: opts.LeaderElectionNamespace,
		name:      opts.LeaderElectionID,
		lease:     orDefault(opts.LeaseDuration, defaultLeaseDuration),
		renew:     orDefault(opts.RenewDeadline, defaultRenewDeadline),
		retry:     orDefault(opts.RetryPeriod, defaultRetryPeriod),
		newTerm:   newTerm,
	}
	if err := mgr.Add(terms); err != nil {
		return fmt.Errorf("add leader election: %w", err)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// setupWebhooks registers the four admission endpoints and returns the injector.
func setupWebhooks(ctx context.Context, mgr ctrl.Manager, opts Options) (*webhook.Injector, error) {
	state, err := webhook.NewCacheState(ctx, mgr.GetCache(), mgr.GetAPIReader())
	if err != nil {
		return nil, fmt.Errorf("injector state: %w", err)
	}
	injector, err := webhook.NewInjector(webhook.InjectorOptions{
		OwnNamespace:   opts.OwnNamespace,
		MeshNamespace:  opts.MeshNamespace,
		ProxyImageRepo: opts.ProxyImageRepo,
		State:          state,
		Templates: webhook.NewConfigMapTemplateSource(webhook.ConfigMapTemplatesOptions{
			Reader:            mgr.GetCache(),
			Namespace:         opts.OwnNamespace,
			DefaultsConfigMap: opts.TemplatesConfigMap,
		}),
		ReleaseSettings: webhook.NewReleaseSettings(mgr.GetCache(), opts.MeshNamespace),
		Log:             logr.FromContextOrDiscard(ctx).WithName("inject"),
		NoMeshPolicy:    opts.NoMeshPolicy,
		MaxRequestBytes: opts.Server.MaxRequestBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("create injector: %w", err)
	}
	srv := mgr.GetWebhookServer()
	srv.Register(webhook.PathInject, injector)
	srv.Register(webhook.PathValidateMesh, webhook.NewMeshValidator(webhook.MeshValidatorOptions{
		Reader:        mgr.GetCache(),
		MeshNamespace: opts.MeshNamespace,
		Revisions:     injector,
		Scheme:        mgr.GetScheme(),
	}))
	srv.Register(webhook.PathValidateNamespace, webhook.NewNamespaceValidator(webhook.NamespaceValidatorOptions{
		OwnNamespace: opts.OwnNamespace,
		Reader:       mgr.GetCache(),
		Scheme:       mgr.GetScheme(),
		Renderer:     injector,
	}))
	// Edits of the templates ConfigMaps after a revision is published are
	// judged with the injector's own rendering.
	srv.Register(webhook.PathValidateTemplates, webhook.NewTemplatesValidator(webhook.TemplatesValidatorOptions{
		Namespace:         opts.OwnNamespace,
		DefaultsConfigMap: opts.TemplatesConfigMap,
		Reader:            mgr.GetCache(),
		Injector:          injector,
		Scheme:            mgr.GetScheme(),
	}))
	return injector, nil
}

// setupProbes adds /healthz (the process answers) and /readyz: the webhook
// server accepts TLS connections with a certificate, the informers every
// admission answer comes from have synced, and (self-managed) a certificate
// bundle is in place.
func setupProbes(mgr ctrl.Manager, rotator *pki.Rotator) error {
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("add healthz check: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return fmt.Errorf("add readyz check: %w", err)
	}
	synced := &cacheSynced{cache: mgr.GetCache()}
	if err := mgr.Add(synced); err != nil {
		return fmt.Errorf("add cache sync tracker: %w", err)
	}
	if err := mgr.AddReadyzCheck("informers", synced.check); err != nil {
		return fmt.Errorf("add readyz check: %w", err)
	}
	if rotator != nil {
		if err := mgr.AddReadyzCheck("certificates", func(*http.Request) error {
			if rotator.Current() == nil {
				return errors.New("no webhook certificate yet")
			}
			return nil
		}); err != nil {
			return fmt.Errorf("add readyz check: %w", err)
		}
	}
	return nil
}

// cacheSynced records when the cache has synced, on every replica (the
// controller's own sync happens only on the leader).
type cacheSynced struct {
	cache cache.Cache
	done  atomic.Bool
}

// Start waits for the cache to sync.
func (c *cacheSynced) Start(ctx context.Context) error {
	if c.cache.WaitForCacheSync(ctx) {
		c.done.Store(true)
	}
	return nil
}

// NeedLeaderElection is false: every replica serves admission requests.
func (c *cacheSynced) NeedLeaderElection() bool { return false }

func (c *cacheSynced) check(*http.Request) error {
	if !c.done.Load() {
		return errors.New("informer caches have not synced yet")
	}
	return nil
}

// newRotator builds the certificate rotation with a client that reads
// through to the API server (the manager's cache is not running yet).
func newRotator(cfg *rest.Config, scheme *runtime.Scheme, opts Options) (*pki.Rotator, error) {
	hosts, err := opts.certHosts()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("create client for certificate rotation: %w", err)
	}
	return pki.NewRotator(c, pki.Options{
		Namespace:                      opts.OwnNamespace,
		SecretName:                     opts.Certs.SecretName,
		ServiceName:                    opts.Certs.ServiceName,
		ExtraHosts:                     hosts,
		CertDir:                        opts.CertDir,
		MutatingWebhookConfiguration:   opts.Certs.MutatingWebhookConfig,
		ValidatingWebhookConfiguration: opts.Certs.ValidatingWebhookConfig,
		CALifetime:                     opts.Certs.CALifetime,
		CertLifetime:                   opts.Certs.CertLifetime,
		ResyncInterval:                 opts.Certs.ResyncInterval,
		CAPropagation:                  opts.Certs.CAPropagation,
	})
}
