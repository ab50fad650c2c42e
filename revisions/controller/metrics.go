package controller

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// controllerMetrics are the controller's own metrics, beside
// controller-runtime's reconcile metrics.
type controllerMetrics struct {
	// statusWrites counts Mesh status writes.
	statusWrites prometheus.Counter
	// statusConflicts counts status writes refused with 409 Conflict.
	statusConflicts prometheus.Counter
	// controlPlaneApplies counts the server-side applies of control-plane
	// Deployments and Services (only when they differ from what is wanted).
	controlPlaneApplies prometheus.Counter
	// namespacesRefreshed counts the namespaces whose pods a reconcile read
	// again: what the status costs, in proportion to what changed.
	namespacesRefreshed prometheus.Counter
	// computeSeconds is the time a reconcile spends on the status itself
	// (reading the changed namespaces from the cache, merging, computing),
	// without its API round trips.
	computeSeconds prometheus.Histogram
}

func newControllerMetrics(reg prometheus.Registerer) (*controllerMetrics, error) {
	counter := func(name, help string) (prometheus.Counter, error) {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		if err := reg.Register(c); err != nil {
			// A second manager in one process (tests) shares the counter.
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
					return existing, nil
				}
			}
			return nil, fmt.Errorf("register metric %s: %w", name, err)
		}
		return c, nil
	}
	var m controllerMetrics
	var err error
	if m.statusWrites, err = counter("meshrev_status_writes_total", "Mesh status writes by the controller."); err != nil {
		return nil, err
	}
	if m.statusConflicts, err = counter("meshrev_status_conflicts_total", "Mesh status writes refused with 409 Conflict (logged as warnings)."); err != nil {
		return nil, err
	}
	if m.controlPlaneApplies, err = counter("meshrev_controlplane_applies_total", "Server-side applies of image control planes' Deployments and Services (written only when they differ)."); err != nil {
		return nil, err
	}
	if m.namespacesRefreshed, err = counter("meshrev_dataplane_namespaces_refreshed_total", "Namespaces whose injected pods the controller read again for the data-plane report."); err != nil {
		return nil, err
	}
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meshrev_status_compute_seconds",
		Help:    "Time a reconcile spends computing the Mesh status from the cache, without API round trips.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)})
	if err := reg.Register(h); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register metric meshrev_status_compute_seconds: %w", err)
		}
		existing, ok := are.ExistingCollector.(prometheus.Histogram)
		if !ok {
			return nil, fmt.Errorf("register metric meshrev_status_compute_seconds: %w", err)
		}
		h = existing
	}
	m.computeSeconds = h
	return &m, nil
}
