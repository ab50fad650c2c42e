package devcluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// WebhookServer is an HTTPS server on 127.0.0.1 with a certificate signed by
// its own fresh test CA, for admission webhooks that the local kube-apiserver
// calls by URL. Put [WebhookServer.CABundle] in the webhook's
// clientConfig.caBundle and [WebhookServer.URL] plus a path in clientConfig.url.
type WebhookServer struct {
	// URL is the base URL, e.g. https://127.0.0.1:41234 (no trailing slash).
	URL string
	// CABundle is the PEM of the CA that signed the serving certificate.
	CABundle []byte
	// CA is the test CA; it can sign more certificates.
	CA *CA

	server   *http.Server
	listener net.Listener
	done     chan error
}

// StartWebhookServer serves handler over TLS on a free port of 127.0.0.1.
// Close it when done.
func StartWebhookServer(handler http.Handler) (*WebhookServer, error) {
	ca, err := NewCA("meshrev-test-webhook-ca")
	if err != nil {
		return nil, err
	}
	kp, err := ca.ServingCert("127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on 127.0.0.1 for the webhook server: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{kp.TLSCertificate()},
		},
	}
	s := &WebhookServer{
		URL:      "https://" + ln.Addr().String(),
		CABundle: ca.CertPEM,
		CA:       ca,
		server:   srv,
		listener: ln,
		done:     make(chan error, 1),
	}
	go func() { s.done <- srv.ServeTLS(ln, "", "") }()
	return s, nil
}

// Close stops the server.
func (s *WebhookServer) Close() error {
	err := s.server.Close()
	if serveErr := <-s.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("webhook server: %w", serveErr)
	}
	if err != nil {
		return fmt.Errorf("closing webhook server: %w", err)
	}
	return nil
}
