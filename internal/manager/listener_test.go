package manager

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// holdRaw opens n TCP connections to addr that never start TLS.
func holdRaw(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	out := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

// keepAliveClient reuses its connections.
func keepAliveClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test server
}

func postWith(c *http.Client, addr string) (int, error) {
	resp, err := c.Post("https://"+addr+"/h", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func readBody(w http.ResponseWriter, r *http.Request) { _, _ = io.ReadAll(r.Body) }

// holdRawFrom opens n TCP connections to addr from 127.0.0.ip that never
// start TLS.
func holdRawFrom(t *testing.T, addr string, ip byte, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, ip)}}
	out := make([]net.Conn, 0, n)
	for range n {
		c, err := d.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

// clientFrom is an HTTPS client whose connections come from 127.0.0.ip.
func clientFrom(ip byte) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, ip)}}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test server
}

func TestGuardedListenerServesProvenConnectionsWhileAClientHoldsEveryPendingSlot(t *testing.T) {
	addr, s := testServer(t, ServerLimits{MaxConnections: 10, MaxPendingConnectionsPerIP: 4, HandshakeTimeout: 3 * time.Second}, http.HandlerFunc(readBody))
	api := keepAliveClient()
	code, err := postWith(api, addr)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)

	// From another address, four connections take the pending slots and
	// five more wait: with the API server's, the listener is full.
	holders := holdRawFrom(t, addr, 2, 4)
	waiting := holdRawFrom(t, addr, 2, 5)
	time.Sleep(200 * time.Millisecond)

	// The kept-alive connection, which completed a request, is not pending.
	for range 5 {
		start := time.Now()
		code, err := postWith(api, addr)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, code)
		assert.Less(t, time.Since(start), 1500*time.Millisecond, "served well before the handshake timeout")
	}
	// A new connection from a third address takes the place of the
	// flooding address's oldest waiting connection, and is served.
	start := time.Now()
	code, err = postWith(clientFrom(3), addr)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	assert.Less(t, time.Since(start), 1500*time.Millisecond, "served well before the handshake timeout")
	assert.InDelta(t, 1, testutil.ToFloat64(s.limiter.rejectedConns.WithLabelValues(rejectConnEvicted)), 0)
	// Exactly one connection of the flooding address is closed. Which of
	// its nine got a pending slot depends on the order the listener
	// admitted them in, so all nine are looked at; the close is polled, as
	// it lands a moment after the count on a busy machine.
	flood := append(slices.Clone(holders), waiting...)
	closed := map[int]bool{}
	require.Eventually(t, func() bool {
		for i, c := range flood {
			if closed[i] || c.SetReadDeadline(time.Now().Add(10*time.Millisecond)) != nil {
				continue
			}
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				closed[i] = true
			}
		}
		return len(closed) > 0
	}, 2*time.Second, 50*time.Millisecond)
	var open []net.Conn
	for i, c := range flood {
		if !closed[i] {
			open = append(open, c)
		}
	}
	assert.Len(t, open, 8, "one waiting connection of the flooding address is evicted")

	// The other waiting connections are closed when the handshake timeout ends.
	require.NotEmpty(t, open)
	assert.Greater(t, closedWithin(t, open[0], 6*time.Second), 200*time.Millisecond)
	// Holders that never start TLS are closed by the same timeout, and a
	// new connection is served again.
	closedWithin(t, open[1], 6*time.Second)
	code, err = postWith(keepAliveClient(), addr)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
}

func TestGuardedListenerQueuesABurstFromOneAddress(t *testing.T) {
	addr, _ := testServer(t, ServerLimits{MaxPendingConnectionsPerIP: 2, MaxConcurrentHandshakes: 1}, http.HandlerFunc(readBody))
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A new connection per request, as the API server opens in a burst.
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test server
			code, err := postWith(c, addr)
			if err != nil {
				code = -1
			}
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		assert.Equal(t, http.StatusOK, code, "every request of the burst is served (queued, not refused)")
	}
}

func TestGuardedListenerClosesConnectionsBeyondMaxConnections(t *testing.T) {
	addr, s := testServer(t, ServerLimits{MaxConnections: 16, HandshakeTimeout: 2 * time.Second}, http.HandlerFunc(readBody))
	// 16 addresses of the loopback network, so that no per-address bound
	// applies first.
	for i := range 16 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}}
		c, err := d.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
	}
	time.Sleep(100 * time.Millisecond)
	over := holdRaw(t, addr, 1)[0]
	assert.Less(t, closedWithin(t, over, 3*time.Second), 500*time.Millisecond)
	assert.Eventually(t, func() bool {
		return testutil.ToFloat64(s.limiter.rejectedConns.WithLabelValues(rejectConnTotal)) >= 1
	}, time.Second, 10*time.Millisecond)
	// When the handshake timeout has closed the holders, connections are served again.
	assert.Eventually(t, func() bool {
		code, err := postWith(keepAliveClient(), addr)
		return err == nil && code == http.StatusOK
	}, 5*time.Second, 100*time.Millisecond)
}

func TestGuardedListenerBoundsTheHandshakeRateOfAnAddress(t *testing.T) {
	addr, s := testServer(t, ServerLimits{HandshakesPerSecondPerIP: 2, HandshakeTimeout: time.Second}, http.HandlerFunc(readBody))
	var wg sync.WaitGroup
	var mu sync.Mutex
	served := 0
	from := func(ip byte) *tls.Dialer {
		return &tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, ip)}},
			Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // test server
	}
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := from(2).DialContext(t.Context(), "tcp", addr)
			if err != nil {
				return
			}
			c.Close()
			mu.Lock()
			served++
			mu.Unlock()
		}()
	}
	wg.Wait()
	// A burst of 4, then 2 a second within the 1 s timeout.
	assert.GreaterOrEqual(t, served, 4)
	assert.LessOrEqual(t, served, 7)
	assert.GreaterOrEqual(t, testutil.ToFloat64(s.limiter.rejectedConns.WithLabelValues(rejectConnRate)), 5.0)
	// Another address has its own budget.
	c, err := from(3).DialContext(t.Context(), "tcp", addr)
	require.NoError(t, err)
	c.Close()
}
