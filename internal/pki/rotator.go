package pki

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Defaults of [Options].
const (
	DefaultSecretName     = "meshrev-webhook-tls"
	DefaultServiceName    = "meshrev-webhook"
	DefaultWebhookConfig  = "meshrev"
	DefaultResyncInterval = time.Minute
	// DefaultCAPropagation is how long a new CA is in the caBundle before
	// serving certificates it signed are used (see Rotation).
	DefaultCAPropagation = time.Minute
	// AnnotationCASince on the Secret records when its current CA was created.
	AnnotationCASince = "meshrev.io/ca-since"
	// retryInterval is how soon a failed or incomplete sync is retried (e.g.
	// the webhook configurations do not exist yet while a chart installs).
	retryInterval = 3 * time.Second
	// maxAttempts bounds the create/update races lost to other replicas in one sync.
	maxAttempts = 5
)

// Options configures a [Rotator].
type Options struct {
	// Namespace of the Secret and of the webhook Service (meshrev's own namespace).
	Namespace string
	// SecretName is the Secret that holds the CA and serving certificate
	// (default meshrev-webhook-tls). Every replica reads it; whoever finds it
	// missing or due creates/renews it, and losers of the race re-read it.
	SecretName string
	// ServiceName is the webhook Service; the serving certificate covers its
	// DNS names (default meshrev-webhook).
	ServiceName string
	// ExtraHosts are more DNS names or IP addresses for the serving
	// certificate, e.g. 127.0.0.1 and the host of a webhook URL.
	ExtraHosts []string
	// CertDir receives tls.crt, tls.key and ca.crt (the webhook server's
	// certificate directory; its certwatcher picks up new files).
	CertDir string
	// MutatingWebhookConfiguration gets the CA bundle patched into every
	// webhook's clientConfig.caBundle (default meshrev; "-" for none).
	MutatingWebhookConfiguration string
	// ValidatingWebhookConfiguration likewise (default meshrev; "-" for none).
	ValidatingWebhookConfiguration string
	// CALifetime of a new CA (default 10 years); renewed at two thirds.
	CALifetime time.Duration
	// CertLifetime of a new serving certificate (default 1 year); renewed
	// at two thirds.
	CertLifetime time.Duration
	// ResyncInterval is how often the Secret, files and webhook
	// configurations are checked even when nothing is due (default 1m); it
	// repairs a caBundle reset by a chart upgrade.
	ResyncInterval time.Duration
	// CAPropagation is how long a new CA is published in the caBundle
	// before the serving certificate switches to it (default 1m).
	CAPropagation time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
}

func (o *Options) defaults() error {
	if o.Namespace == "" {
		return errors.New("certificate rotation needs the namespace of its Secret")
	}
	if o.CertDir == "" {
		return errors.New("certificate rotation needs a certificate directory (--cert-dir)")
	}
	if o.SecretName == "" {
		o.SecretName = DefaultSecretName
	}
	if o.ServiceName == "" {
		o.ServiceName = DefaultServiceName
	}
	if o.MutatingWebhookConfiguration == "" {
		o.MutatingWebhookConfiguration = DefaultWebhookConfig
	}
	if o.ValidatingWebhookConfiguration == "" {
		o.ValidatingWebhookConfiguration = DefaultWebhookConfig
	}
	if o.CALifetime <= 0 {
		o.CALifetime = DefaultCALifetime
	}
	if o.CertLifetime <= 0 {
		o.CertLifetime = DefaultCertLifetime
	}
	if o.CertLifetime > o.CALifetime {
		return fmt.Errorf("serving certificate lifetime %s exceeds the CA lifetime %s", o.CertLifetime, o.CALifetime)
	}
	if o.ResyncInterval <= 0 {
		o.ResyncInterval = DefaultResyncInterval
	}
	if o.CAPropagation <= 0 {
		o.CAPropagation = DefaultCAPropagation
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Rotator keeps the webhook certificates: it is a controller-runtime
// Runnable that runs on every replica (not leader-elected, since every
// replica serves webhooks and needs the files).
type Rotator struct {
	client client.Client
	opts   Options
	hosts  []string

	mu      sync.Mutex
	current *Bundle
	// next is when the last sync's decision may change.
	next time.Time
}

// NewRotator returns a Rotator that uses c, which must read through to the
// API server (not a cache that has not started yet).
func NewRotator(c client.Client, opts Options) (*Rotator, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	return &Rotator{
		client: c,
		opts:   opts,
		hosts:  ServiceHosts(opts.ServiceName, opts.Namespace, opts.ExtraHosts...),
	}, nil
}

// Current is the bundle of the last successful sync, or nil.
func (r *Rotator) Current() *Bundle {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// NeedLeaderElection is false: every replica serves webhooks and needs certificates.
func (r *Rotator) NeedLeaderElection() bool { return false }

// errConfigMissing says that a webhook configuration to patch does not exist (yet).
var errConfigMissing = errors.New("webhook configuration not found")

// Sync makes the Secret current (creating or renewing it), writes the
// certificate files and patches the caBundle of the webhook configurations.
// Call it once before the webhook server starts so that it has a certificate.
// A missing webhook configuration is reported but the files are written.
func (r *Rotator) Sync(ctx context.Context) error {
	b, next, err := r.ensureSecret(ctx)
	if err != nil {
		return err
	}
	// Publish the CA bundle before serving a certificate it newly covers: a
	// fresh install has nothing to break, and a CA rotation only switches the
	// serving certificate after CAPropagation.
	patchErr := r.patchWebhookConfigs(ctx, b.CABundlePEM)
	if patchErr != nil && !errors.Is(patchErr, errConfigMissing) {
		return patchErr
	}
	if err := r.writeFiles(ctx, b); err != nil {
		return err
	}
	r.mu.Lock()
	r.current, r.next = b, next
	r.mu.Unlock()
	return patchErr
}

// Start syncs until ctx ends: at the next renewal time, every ResyncInterval,
// and sooner after a failure.
func (r *Rotator) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("certs")
	ctx = logr.NewContext(ctx, log)
	failures := 0
	for {
		wait := r.opts.ResyncInterval
		err := r.Sync(ctx)
		if err != nil {
			// Back off from retryInterval up to the resync interval.
			wait = min(retryInterval<<min(failures, 10), r.opts.ResyncInterval)
			failures++
			if errors.Is(err, errConfigMissing) {
				log.Info("waiting for the webhook configurations to patch their caBundle", "reason", err.Error(), "retryIn", wait)
			} else {
				log.Error(err, "syncing webhook certificates; retrying", "retryIn", wait)
			}
		} else {
			failures = 0
		}
		// The certificates themselves are current: wake up when the decision
		// may change (a renewal falls due).
		if err == nil || errors.Is(err, errConfigMissing) {
			r.mu.Lock()
			next := r.next
			r.mu.Unlock()
			if until := next.Sub(r.opts.Now()); !next.IsZero() && until < wait {
				wait = max(until, 100*time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// ensureSecret reads the Secret and creates or renews it when needed; it
// returns the bundle and when to check again. Every replica may do so:
// creates and updates are optimistic, and a replica that loses the race reads
// the winner's bundle and decides again.
func (r *Rotator) ensureSecret(ctx context.Context) (*Bundle, time.Time, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("secret", r.opts.Namespace+"/"+r.opts.SecretName)
	key := client.ObjectKey{Namespace: r.opts.Namespace, Name: r.opts.SecretName}
	issue := IssueOptions{CACommonName: "meshrev-webhook-ca", Hosts: r.hosts, CALifetime: r.opts.CALifetime, CertLifetime: r.opts.CertLifetime}
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		var sec corev1.Secret
		err := r.client.Get(ctx, key, &sec)
		found := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, time.Time{}, fmt.Errorf("read certificate secret %s: %w", key, err)
		}
		var b *Bundle
		if found {
			var perr error
			if b, perr = ParseBundle(sec.Data); perr != nil {
				log.Info("certificate secret is not usable; replacing it", "reason", perr.Error())
			}
		}
		now := r.opts.Now()
		rot := Rotation{Propagation: r.opts.CAPropagation}
		if t, err := time.Parse(time.RFC3339, sec.Annotations[AnnotationCASince]); err == nil {
			rot.CASince = t
		}
		plan := Decide(b, r.hosts, now, rot)
		if plan.Action == ActionNone {
			if !b.SignedByCurrentCA() {
				log.V(1).Info("CA rotation in progress", "reason", plan.Reason)
			}
			return b, plan.NextCheck, nil
		}
		next, err := Renew(b, plan, issue, now)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("renew webhook certificates: %w", err)
		}
		if !found {
			sec = corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: key.Namespace, Name: key.Name,
					Labels: map[string]string{"app.kubernetes.io/name": "meshrev", "app.kubernetes.io/component": "webhook-certificates"},
				},
				Type: corev1.SecretTypeTLS,
			}
		}
		sec.Data = next.Data()
		if err := r.setOwner(ctx, &sec); err != nil {
			return nil, time.Time{}, err
		}
		if plan.Action == ActionNewCA {
			metav1.SetMetaDataAnnotation(&sec.ObjectMeta, AnnotationCASince, now.UTC().Format(time.RFC3339))
		}
		if found {
			err = r.client.Update(ctx, &sec)
		} else {
			err = r.client.Create(ctx, &sec)
		}
		switch {
		case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
			log.V(1).Info("another replica changed the certificate secret first; reading it again", "attempt", attempt)
			continue
		case err != nil:
			return nil, time.Time{}, fmt.Errorf("store webhook certificates in secret %s: %w", key, err)
		}
		log.Info("renewed webhook certificates", "action", plan.Action, "reason", plan.Reason,
			"serial", next.Cert().SerialNumber.Text(16), "notAfter", next.Cert().NotAfter, "renewAt", RenewAt(next.Cert()),
			"caSerial", next.CA().SerialNumber.Text(16), "trustedCAs", len(next.Trusted()))
		// Decide again right away: step two of a CA rotation is due later.
		return next, now, nil
	}
	return nil, time.Time{}, fmt.Errorf("certificate secret %s kept changing under %d attempts; is another writer fighting over it?", key, maxAttempts)
}

// writeFiles writes the bundle into the certificate directory, each file
// atomically (temporary file + rename), so that the certwatcher never reads a
// half-written file. It writes the key first: between the two renames the pair
// does not match, the certwatcher keeps serving the previous pair (still
// valid, same CA) and loads the new one on the next event.
func (r *Rotator) writeFiles(ctx context.Context, b *Bundle) error {
	if err := os.MkdirAll(r.opts.CertDir, 0o700); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	changed := false
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyTLSKey, b.KeyPEM, 0o600},
		{KeyTLSCert, b.CertPEM, 0o644},
		{KeyCACert, b.CABundlePEM, 0o644},
	} {
		wrote, err := writeFileAtomic(filepath.Join(r.opts.CertDir, f.name), f.data, f.mode)
		if err != nil {
			return err
		}
		changed = changed || wrote
	}
	if changed {
		logr.FromContextOrDiscard(ctx).Info("wrote webhook certificate files", "dir", r.opts.CertDir, "serial", b.Cert().SerialNumber.Text(16))
	}
	return nil
}

// writeFileAtomic replaces path with data unless it already holds it, and
// reports whether it wrote.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (bool, error) {
	if cur, err := os.ReadFile(path); err == nil && string(cur) == string(data) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}

// patchWebhookConfigs sets caBundle on every webhook of both configurations.
// Patches carry the resourceVersion, so a concurrent edit is retried on the
// next sync instead of overwritten.
func (r *Rotator) patchWebhookConfigs(ctx context.Context, caBundle []byte) error {
	var missing []string
	for _, c := range []webhookConfig{
		mutatingConfig(r.opts.MutatingWebhookConfiguration),
		validatingConfig(r.opts.ValidatingWebhookConfiguration),
	} {
		if c.name == "-" {
			continue
		}
		ok, err := r.patchConfig(ctx, c.kind, c.name, c.obj, func() bool {
			changed := false
			for _, cc := range c.configs() {
				changed = setCABundle(cc, caBundle) || changed
			}
			return changed
		})
		if err != nil {
			return err
		}
		if !ok {
			missing = append(missing, c.kind+" "+c.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %v", errConfigMissing, missing)
	}
	return nil
}

// webhookConfig is one webhook configuration whose client configs carry the caBundle.
type webhookConfig = struct {
	kind, name string
	obj        client.Object
	configs    func() []*admissionregistrationv1.WebhookClientConfig
}

func mutatingConfig(name string) webhookConfig {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	return webhookConfig{kind: "MutatingWebhookConfiguration", name: name, obj: cfg, configs: func() []*admissionregistrationv1.WebhookClientConfig {
		return clientConfigs(cfg.Webhooks, func(w *admissionregistrationv1.MutatingWebhook) *admissionregistrationv1.WebhookClientConfig {
			return &w.ClientConfig
		})
	}}
}

func validatingConfig(name string) webhookConfig {
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	return webhookConfig{kind: "ValidatingWebhookConfiguration", name: name, obj: cfg, configs: func() []*admissionregistrationv1.WebhookClientConfig {
		return clientConfigs(cfg.Webhooks, func(w *admissionregistrationv1.ValidatingWebhook) *admissionregistrationv1.WebhookClientConfig {
			return &w.ClientConfig
		})
	}}
}

// clientConfigs points at the client config of each webhook.
func clientConfigs[W any](webhooks []W, of func(*W) *admissionregistrationv1.WebhookClientConfig) []*admissionregistrationv1.WebhookClientConfig {
	out := make([]*admissionregistrationv1.WebhookClientConfig, len(webhooks))
	for i := range webhooks {
		out[i] = of(&webhooks[i])
	}
	return out
}

// patchConfig reads obj by name, lets mutate change it and patches the
// change; it reports false when obj does not exist.
func (r *Rotator) patchConfig(ctx context.Context, kind, name string, obj client.Object, mutate func() bool) (bool, error) {
	if err := r.client.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("read %s %s: %w", kind, name, err)
	}
	orig := obj.DeepCopyObject().(client.Object)
	if !mutate() {
		return true, nil
	}
	if err := r.client.Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return true, fmt.Errorf("patch caBundle of %s %s: %w", kind, name, err)
	}
	logr.FromContextOrDiscard(ctx).Info("patched caBundle", "kind", kind, "name", name)
	return true, nil
}

func setCABundle(cc *admissionregistrationv1.WebhookClientConfig, caBundle []byte) bool {
	if sameCABundle(cc.CABundle, caBundle) {
		return false
	}
	cc.CABundle = slices.Clone(caBundle)
	return true
}

// setOwner makes the ValidatingWebhookConfiguration the certificate Secret's
// owner, so that removing meshrev (helm uninstall deletes the configuration)
// lets the garbage collector remove the Secret too: the chart cannot own a
// Secret the manager creates. Without that configuration the Secret stays
// unowned until a later write finds it.
func (r *Rotator) setOwner(ctx context.Context, sec *corev1.Secret) error {
	name := r.opts.ValidatingWebhookConfiguration
	if name == "-" || name == "" {
		return nil
	}
	var cfg admissionregistrationv1.ValidatingWebhookConfiguration
	if err := r.client.Get(ctx, client.ObjectKey{Name: name}, &cfg); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("read ValidatingWebhookConfiguration %s to own the certificate secret: %w", name, err)
	}
	for _, ref := range sec.OwnerReferences {
		if ref.UID == cfg.UID {
			return nil
		}
	}
	sec.OwnerReferences = append(sec.OwnerReferences, metav1.OwnerReference{
		APIVersion: admissionregistrationv1.SchemeGroupVersion.String(),
		Kind:       "ValidatingWebhookConfiguration",
		Name:       cfg.Name,
		UID:        cfg.UID,
	})
	return nil
}
