package manager

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Leader-election timings when Options leave them zero (controller-runtime's).
const (
	defaultLeaseDuration = 15 * time.Second
	defaultRenewDeadline = 10 * time.Second
	defaultRetryPeriod   = 2 * time.Second
)

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
	cs, err := kubernetes.NewForConfig(rest.AddUserAgent(rest.CopyConfig(l.cfg), "meshrev-leader-election"))
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
