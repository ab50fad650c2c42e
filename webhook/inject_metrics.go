package webhook

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshrev/meshrev/revisions"
)

// Results counted by meshrev_injections_total.
const (
	resultInjected = "injected"
	resultSkipped  = "skipped"
	resultDenied   = "denied"
	resultError    = "error"
)

// injectorMetrics are the injector's own metrics.
//
// controller-runtime's webhook server instruments the injector too
// (controller_runtime_webhook_latency_seconds and _requests_total with
// webhook="/inject"), but only by path and HTTP code: a refusal is an HTTP
// 200 AdmissionReview there, and its latency buckets are a decade apart
// (10ns·10^k), one bucket for everything between 10µs and 100µs, where a
// typical admission lies. So meshrev keeps its own latency histogram with
// buckets across the injector's range, and its counter carries what
// controller-runtime cannot know: the revision, the result and the
// decision's reason (as Linkerd's injector counter does).
type injectorMetrics struct {
	// injections counts admissions by revision, result and reason.
	injections *prometheus.CounterVec
	// latency observes every request, whatever its outcome.
	latency prometheus.Histogram
	// templateErrors counts admissions whose templates did not render.
	templateErrors *prometheus.CounterVec
	// templatesDegraded is 1 per revision while its pods get a fallback
	// render (last good or built-in).
	templatesDegraded *prometheus.GaugeVec
}

// newInjectorMetrics registers the injector's metrics with reg.
func newInjectorMetrics(reg prometheus.Registerer) (*injectorMetrics, error) {
	injections, err := register(reg, "meshrev_injections_total", prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshrev_injections_total",
		Help: "Pod admission requests handled by the injector, by resolved revision, result (injected, skipped, denied, error) and reason (the decision's row: SystemNamespace, HostNetwork, PodOptOut, NamespaceDisabled, PodRevisionLabel, NamespaceInjectionEnabled, NamespaceRevisionLabel, PodInjectLabel, NotSelected, UnknownRevision, NoMesh; empty when the request was refused before a decision).",
	}, []string{"revision", "result", "reason"}))
	if err != nil {
		return nil, err
	}
	latency, err := register(reg, "meshrev_injection_duration_seconds", prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "meshrev_injection_duration_seconds",
		Help:    "Time the injector takes to handle one HTTP request, from request body to response body, whatever the outcome (malformed, too large, refused, admitted).",
		Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3},
	}))
	if err != nil {
		return nil, err
	}
	templateErrors, err := register(reg, "meshrev_template_errors_total", prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshrev_template_errors_total",
		Help: "Pod admissions whose revision's templates could not be read or rendered, by revision: injected with the last good render, or refused when there was none.",
	}, []string{"revision"}))
	if err != nil {
		return nil, err
	}
	templatesDegraded, err := register(reg, "meshrev_templates_degraded", prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "meshrev_templates_degraded",
		Help: "1 while a revision's templates do not render and its pods are injected with their last good render or the built-in templates; 0 once they render again.",
	}, []string{"revision"}))
	if err != nil {
		return nil, err
	}
	return &injectorMetrics{injections: injections, latency: latency, templateErrors: templateErrors, templatesDegraded: templatesDegraded}, nil
}

// register registers c, or returns the collector already registered under
// its name: several injectors (tests, a restarted server) share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, name string, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register %s: %w", name, err)
}

// count counts one admission; reason is empty when the request was refused
// before a decision.
func (i *Injector) count(rev, result string, reason revisions.Reason) {
	i.metrics.injections.WithLabelValues(rev, result, string(reason)).Inc()
}
