package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
)

// upgrader restarts workloads keeping at most inFlight rollouts going (0:
// all at once) and follows them, each within rolloutTimeout and all within
// overall (0: no limit).
type upgrader struct {
	c   client.Client
	out io.Writer
	// inFlight is --batch: how many rollouts run at once (0: all).
	inFlight int
	// follow waits for the rollouts (--wait, or --batch, which needs to know
	// when one finishes to start the next); without it the restarts are
	// sent and the command returns.
	follow bool
	// rolloutTimeout bounds each rollout, from its restart.
	rolloutTimeout time.Duration
	// overall bounds the whole upgrade (0: none).
	overall time.Duration
	// at is the restartedAt value the restarts write.
	at string
	// interval is how often rollouts are polled.
	interval time.Duration
	// now is the clock (time.Now when nil).
	now func() time.Time
}

// flight is one rollout being followed.
type flight struct {
	rolloutTarget
	started time.Time
	last    string
}

// progress counts what an upgrade did, for the progress lines.
type progress struct {
	start       time.Time
	done, total int
}

// line says how far the upgrade is: done of total, throughput and an
// estimate of the time left at that throughput.
func (p progress) line(now time.Time) string {
	elapsed := now.Sub(p.start)
	s := fmt.Sprintf("[%d/%d]", p.done, p.total)
	if p.done == 0 || elapsed <= 0 {
		return s
	}
	rate := float64(p.done) / elapsed.Seconds()
	eta := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
	return fmt.Sprintf("%s %s elapsed, %.2f workloads/s, about %s left", s, elapsed.Truncate(time.Second), rate, eta.Round(time.Second))
}

func (u *upgrader) clock() time.Time {
	if u.now != nil {
		return u.now()
	}
	return time.Now()
}

// run upgrades todo.
func (u *upgrader) run(ctx context.Context, todo []workloadRef) error {
	p := progress{start: u.clock(), total: len(todo)}
	var deadline <-chan time.Time
	if u.overall > 0 {
		t := time.NewTimer(u.overall)
		defer t.Stop()
		deadline = t.C
	}
	limit := u.inFlight
	if limit <= 0 || !u.follow {
		limit = len(todo)
	}
	var flying []*flight
	next := 0
	tick := time.NewTicker(u.interval)
	defer tick.Stop()
	for {
		// Start rollouts up to the limit.
		for next < len(todo) && len(flying) < limit {
			w := todo[next]
			next++
			f, err := u.start(ctx, w)
			if err != nil {
				return fmt.Errorf("%w; %d of %d workloads rolled out, rerun to continue", err, p.done, p.total)
			}
			flying = append(flying, f)
		}
		if !u.follow {
			return nil
		}
		// Follow them.
		var still []*flight
		for _, f := range flying {
			obj, err := newWorkloadObject(f.ref.Kind)
			if err != nil {
				return err
			}
			if err := u.c.Get(ctx, types.NamespacedName{Namespace: f.ref.Namespace, Name: f.ref.Name}, obj); err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("stopped waiting for %s in %s (%d of %d workloads rolled out; rerun to continue): %w", f.ref, f.ref.Namespace, p.done, p.total, ctx.Err())
				}
				return fmt.Errorf("follow %s in %s: %w", f.ref, f.ref.Namespace, err)
			}
			st, err := rolloutStatus(obj, f.generation)
			if err != nil {
				return fmt.Errorf("%s in %s: %w; %d of %d workloads rolled out", f.ref, f.ref.Namespace, err, p.done, p.total)
			}
			now := u.clock()
			if st.Done {
				p.done++
				fmt.Fprintf(u.out, "%s %s in %s rolled out in %s: %s\n", p.line(now), f.ref, f.ref.Namespace, now.Sub(f.started).Round(time.Second), st)
				continue
			}
			if now.Sub(f.started) > u.rolloutTimeout {
				return fmt.Errorf("timed out waiting for %s in %s after %s (--timeout, per rollout): %s; %d of %d workloads rolled out; check it with kubectl rollout status -n %s %s, then rerun to continue",
					f.ref, f.ref.Namespace, u.rolloutTimeout, st, p.done, p.total, f.ref.Namespace, f.ref)
			}
			f.last = st.String()
			still = append(still, f)
		}
		flying = still
		overallErr := func() error {
			waiting := ""
			if len(flying) > 0 {
				waiting = fmt.Sprintf(" waiting for %s in %s: %s;", flying[0].ref, flying[0].ref.Namespace, flying[0].last)
			}
			return fmt.Errorf("timed out after %s (--overall-timeout)%s %d of %d workloads rolled out; rerun to continue", u.overall, waiting, p.done, p.total)
		}
		if len(flying) == 0 {
			if next == len(todo) {
				return nil
			}
			// Every rollout in flight finished: start the next ones now.
			select {
			case <-deadline:
				return overallErr()
			default:
				continue
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped (%d of %d workloads rolled out; rerun to continue): %w", p.done, p.total, ctx.Err())
		case <-deadline:
			return overallErr()
		case <-tick.C:
		}
	}
}

// start restarts w, or, when a restart of w is still rolling out (an
// earlier run was interrupted), follows that one instead of restarting it
// again.
func (u *upgrader) start(ctx context.Context, w workloadRef) (*flight, error) {
	obj, err := newWorkloadObject(w.Kind)
	if err != nil {
		return nil, err
	}
	if err := u.c.Get(ctx, types.NamespacedName{Namespace: w.Namespace, Name: w.Name}, obj); err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", w, w.Namespace, err)
	}
	if templateAnnotations(obj)[revisions.AnnotationRestartedAt] != "" {
		if st, err := rolloutStatus(obj, obj.GetGeneration()); err == nil && !st.Done {
			fmt.Fprintf(u.out, "%s in %s is still rolling out from an earlier restart: following it\n", w, w.Namespace)
			return &flight{rolloutTarget: rolloutTarget{ref: w, generation: obj.GetGeneration()}, started: u.clock()}, nil
		}
	}
	gen, err := restart(ctx, u.c, w, u.at)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(u.out, "%s in %s restarted\n", w, w.Namespace)
	return &flight{rolloutTarget: rolloutTarget{ref: w, generation: gen}, started: u.clock()}, nil
}
