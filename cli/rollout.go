package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// rolloutProgress is where one workload's rollout stands.
type rolloutProgress struct {
	// Done is true when every replica runs the new template and is available.
	Done bool
	// Updated, Ready and Desired count replicas.
	Updated, Ready, Desired int32
	// Waiting says what the rollout waits for, when not done.
	Waiting string
	// Unobserved is true while the workload's controller has not seen the
	// change: the replica counts still describe the previous rollout.
	Unobserved bool
}

func (p rolloutProgress) String() string {
	if p.Unobserved {
		return p.Waiting
	}
	s := fmt.Sprintf("%d/%d updated, %d/%d ready", p.Updated, p.Desired, p.Ready, p.Desired)
	if !p.Done && p.Waiting != "" {
		s += " (" + p.Waiting + ")"
	}
	return s
}

// errRolloutFailed marks a rollout that cannot finish on its own.
var errRolloutFailed = errors.New("rollout failed")

// rolloutStatus says where a workload's rollout stands once its controller
// has seen generation; the checks are those of "kubectl rollout status".
func rolloutStatus(obj client.Object, generation int64) (rolloutProgress, error) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		desired := int32(1)
		if o.Spec.Replicas != nil {
			desired = *o.Spec.Replicas
		}
		p := rolloutProgress{Updated: o.Status.UpdatedReplicas, Ready: o.Status.ReadyReplicas, Desired: desired}
		if o.Status.ObservedGeneration < max(generation, o.Generation) {
			p.Waiting, p.Unobserved = "the deployment controller has not seen the change yet", true
			return p, nil
		}
		for _, c := range o.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
				return p, fmt.Errorf("%w: deployment %s exceeded its progress deadline: %s", errRolloutFailed, o.Name, c.Message)
			}
		}
		switch {
		case o.Status.UpdatedReplicas < desired:
			p.Waiting = "new replicas are being created"
		case o.Status.Replicas > o.Status.UpdatedReplicas:
			p.Waiting = fmt.Sprintf("%d old replicas are pending termination", o.Status.Replicas-o.Status.UpdatedReplicas)
		case o.Status.AvailableReplicas < o.Status.UpdatedReplicas:
			p.Waiting = "updated replicas are not available yet"
		default:
			p.Done = true
		}
		return p, nil
	case *appsv1.StatefulSet:
		desired := int32(1)
		if o.Spec.Replicas != nil {
			desired = *o.Spec.Replicas
		}
		p := rolloutProgress{Updated: o.Status.UpdatedReplicas, Ready: o.Status.ReadyReplicas, Desired: desired}
		if o.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
			return p, fmt.Errorf("%w: statefulset %s uses the OnDelete update strategy, so a restart does not replace its pods; delete them to upgrade", errRolloutFailed, o.Name)
		}
		if o.Status.ObservedGeneration < max(generation, o.Generation) {
			p.Waiting, p.Unobserved = "the statefulset controller has not seen the change yet", true
			return p, nil
		}
		switch {
		case o.Status.ReadyReplicas < desired:
			p.Waiting = "replicas are not ready yet"
		case o.Spec.UpdateStrategy.RollingUpdate != nil && o.Spec.UpdateStrategy.RollingUpdate.Partition != nil:
			if o.Status.UpdatedReplicas < desired-*o.Spec.UpdateStrategy.RollingUpdate.Partition {
				p.Waiting = "partitioned roll out in progress"
			} else {
				p.Done = true
			}
		case o.Status.UpdateRevision != o.Status.CurrentRevision:
			p.Waiting = "replicas are being updated"
		default:
			p.Done = true
		}
		return p, nil
	case *appsv1.DaemonSet:
		p := rolloutProgress{Updated: o.Status.UpdatedNumberScheduled, Ready: o.Status.NumberReady, Desired: o.Status.DesiredNumberScheduled}
		if o.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
			return p, fmt.Errorf("%w: daemonset %s uses the OnDelete update strategy, so a restart does not replace its pods; delete them to upgrade", errRolloutFailed, o.Name)
		}
		if o.Status.ObservedGeneration < max(generation, o.Generation) {
			p.Waiting, p.Unobserved = "the daemonset controller has not seen the change yet", true
			return p, nil
		}
		switch {
		case o.Status.UpdatedNumberScheduled < o.Status.DesiredNumberScheduled:
			p.Waiting = "pods are being updated"
		case o.Status.NumberAvailable < o.Status.DesiredNumberScheduled:
			p.Waiting = "updated pods are not available yet"
		default:
			p.Done = true
		}
		return p, nil
	}
	return rolloutProgress{}, fmt.Errorf("cannot follow the rollout of %T", obj)
}

// rolloutTarget is a restarted workload and the generation its rollout must reach.
type rolloutTarget struct {
	ref        workloadRef
	generation int64
}

// rolloutWaiter follows rollouts and prints progress lines.
type rolloutWaiter struct {
	c        client.Reader
	out      io.Writer
	interval time.Duration
	// deadline ends the wait (--timeout). It is kept apart from the
	// requests' context so that a request cut short by it is reported as
	// the timeout it is, naming the workload.
	deadline time.Time
	// done and total count workloads across batches, for the progress lines.
	done, total int
}

// newRolloutWaiter returns a waiter for total workloads that gives up after timeout.
func newRolloutWaiter(c client.Reader, out io.Writer, total int, timeout time.Duration) *rolloutWaiter {
	return &rolloutWaiter{c: c, out: out, interval: pollInterval, deadline: time.Now().Add(timeout), total: total}
}

// wait follows the rollouts of targets until all are done. It stops at the
// first rollout that fails, at the deadline, or when ctx ends (interrupt),
// and says which workload it was waiting for.
func (rw *rolloutWaiter) wait(ctx context.Context, targets []rolloutTarget) error {
	pending := append([]rolloutTarget(nil), targets...)
	last := map[workloadRef]string{}
	tick := time.NewTicker(rw.interval)
	defer tick.Stop()
	expired := time.NewTimer(time.Until(rw.deadline))
	defer expired.Stop()
	for {
		var still []rolloutTarget
		for _, t := range pending {
			obj, err := newWorkloadObject(t.ref.Kind)
			if err != nil {
				return err
			}
			if err := rw.c.Get(ctx, types.NamespacedName{Namespace: t.ref.Namespace, Name: t.ref.Name}, obj); err != nil {
				if ctx.Err() != nil {
					return rw.stopped(ctx, t)
				}
				return fmt.Errorf("follow %s in %s: %w", t.ref, t.ref.Namespace, err)
			}
			p, err := rolloutStatus(obj, t.generation)
			if err != nil {
				return fmt.Errorf("%s in %s: %w", t.ref, t.ref.Namespace, err)
			}
			if p.Done {
				rw.done++
				fmt.Fprintf(rw.out, "[%d/%d] %s in %s rolled out: %s\n", rw.done, rw.total, t.ref, t.ref.Namespace, p)
				continue
			}
			if line := p.String(); line != last[t.ref] {
				last[t.ref] = line
				fmt.Fprintf(rw.out, "[%d/%d] waiting for %s in %s: %s\n", rw.done, rw.total, t.ref, t.ref.Namespace, line)
			}
			still = append(still, t)
		}
		pending = still
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return rw.stopped(ctx, pending[0])
		case <-expired.C:
			t := pending[0]
			return fmt.Errorf("timed out waiting for %s in %s: %s; %d of %d workloads rolled out; check it with kubectl rollout status -n %s %s",
				t.ref, t.ref.Namespace, last[t.ref], rw.done, rw.total, t.ref.Namespace, t.ref)
		case <-tick.C:
		}
	}
}

func (rw *rolloutWaiter) stopped(ctx context.Context, t rolloutTarget) error {
	return fmt.Errorf("stopped waiting for %s in %s (%d of %d workloads rolled out): %w", t.ref, t.ref.Namespace, rw.done, rw.total, ctx.Err())
}
