package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Reasons counted by meshrev_webhook_rejected_connections_total.
const (
	rejectConnTotal     = "max_connections"
	rejectConnEvicted   = "evicted"
	rejectConnHandshake = "handshake_timeout"
	rejectConnRate      = "per_ip_rate"
)

// guardedListener is the webhook server's listener. It bounds what clients
// can hold before they have completed a request, and spends CPU on a TLS
// handshake only within those bounds:
//
//   - a remote address has at most MaxPendingConnectionsPerIP connections
//     handshaking or reading their first request ("pending"); more wait,
//     costing no CPU, for a slot until HandshakeTimeout after they were
//     accepted;
//   - at most MaxConnections are open; when full, a new connection takes
//     the place of the oldest connection waiting for a slot of the address
//     with the most waiting ones (an address that floods the server loses
//     its own first), and is closed at once, before any TLS, when none
//     waits;
//   - a remote address starts at most HandshakesPerSecondPerIP handshakes a
//     second (bursts of twice that); a connection whose turn would come
//     after HandshakeTimeout is closed at once, before any TLS;
//   - at most MaxConcurrentHandshakes handshakes run at once, each done by
//     HandshakeTimeout after its connection was accepted.
//
// A connection that has completed a request (the limiter calls prove) no
// longer counts as pending: the API server's kept-alive connections never
// compete with clients that have never finished one, and a burst of new
// connections from one address is queued, not refused.
type guardedListener struct {
	inner  net.Listener
	tls    *tls.Config
	limits ServerLimits

	ready      chan net.Conn
	errc       chan error
	done       chan struct{}
	closeOnce  sync.Once
	handshakes chan struct{}
	rejected   *prometheus.CounterVec

	mu    sync.Mutex
	open  int
	perIP map[string]*ipSlots
}

// ipSlots are one remote address's pending slots and waiting connections.
type ipSlots struct {
	slots chan struct{}
	rate  *rate.Limiter
	// waiting are the connections waiting for a slot, oldest first.
	waiting []*guardedConn
	refs    int
}

// unwaitLocked removes c from the waiting connections.
func (st *ipSlots) unwaitLocked(c *guardedConn) {
	if i := slices.Index(st.waiting, c); i >= 0 {
		st.waiting = slices.Delete(st.waiting, i, i+1)
	}
}

func newGuardedListener(inner net.Listener, cfg *tls.Config, limits ServerLimits, rejected *prometheus.CounterVec) *guardedListener {
	l := &guardedListener{
		inner: inner, tls: cfg, limits: limits,
		ready: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{}),
		handshakes: make(chan struct{}, limits.MaxConcurrentHandshakes),
		rejected:   rejected,
		perIP:      map[string]*ipSlots{},
	}
	go l.acceptLoop()
	return l
}

func (l *guardedListener) acceptLoop() {
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			select {
			case l.errc <- err:
			case <-l.done:
			}
			return
		}
		go l.admit(raw)
	}
}

// admit applies the bounds to one accepted connection and hands it,
// handshaken, to Accept.
func (l *guardedListener) admit(raw net.Conn) {
	deadline := time.Now().Add(l.limits.HandshakeTimeout)
	ip := remoteIP(raw)
	l.mu.Lock()
	if l.open >= l.limits.MaxConnections && !l.evictLocked() {
		l.mu.Unlock()
		l.reject(raw, rejectConnTotal)
		return
	}
	st := l.perIP[ip]
	if st == nil {
		st = &ipSlots{
			slots: make(chan struct{}, l.limits.MaxPendingConnectionsPerIP),
			rate:  rate.NewLimiter(rate.Limit(l.limits.HandshakesPerSecondPerIP), 2*l.limits.HandshakesPerSecondPerIP),
		}
		l.perIP[ip] = st
	}
	c := &guardedConn{Conn: raw, l: l, ip: ip, st: st, evicted: make(chan struct{})}
	l.open++
	st.refs++
	st.waiting = append(st.waiting, c)
	l.mu.Unlock()

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case st.slots <- struct{}{}:
		l.mu.Lock()
		if c.evictedLocked() {
			// Evicted while taking the slot: give it back.
			l.mu.Unlock()
			<-st.slots
			_ = c.Close()
			return
		}
		st.unwaitLocked(c)
		c.holdsSlot = true
		l.mu.Unlock()
	case <-c.evicted:
		l.rejected.WithLabelValues(rejectConnEvicted).Inc()
		_ = c.Close()
		return
	case <-timer.C:
		l.mu.Lock()
		st.unwaitLocked(c)
		l.mu.Unlock()
		l.rejected.WithLabelValues(rejectConnHandshake).Inc()
		_ = c.Close()
		return
	case <-l.done:
		l.mu.Lock()
		st.unwaitLocked(c)
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	// Handshakes cost CPU: an address gets a bounded rate of them. Wait
	// fails at once when the turn would come after the deadline.
	wctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := st.rate.Wait(wctx)
	cancel()
	if err != nil {
		l.rejected.WithLabelValues(rejectConnRate).Inc()
		_ = c.Close()
		return
	}
	select {
	case l.handshakes <- struct{}{}:
	case <-timer.C:
		l.rejected.WithLabelValues(rejectConnHandshake).Inc()
		_ = c.Close()
		return
	case <-l.done:
		_ = c.Close()
		return
	}
	tc := tls.Server(c, l.tls)
	hctx, hcancel := context.WithDeadline(context.Background(), deadline)
	err = tc.HandshakeContext(hctx)
	hcancel()
	<-l.handshakes
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			l.rejected.WithLabelValues(rejectConnHandshake).Inc()
		}
		_ = tc.Close()
		return
	}
	select {
	case l.ready <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

// evictLocked makes room for a new connection when the listener is full:
// it closes the oldest connection waiting for a pending slot of the address
// with the most of them. An address that floods the server thus loses its
// own waiting connections first, never another address's. False when no
// connection waits.
func (l *guardedListener) evictLocked() bool {
	var most *ipSlots
	for _, st := range l.perIP {
		if len(st.waiting) > 0 && (most == nil || len(st.waiting) > len(most.waiting)) {
			most = st
		}
	}
	if most == nil {
		return false
	}
	c := most.waiting[0]
	most.unwaitLocked(c)
	close(c.evicted)
	// c's Close gives its place back; count the newcomer in the meantime
	// as taking it.
	l.open--
	c.uncounted = true
	return true
}

func (l *guardedListener) reject(raw net.Conn, reason string) {
	l.rejected.WithLabelValues(reason).Inc()
	_ = raw.Close()
}

// Accept returns the next handshaken connection (a *tls.Conn).
func (l *guardedListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections already handed out stay open.
func (l *guardedListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// Addr is the listening address.
func (l *guardedListener) Addr() net.Addr { return l.inner.Addr() }

// guardedConn is an accepted TCP connection under the listener's account.
type guardedConn struct {
	net.Conn
	l  *guardedListener
	ip string
	st *ipSlots

	// evicted is closed when the listener, full, evicts the connection
	// while it waits for a slot.
	evicted chan struct{}
	// holdsSlot, proven and uncounted are guarded by l.mu.
	holdsSlot bool
	proven    bool
	// uncounted: eviction already took the connection out of l.open.
	uncounted bool
	closeOnce sync.Once
}

func (c *guardedConn) evictedLocked() bool {
	select {
	case <-c.evicted:
		return true
	default:
		return false
	}
}

// prove records that the connection completed a request: it gives its
// pending slot back.
func (c *guardedConn) prove() {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.proven {
		return
	}
	c.proven = true
	if c.holdsSlot {
		c.holdsSlot = false
		<-c.st.slots
	}
}

// Close closes the connection and gives back what it held.
func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		defer c.l.mu.Unlock()
		if !c.uncounted {
			c.l.open--
		}
		if c.holdsSlot {
			c.holdsSlot = false
			<-c.st.slots
		}
		c.st.refs--
		if c.st.refs == 0 && c.l.perIP[c.ip] == c.st {
			delete(c.l.perIP, c.ip)
		}
	})
	return err
}

// connOf is the guardedConn under a connection the listener handed out.
func connOf(c net.Conn) *guardedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	gc, _ := c.(*guardedConn)
	return gc
}

type guardedConnKey struct{}

// proveRequest marks the connection of r as having completed a request.
func proveRequest(r *http.Request) {
	if gc, ok := r.Context().Value(guardedConnKey{}).(*guardedConn); ok && gc != nil {
		gc.prove()
	}
}

func remoteIP(c net.Conn) string {
	addr := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
