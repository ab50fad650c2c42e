package manager

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Leader-election timings when Options leave them zero. The leader renews
// its Lease every RetryPeriod: one write every 5 s whatever the load (12 a
// minute, against 30 with controller-runtime's 2 s), a standby takes over
// within 30 s of a leader that vanished without releasing the Lease (a
// leader that stops releases it at once), and an API outage up to 20 s
// does not end the term. Only the controller waits for a leader; every
// replica serves the webhooks.
const (
	defaultLeaseDuration = 30 * time.Second
	defaultRenewDeadline = 20 * time.Second
	defaultRetryPeriod   = 5 * time.Second
)

// leaseWrites counts the leader election's writes (the Lease's renewals,
// acquisitions and release): fixed per minute, not per pod, so the scale
// benchmark reports them apart from the writes the cluster's changes cause.
var leaseWrites = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "meshrev_leader_election_writes_total",
	Help: "Writes (POST, PUT, PATCH, DELETE) of the leader election: the Lease's renewals, every RetryPeriod.",
})

func init() { ctrlmetrics.Registry.MustRegister(leaseWrites) }

// countWrites counts the writes that go through rt in leaseWrites.
type countWrites struct{ rt http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (c countWrites) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		leaseWrites.Inc()
	}
	return c.rt.RoundTrip(req)
}

// leaderTerms runs the controller on the elected leader, one leadership
// term after another. Unlike controller-runtime's leader election, losing
// the Lease (an API server or etcd outage longer than the renew deadline)
// ends only the term: the controller stops, the process — and with it the
// webhook server and the informer caches every admission answer comes from
// — keeps running, and campaigns again. A controller cannot be started
// twice, so each term gets a new one from newTerm.
type leaderTerms struct {
	cfg       *rest.Config
	namespace string
	name      string
	lease     time.Duration
	renew     time.Duration
	retry     time.Duration
	// newTerm returns what runs while this replica leads; it returns when
	// its ctx ends.
	newTerm func() (func(ctx context.Context) error, error)
}

// NeedLeaderElection is false: this runnable does its own election.
func (l *leaderTerms) NeedLeaderElection() bool { return false }

// Start campaigns until ctx ends.
func (l *leaderTerms) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("leader-election")
	cfg := rest.AddUserAgent(rest.CopyConfig(l.cfg), "meshrev-leader-election")
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countWrites{rt: rt} })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("leader election client: %w", err)
	}
	host, _ := os.Hostname()
	id := host + "_" + uuid.NewString()
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, l.namespace, l.name, cs.CoreV1(), cs.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	for term := 1; ctx.Err() == nil; term++ {
		var begun atomic.Bool
		done := make(chan struct{})
		// The election's ctx ends only after this term's controller has
		// stopped, so that the Lease is released (ReleaseOnCancel) after,
		// not before, the controller's last write.
		leCtx, leCancel := context.WithCancel(context.WithoutCancel(ctx))
		go func() {
			select {
			case <-ctx.Done():
				if begun.Load() {
					<-done
				}
			case <-done:
			}
			leCancel()
		}()
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   l.lease,
			RenewDeadline:   l.renew,
			RetryPeriod:     l.retry,
			ReleaseOnCancel: true,
			Name:            l.name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(termCtx context.Context) {
					begun.Store(true)
					defer close(done)
					termCtx, cancel := context.WithCancel(termCtx)
					defer cancel()
					go func() {
						select {
						case <-ctx.Done():
							cancel()
						case <-termCtx.Done():
						}
					}()
					log.Info("leading: starting the controller", "identity", id, "term", term)
					run, err := l.newTerm()
					if err != nil {
						log.Error(err, "cannot start the controller for this term")
						<-termCtx.Done()
						return
					}
					if err := run(termCtx); err != nil {
						log.Error(err, "controller stopped with an error", "term", term)
					}
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			leCancel()
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(leCtx)
		if begun.Load() {
			// The term's ctx is cancelled; its controller stops before
			// this replica campaigns again, so two never overlap here.
			<-done
		}
		leCancel()
		if ctx.Err() == nil {
			log.Info("lost leadership: the controller stopped, the webhooks keep serving; campaigning again", "identity", id, "term", term)
		}
	}
	return nil
}
