package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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
	// DefaultMaxConnections: an idle TLS connection costs the server some
	// tens of KiB; 1024 of them stay far below the chart's memory limit.
	DefaultMaxConnections = 1024
	// DefaultMaxPendingConnectionsPerIP: the API server completes a request
	// on a new connection within milliseconds, so its slots turn over
	// quickly even in a burst; a client that holds connections without
	// completing requests holds at most this many per address.
	DefaultMaxPendingConnectionsPerIP = 64
	// DefaultMaxConcurrentHandshakes leaves CPU for the requests of
	// connections that are already up.
	DefaultMaxConcurrentHandshakes = 8
	DefaultHandshakeTimeout        = 5 * time.Second
	// DefaultHandshakesPerSecondPerIP: a handshake costs about a
	// millisecond of CPU, so one address takes at most a tenth of a core;
	// the API server reuses its connections and needs far fewer.
	DefaultHandshakesPerSecondPerIP = 100
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
	// MaxConnections bounds the open connections. When full, a new
	// connection takes the place of the oldest connection waiting for a
	// pending slot of the address with the most waiting ones; with none
	// waiting it is closed at once, before its TLS handshake.
	MaxConnections int
	// MaxPendingConnectionsPerIP bounds, per remote address, the
	// connections that have not yet completed a request (handshaking or
	// reading their first one). More wait for a slot without costing CPU,
	// until HandshakeTimeout. Connections that have completed a request are
	// not counted.
	MaxPendingConnectionsPerIP int
	// MaxConcurrentHandshakes bounds the TLS handshakes run at once.
	MaxConcurrentHandshakes int
	// HandshakesPerSecondPerIP bounds the TLS handshakes one remote address
	// starts a second (bursts of twice as many); a connection whose turn
	// would come after HandshakeTimeout is closed before any TLS.
	HandshakesPerSecondPerIP int
	// HandshakeTimeout bounds waiting for a pending slot and the TLS
	// handshake, from the moment a connection is accepted.
	HandshakeTimeout time.Duration
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
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxPendingConnectionsPerIP <= 0 {
		l.MaxPendingConnectionsPerIP = DefaultMaxPendingConnectionsPerIP
	}
	if l.MaxConcurrentHandshakes <= 0 {
		l.MaxConcurrentHandshakes = DefaultMaxConcurrentHandshakes
	}
	if l.HandshakesPerSecondPerIP <= 0 {
		l.HandshakesPerSecondPerIP = DefaultHandshakesPerSecondPerIP
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
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
	raw, err := net.Listen("tcp", net.JoinHostPort(s.host, strconv.Itoa(s.port)))
	if err != nil {
		return fmt.Errorf("webhook server listen: %w", err)
	}
	ln := newGuardedListener(raw, cfg, s.limits, s.limiter.rejectedConns)
	srv := &http.Server{
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, guardedConnKey{}, connOf(c))
		},
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
		"maxConcurrentRequests", s.limits.MaxConcurrentRequests, "maxInFlightBytes", s.limits.MaxInFlightBytes,
		"maxConnections", s.limits.MaxConnections, "maxPendingConnectionsPerIP", s.limits.MaxPendingConnectionsPerIP,
		"maxConcurrentHandshakes", s.limits.MaxConcurrentHandshakes,
		"handshakesPerSecondPerIP", s.limits.HandshakesPerSecondPerIP, "handshakeTimeout", s.limits.HandshakeTimeout)
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
	// rejectedConns counts connections the listener closed unserved.
	rejectedConns *prometheus.CounterVec
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
	rejectedConns, err := registerCounter(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshrev_webhook_rejected_connections_total",
		Help: "Webhook server connections closed before any request by the listener's limits, by reason (max_connections, evicted, per_ip_rate, handshake_timeout).",
	}, []string{"reason"}))
	if err != nil {
		return nil, err
	}
	return &limiter{limits: limits, slots: make(chan struct{}, limits.MaxConcurrentRequests), rejected: rejected, rejectedConns: rejectedConns}, nil
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
		body := &eofReader{ReadCloser: r.Body}
		r.Body = body
		next.ServeHTTP(w, r)
		// A request read whole and answered: its connection is no longer
		// pending (guardedListener). A body cut short by a timeout does not
		// count.
		if r.ContentLength == 0 || body.eof {
			proveRequest(r)
		}
	})
}

// eofReader records that a request body was read to its end.
type eofReader struct {
	io.ReadCloser
	eof bool
}

func (b *eofReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

// registerCounter registers c, or returns the counter already registered
// under its name.
func registerCounter(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register webhook server metric: %w", err)
		}
		return are.ExistingCollector.(*prometheus.CounterVec), nil
	}
	return c, nil
}
