package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Defaults of [ServerLimits]. An AdmissionReview from the API server arrives
// in one piece, within milliseconds, and is well under a MiB; a client that
// is slower or bigger than these is not the API server.
const (
	DefaultReadHeaderTimeout     = 5 * time.Second
	DefaultReadTimeout           = 10 * time.Second
	DefaultWriteTimeout          = 30 * time.Second
	DefaultIdleTimeout           = 60 * time.Second
	DefaultMaxConcurrentRequests = 256
	DefaultMaxInFlightBytes      = 64 << 20
	DefaultMaxRequestBytes       = 8 << 20
	// freeBodyBytes of every request's body are not drawn from the shared
	// in-flight budget: a pod's AdmissionReview (a few KiB) is never refused
	// because large bodies hold the budget. Bounded by MaxConcurrentRequests.
	freeBodyBytes = 64 << 10
	// maxHeaderBytes: the API server sends a handful of short headers.
	maxHeaderBytes = 64 << 10
)

// ServerLimits bounds what one client of the webhook server can hold: time
// (headers, body, idle connections), concurrency, and body bytes. Every
// field has a default; see the Default* constants.
type ServerLimits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, headers and body.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its response.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends nothing.
	IdleTimeout time.Duration
	// MaxConcurrentRequests is how many requests are handled at once; more
	// are answered 429 at once.
	MaxConcurrentRequests int
	// MaxInFlightBytes bounds the body bytes of all requests being handled
	// (beyond each request's first 64 KiB); a request whose announced
	// Content-Length does not fit is answered 429 before its body is read.
	MaxInFlightBytes int64
	// MaxRequestBytes bounds one request body (413 beyond it).
	MaxRequestBytes int64
	// EnableHTTP2 offers HTTP/2 by ALPN. Off by default: Go's HTTP/2 server
	// was subject to the rapid-reset attack (CVE-2023-44487), and the API
	// server speaks HTTP/1.1 to webhooks just as well.
	EnableHTTP2 bool
}

func (l *ServerLimits) complete() {
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = DefaultReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxConcurrentRequests <= 0 {
		l.MaxConcurrentRequests = DefaultMaxConcurrentRequests
	}
	if l.MaxInFlightBytes <= 0 {
		l.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = DefaultMaxRequestBytes
	}
}

// tlsOptions are the TLS settings of the webhook and metrics servers: TLS
// 1.2 at least, and HTTP/1.1 only unless http2 is set.
func tlsOptions(http2 bool) func(*tls.Config) {
	return func(c *tls.Config) {
		c.MinVersion = tls.VersionTLS12
		if http2 {
			c.NextProtos = []string{"h2", "http/1.1"}
		} else {
			c.NextProtos = []string{"http/1.1"}
		}
	}
}

// boundedServer is the webhook server (a controller-runtime webhook.Server):
// TLS from CertDir (reloaded by certwatcher), with the limits of
// ServerLimits applied before any handler runs.
type boundedServer struct {
	host    string
	port    int
	certDir string
	limits  ServerLimits
	// registry is controller-runtime's server, never started: Register
	// through it instruments every hook with controller-runtime's webhook
	// metrics (controller_runtime_webhook_requests_total, ..._latency_seconds),
	// and its mux is what this server serves.
	registry crwebhook.Server
	limiter  *limiter

	mu      sync.Mutex
	started bool
}

var _ crwebhook.Server = (*boundedServer)(nil)

func newBoundedServer(host string, port int, certDir string, limits ServerLimits, reg prometheus.Registerer) (*boundedServer, error) {
	limits.complete()
	l, err := newLimiter(limits, reg)
	if err != nil {
		return nil, err
	}
	registry := crwebhook.NewServer(crwebhook.Options{Host: host, Port: port, CertDir: certDir})
	return &boundedServer{host: host, port: port, certDir: certDir, limits: limits, registry: registry, limiter: l}, nil
}

// NeedLeaderElection is false: every replica serves admission requests.
func (s *boundedServer) NeedLeaderElection() bool { return false }

// Register serves hook at path, instrumented with controller-runtime's
// webhook metrics.
func (s *boundedServer) Register(path string, hook http.Handler) { s.registry.Register(path, hook) }

// WebhookMux returns the server's mux.
func (s *boundedServer) WebhookMux() *http.ServeMux { return s.registry.WebhookMux() }

// Start serves until ctx ends, then drains in-flight requests (bounded by
// the write timeout).
func (s *boundedServer) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("webhook-server")
	cw, err := certwatcher.New(filepath.Join(s.certDir, "tls.crt"), filepath.Join(s.certDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("webhook server certificate: %w", err)
	}
	go func() {
		if err := cw.Start(ctx); err != nil {
			log.Error(err, "certificate watcher stopped")
		}
	}()
	cfg := &tls.Config{GetCertificate: cw.GetCertificate}
	tlsOptions(s.limits.EnableHTTP2)(cfg)
	ln, err := tls.Listen("tcp", net.JoinHostPort(s.host, strconv.Itoa(s.port)), cfg)
	if err != nil {
		return fmt.Errorf("webhook server listen: %w", err)
	}
	srv := &http.Server{
		BaseContext:       func(net.Listener) context.Context { return ctx },
		Handler:           s.limiter.wrap(s.registry.WebhookMux()),
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		ReadTimeout:       s.limits.ReadTimeout,
		WriteTimeout:      s.limits.WriteTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// TLS handshake failures and the like, at debug level: a scanner
		// or a slow client must not flood the log.
		ErrorLog: stdlog.New(logWriter{log.V(1)}, "", 0),
	}
	if !s.limits.EnableHTTP2 {
		// A non-nil empty map turns net/http's automatic HTTP/2 off.
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), s.limits.WriteTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Error(err, "webhook server shutdown")
		}
	}()
	log.Info("serving webhooks", "address", ln.Addr().String(), "http2", s.limits.EnableHTTP2,
		"readHeaderTimeout", s.limits.ReadHeaderTimeout, "readTimeout", s.limits.ReadTimeout, "idleTimeout", s.limits.IdleTimeout,
		"maxConcurrentRequests", s.limits.MaxConcurrentRequests, "maxInFlightBytes", s.limits.MaxInFlightBytes)
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("webhook server: %w", err)
	}
	<-drained
	return nil
}

// StartedChecker is healthy once the server accepts TLS connections.
func (s *boundedServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		s.mu.Lock()
		started := s.started
		s.mu.Unlock()
		if !started {
			return errors.New("webhook server has not been started yet")
		}
		d := &net.Dialer{Timeout: 10 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(s.host, strconv.Itoa(s.port)), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a reachability check of our own listener
		if err != nil {
			return fmt.Errorf("webhook server is not reachable: %w", err)
		}
		return conn.Close()
	}
}

// logWriter adapts logr to the standard library's log.Logger.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// limiter admits a request only when a concurrency slot is free and its body
// fits the in-flight byte budget. It reserves bytes by the announced
// Content-Length (an account, not an allocation) and releases them when the
// handler returns.
type limiter struct {
	limits   ServerLimits
	slots    chan struct{}
	inFlight atomic.Int64
	rejected *prometheus.CounterVec
}

// Reasons counted by meshrev_webhook_rejected_requests_total.
const (
	rejectConcurrency = "concurrency"
	rejectBytes       = "inflight_bytes"
	rejectTooLarge    = "too_large"
	rejectNoLength    = "no_content_length"
)

func newLimiter(limits ServerLimits, reg prometheus.Registerer) (*limiter, error) {
	if reg == nil {
		reg = metrics.Registry
	}
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshrev_webhook_rejected_requests_total",
		Help: "Webhook requests refused before their handler by the server's limits, by reason (concurrency, inflight_bytes, too_large, no_content_length).",
	}, []string{"reason"})
	if err := reg.Register(rejected); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register meshrev_webhook_rejected_requests_total: %w", err)
		}
		rejected = are.ExistingCollector.(*prometheus.CounterVec)
	}
	return &limiter{limits: limits, slots: make(chan struct{}, limits.MaxConcurrentRequests), rejected: rejected}, nil
}

func (l *limiter) reject(w http.ResponseWriter, code int, reason, msg string) {
	l.rejected.WithLabelValues(reason).Inc()
	// The connection is not worth keeping: a client over a limit retries
	// on a new one.
	w.Header().Set("Connection", "close")
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	http.Error(w, "meshrev webhook server: "+msg, code)
}

func (l *limiter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case l.slots <- struct{}{}:
			defer func() { <-l.slots }()
		default:
			l.reject(w, http.StatusTooManyRequests, rejectConcurrency,
				fmt.Sprintf("too many concurrent requests (limit %d); retry", l.limits.MaxConcurrentRequests))
			return
		}
		if r.Method == http.MethodPost || r.ContentLength != 0 {
			switch {
			case r.ContentLength < 0:
				// The API server always announces the length; reading an
				// unannounced body would have nothing to reserve against.
				l.reject(w, http.StatusLengthRequired, rejectNoLength, "a request body needs a Content-Length")
				return
			case r.ContentLength > l.limits.MaxRequestBytes:
				l.reject(w, http.StatusRequestEntityTooLarge, rejectTooLarge,
					fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, l.limits.MaxRequestBytes))
				return
			}
			if charge := r.ContentLength - freeBodyBytes; charge > 0 {
				if l.inFlight.Add(charge) > l.limits.MaxInFlightBytes {
					l.inFlight.Add(-charge)
					l.reject(w, http.StatusTooManyRequests, rejectBytes,
						fmt.Sprintf("too many request body bytes in flight (limit %d); retry", l.limits.MaxInFlightBytes))
					return
				}
				defer l.inFlight.Add(-charge)
			}
			// net/http already stops the body at Content-Length; this also
			// stops a handler that would read more than the limit.
			r.Body = http.MaxBytesReader(w, r.Body, l.limits.MaxRequestBytes)
		}
		next.ServeHTTP(w, r)
	})
}
