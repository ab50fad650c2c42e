package manager

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeSelfSigned writes tls.crt and tls.key for 127.0.0.1 into dir.
func writeSelfSigned(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "server-test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
}

// testServer runs a boundedServer with limits and handler at /h; it
// returns the address and the server.
func testServer(t *testing.T, limits ServerLimits, h http.Handler) (string, *boundedServer) {
	t.Helper()
	dir := t.TempDir()
	writeSelfSigned(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	s, err := newBoundedServer("127.0.0.1", port, dir, limits, prometheus.NewRegistry())
	require.NoError(t, err)
	s.Register("/h", h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	require.Eventually(t, func() bool { return s.StartedChecker()(nil) == nil }, 5*time.Second, 10*time.Millisecond)
	return addr, s
}

func dialTLS(t *testing.T, addr string, protos ...string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: protos}) //nolint:gosec // test server
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports how long the server took to end the connection
// (read returns an error or EOF), failing after max.
func closedWithin(t *testing.T, c net.Conn, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	require.NoError(t, c.SetReadDeadline(start.Add(max)))
	_, err := io.ReadAll(c)
	elapsed := time.Since(start)
	var ne net.Error
	if err != nil && assert.ErrorAs(t, err, &ne) {
		assert.False(t, ne.Timeout(), "the server did not close the connection within %s", max)
	}
	return elapsed
}

func post(t *testing.T, addr string, body string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test server
	defer client.CloseIdleConnections()
	resp, err := client.Post("https://"+addr+"/h", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestBoundedServerClosesSlowClients(t *testing.T) {
	limits := ServerLimits{ReadHeaderTimeout: 500 * time.Millisecond, ReadTimeout: time.Second}
	addr, _ := testServer(t, limits, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	}))
	tests := map[string]struct {
		send string
		max  time.Duration
	}{
		"a client that never finishes its headers is cut at the read-header timeout": {
			send: "POST /h HTTP/1.1\r\nHost: x\r\n", max: 3 * time.Second,
		},
		"a client that announces 8 MiB and sends a byte is cut at the read timeout": {
			send: "POST /h HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8388608\r\n\r\n{", max: 4 * time.Second,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := dialTLS(t, addr)
			_, err := c.Write([]byte(tc.send))
			require.NoError(t, err)
			took := closedWithin(t, c, tc.max)
			t.Logf("closed after %s", took.Round(time.Millisecond))
		})
	}
	t.Run("an idle kept-alive connection is closed at the idle timeout", func(t *testing.T) {
		addr, _ := testServer(t, ServerLimits{IdleTimeout: 300 * time.Millisecond}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		c := dialTLS(t, addr)
		_, err := c.Write([]byte("GET /h HTTP/1.1\r\nHost: x\r\n\r\n"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Less(t, closedWithin(t, c, 3*time.Second), 3*time.Second)
	})
}

func TestBoundedServerLimitsConcurrencyAndBytes(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	addr, s := testServer(t, ServerLimits{MaxConcurrentRequests: 2, MaxInFlightBytes: 1 << 20, MaxRequestBytes: 2 << 20},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("hold") != "" {
				entered.Done()
				<-release
			}
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "read %d", n)
		}))

	// A request that announces size bytes, sends one and holds its slot.
	hold := func(size int) *tls.Conn {
		entered.Add(1)
		c := dialTLS(t, addr)
		_, err := fmt.Fprintf(c, "POST /h?hold=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{", size)
		require.NoError(t, err)
		return c
	}
	held := []*tls.Conn{hold(900 << 10)}
	entered.Wait()

	code, body := post(t, addr, strings.Repeat("x", 900<<10))
	assert.Equal(t, http.StatusTooManyRequests, code, "a second large body does not fit the in-flight budget")
	assert.Contains(t, body, "too many request body bytes in flight")

	code, body = post(t, addr, `{"small":true}`)
	assert.Equal(t, http.StatusOK, code, "a small body never draws on the budget: %s", body)

	held = append(held, hold(100))
	entered.Wait()
	code, body = post(t, addr, `{}`)
	assert.Equal(t, http.StatusTooManyRequests, code, "both slots are taken")
	assert.Contains(t, body, "too many concurrent requests (limit 2)")

	code, body = post(t, addr, strings.Repeat("x", 3<<20))
	assert.Contains(t, []int{http.StatusTooManyRequests, http.StatusRequestEntityTooLarge}, code, body)

	close(release)
	for _, c := range held {
		c.Close()
	}
	assert.Eventually(t, func() bool {
		code, _ := post(t, addr, `{}`)
		return code == http.StatusOK
	}, 5*time.Second, 50*time.Millisecond, "slots come back when the handlers return")
	assert.Equal(t, int64(0), s.limiter.inFlight.Load(), "every reservation is released")

	code, body = post(t, addr, strings.Repeat("x", 3<<20))
	assert.Equal(t, http.StatusRequestEntityTooLarge, code, body)

	c := dialTLS(t, addr)
	_, err := c.Write([]byte("POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusLengthRequired, resp.StatusCode, "a body without Content-Length has nothing to reserve against")
}

func TestBoundedServerTLSAndHTTP2(t *testing.T) {
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	tests := map[string]struct {
		http2     bool
		wantProto string
	}{
		"HTTP/2 is off by default: a client offering h2 gets HTTP/1.1": {wantProto: "http/1.1"},
		"--enable-http2 offers h2":                                     {http2: true, wantProto: "h2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			addr, _ := testServer(t, ServerLimits{EnableHTTP2: tc.http2}, ok)
			c := dialTLS(t, addr, "h2", "http/1.1")
			assert.Equal(t, tc.wantProto, c.ConnectionState().NegotiatedProtocol)
		})
	}
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		addr, _ := testServer(t, ServerLimits{}, ok)
		_, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}) //nolint:gosec // test server
		require.Error(t, err)
	})
}

func TestSetMemoryLimitFromEnv(t *testing.T) {
	t.Cleanup(func() { debug.SetMemoryLimit(math.MaxInt64) })
	tests := map[string]struct {
		env     map[string]string
		want    int64
		wantErr string
	}{
		"no limit in the environment sets nothing": {want: 0},
		"an explicit GOMEMLIMIT wins":              {env: map[string]string{"GOMEMLIMIT": "100MiB", MemoryLimitEnv: "536870912"}, want: 0},
		"90% of the container's limit by default":  {env: map[string]string{MemoryLimitEnv: "536870912"}, want: 536870912 / 100 * 90},
		"the share is configurable":                {env: map[string]string{MemoryLimitEnv: "1000", MemoryLimitPercentEnv: "50"}, want: 500},
		"a limit that is not a number is an error": {env: map[string]string{MemoryLimitEnv: "512Mi"}, wantErr: "want the memory limit in bytes"},
		"a share out of range is an error":         {env: map[string]string{MemoryLimitEnv: "1000", MemoryLimitPercentEnv: "5"}, wantErr: "from 10 to 100"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := SetMemoryLimitFromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
