// Package pki keeps the manager's self-managed webhook certificates: a CA and
// a serving certificate stored in a Secret, written into the webhook server's
// certificate directory, published as the caBundle of meshrev's webhook
// configurations, and renewed before they expire.
//
// The pure parts (issuing, parsing, deciding whether to renew) are in this
// file; [Rotator] does the API calls and file writes.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Keys of the certificate Secret. tls.crt/tls.key make it a kubernetes.io/tls
// Secret, so that it can also be mounted as a webhook server's cert dir.
const (
	// KeyCACert holds the PEM CA bundle: the current CA first, then older CAs
	// that are still valid (so that a CA rotation does not drop requests).
	KeyCACert = "ca.crt"
	// KeyCAKey holds the PEM (PKCS #8) key of the current CA.
	KeyCAKey = "ca.key"
	// KeyTLSCert holds the PEM serving certificate.
	KeyTLSCert = "tls.crt"
	// KeyTLSKey holds the PEM (PKCS #8) serving key.
	KeyTLSKey = "tls.key"
)

// Default lifetimes.
const (
	// DefaultCALifetime is how long a new CA is valid.
	DefaultCALifetime = 10 * 365 * 24 * time.Hour
	// DefaultCertLifetime is how long a new serving certificate is valid.
	DefaultCertLifetime = 365 * 24 * time.Hour
	// maxBackdate bounds how far NotBefore is set in the past, to tolerate
	// clock skew between the manager and the apiserver.
	maxBackdate = 5 * time.Minute
)

// Bundle is the CA and the serving key pair, as kept in the Secret.
type Bundle struct {
	// CABundlePEM is the current CA followed by older, still valid CAs: the
	// caBundle of the webhook configurations.
	CABundlePEM []byte
	// CAKeyPEM is the current CA's private key.
	CAKeyPEM []byte
	// CertPEM is the serving certificate.
	CertPEM []byte
	// KeyPEM is the serving certificate's private key.
	KeyPEM []byte

	ca      *x509.Certificate
	caKey   crypto.Signer
	cert    *x509.Certificate
	trusted []*x509.Certificate
}

// CA is the current CA certificate.
func (b *Bundle) CA() *x509.Certificate { return b.ca }

// Cert is the serving certificate.
func (b *Bundle) Cert() *x509.Certificate { return b.cert }

// Trusted are the CAs of the CA bundle, the current one first.
func (b *Bundle) Trusted() []*x509.Certificate { return slices.Clone(b.trusted) }

// SignedByCurrentCA reports whether the serving certificate was issued by
// the current CA (not by an older one still in the bundle during a CA rotation).
func (b *Bundle) SignedByCurrentCA() bool { return b.cert.CheckSignatureFrom(b.ca) == nil }

// Data is the bundle as Secret data.
func (b *Bundle) Data() map[string][]byte {
	return map[string][]byte{
		KeyCACert:  b.CABundlePEM,
		KeyCAKey:   b.CAKeyPEM,
		KeyTLSCert: b.CertPEM,
		KeyTLSKey:  b.KeyPEM,
	}
}

// ParseBundle reads a bundle from Secret data and checks that it is coherent:
// the serving key matches the serving certificate, the CA key matches the
// current (first) CA, and a CA of the bundle signed the serving certificate.
func ParseBundle(data map[string][]byte) (*Bundle, error) {
	b := &Bundle{
		CABundlePEM: data[KeyCACert],
		CAKeyPEM:    data[KeyCAKey],
		CertPEM:     data[KeyTLSCert],
		KeyPEM:      data[KeyTLSKey],
	}
	for key, v := range map[string][]byte{KeyCACert: b.CABundlePEM, KeyCAKey: b.CAKeyPEM, KeyTLSCert: b.CertPEM, KeyTLSKey: b.KeyPEM} {
		if len(v) == 0 {
			return nil, fmt.Errorf("key %s is missing or empty", key)
		}
	}
	cas, err := parseCertificates(b.CABundlePEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCACert, err)
	}
	b.ca, b.trusted = cas[0], cas
	if !b.ca.IsCA {
		return nil, fmt.Errorf("%s: the first certificate is not a CA", KeyCACert)
	}
	if b.caKey, err = parseKey(b.CAKeyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCAKey, err)
	}
	if !publicKeysEqual(b.ca.PublicKey, b.caKey.Public()) {
		return nil, fmt.Errorf("%s does not belong to the first certificate of %s", KeyCAKey, KeyCACert)
	}
	certs, err := parseCertificates(b.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyTLSCert, err)
	}
	b.cert = certs[0]
	key, err := parseKey(b.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyTLSKey, err)
	}
	if !publicKeysEqual(b.cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not belong to %s", KeyTLSKey, KeyTLSCert)
	}
	if !slices.ContainsFunc(cas, func(ca *x509.Certificate) bool { return b.cert.CheckSignatureFrom(ca) == nil }) {
		return nil, fmt.Errorf("%s is not signed by any CA of %s", KeyTLSCert, KeyCACert)
	}
	return b, nil
}

// RenewAt is when a certificate is renewed: at two thirds of its lifetime,
// which leaves a third of it to retry failures before anything expires.
func RenewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(life * 2 / 3)
}

// Action is what [Decide] says to do with a bundle.
type Action string

const (
	// ActionNone keeps the bundle.
	ActionNone Action = "None"
	// ActionIssueCert issues a new serving certificate from the current CA.
	ActionIssueCert Action = "IssueCert"
	// ActionNewCA creates a new CA (keeping the old one in the CA bundle while
	// it is valid) and issues a serving certificate from it.
	ActionNewCA Action = "NewCA"
)

// Plan is the decision of [Decide] and why.
type Plan struct {
	// Action to take.
	Action Action
	// Reason explains the action to a person (for logs and events).
	Reason string
	// NextCheck is when the decision may change (a renewal falls due, a new
	// CA has propagated); zero when the action is to be taken now.
	NextCheck time.Time
}

// Rotation is what [Decide] needs to know about an ongoing CA rotation.
type Rotation struct {
	// CASince is when the current CA joined the bundle (zero: long ago).
	CASince time.Time
	// Propagation is how long a new CA must be in the published caBundle
	// before serving certificates it signed are served: until then API
	// servers may still verify with the old bundle.
	Propagation time.Duration
}

// Decide says what to do with bundle b (nil when there is none or it did not
// parse) at now, for a serving certificate covering hosts.
//
// A CA is replaced in two steps so that no request fails: first the new CA
// joins the bundle (the caBundle then trusts old and new) while the serving
// certificate of the old CA is kept; once the new bundle has had
// r.Propagation to reach every API server, a serving certificate of the new
// CA is issued.
func Decide(b *Bundle, hosts []string, now time.Time, r Rotation) Plan {
	if b == nil {
		return Plan{Action: ActionNewCA, Reason: "no valid certificate bundle yet"}
	}
	caRenew, certRenew := RenewAt(b.ca), RenewAt(b.cert)
	if !now.Before(caRenew) {
		return Plan{Action: ActionNewCA, Reason: fmt.Sprintf("the CA reached two thirds of its lifetime on %s (expires %s)", stamp(caRenew), stamp(b.ca.NotAfter))}
	}
	var stale string
	switch missing := missingHosts(b.cert, hosts); {
	case !now.Before(certRenew):
		stale = fmt.Sprintf("the serving certificate reached two thirds of its lifetime on %s (expires %s)", stamp(certRenew), stamp(b.cert.NotAfter))
	case now.Before(b.cert.NotBefore):
		stale = fmt.Sprintf("the serving certificate is not valid before %s (clock skew?)", stamp(b.cert.NotBefore))
	case len(missing) > 0:
		stale = fmt.Sprintf("the serving certificate does not cover %v", missing)
	case !b.SignedByCurrentCA():
		stale = "the serving certificate was issued by the previous CA"
	}
	next := earliest(caRenew, certRenew)
	if stale == "" {
		return Plan{Action: ActionNone, Reason: fmt.Sprintf("valid until renewal at %s", stamp(certRenew)), NextCheck: next}
	}
	if !b.SignedByCurrentCA() && now.Before(b.cert.NotAfter) {
		// Wait for the new CA to propagate, unless the old certificate would
		// expire first.
		if ready := r.CASince.Add(r.Propagation); now.Before(ready) && ready.Before(b.cert.NotAfter) {
			return Plan{Action: ActionNone, Reason: fmt.Sprintf("%s; waiting until %s for the new CA to reach every API server", stale, stamp(ready)), NextCheck: earliest(next, ready)}
		}
	}
	return Plan{Action: ActionIssueCert, Reason: stale}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// IssueOptions describes the certificates [Renew] issues.
type IssueOptions struct {
	// CommonName of a new CA, e.g. "meshrev-webhook-ca".
	CACommonName string
	// Hosts the serving certificate is valid for: DNS names or IP addresses.
	// The first one is its common name.
	Hosts []string
	// CALifetime of a new CA (default DefaultCALifetime).
	CALifetime time.Duration
	// CertLifetime of a new serving certificate (default DefaultCertLifetime);
	// it is cut to the CA's expiry.
	CertLifetime time.Duration
}

// Renew carries out a plan on b (nil when there is none) and returns the new
// bundle, or b itself for ActionNone.
func Renew(b *Bundle, p Plan, o IssueOptions, now time.Time) (*Bundle, error) {
	if o.CALifetime <= 0 {
		o.CALifetime = DefaultCALifetime
	}
	if o.CertLifetime <= 0 {
		o.CertLifetime = DefaultCertLifetime
	}
	if len(o.Hosts) == 0 {
		return nil, errors.New("no hosts for the serving certificate")
	}
	switch p.Action {
	case ActionNone:
		return b, nil
	case ActionIssueCert:
		if b == nil {
			return nil, errors.New("cannot issue a serving certificate without a CA")
		}
		next := &Bundle{CABundlePEM: b.CABundlePEM, CAKeyPEM: b.CAKeyPEM, ca: b.ca, caKey: b.caKey, trusted: b.trusted}
		if err := next.issueCert(o, now); err != nil {
			return nil, err
		}
		return next, nil
	case ActionNewCA:
		next, err := newCA(o.CACommonName, o.CALifetime, now)
		if err != nil {
			return nil, err
		}
		if b != nil {
			// Keep trusting older CAs until they expire: replicas still serving
			// a certificate they signed keep working during the switch.
			old, _ := parseCertificates(b.CABundlePEM)
			for _, c := range old {
				if now.Before(c.NotAfter) {
					next.CABundlePEM = append(next.CABundlePEM, encodeCert(c.Raw)...)
				}
			}
		}
		if b != nil && now.Before(b.cert.NotAfter) && !now.Before(b.cert.NotBefore) && len(missingHosts(b.cert, o.Hosts)) == 0 {
			// Step one of a CA rotation: the old CA's serving certificate
			// stays until the new caBundle has propagated (see Decide).
			next.cert, next.CertPEM, next.KeyPEM = b.cert, b.CertPEM, b.KeyPEM
		} else if err := next.issueCert(o, now); err != nil {
			return nil, err
		}
		if next.trusted, err = parseCertificates(next.CABundlePEM); err != nil {
			return nil, err
		}
		return next, nil
	}
	return nil, fmt.Errorf("unknown certificate action %q", p.Action)
}

// ServiceHosts are the DNS names under which the apiserver reaches a webhook
// Service, followed by extra hosts (deduplicated, order kept).
func ServiceHosts(service, namespace string, extra ...string) []string {
	var hosts []string
	if service != "" {
		hosts = append(hosts,
			service+"."+namespace+".svc",
			service,
			service+"."+namespace,
			service+"."+namespace+".svc.cluster.local")
	}
	for _, h := range extra {
		if h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

func newCA(commonName string, lifetime time.Duration, now time.Time) (*Bundle, error) {
	if commonName == "" {
		commonName = "meshrev-webhook-ca"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := validity(now, lifetime)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"meshrev"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Bundle{CABundlePEM: encodeCert(der), CAKeyPEM: keyPEM, ca: ca, caKey: key, trusted: []*x509.Certificate{ca}}, nil
}

func (b *Bundle) issueCert(o IssueOptions, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate serving key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	notBefore, notAfter := validity(now, o.CertLifetime)
	if notAfter.After(b.ca.NotAfter) {
		notAfter = b.ca.NotAfter
	}
	if notBefore.Before(b.ca.NotBefore) {
		notBefore = b.ca.NotBefore
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.Hosts[0], Organization: []string{"meshrev"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.ca, key.Public(), b.caKey)
	if err != nil {
		return fmt.Errorf("sign serving certificate: %w", err)
	}
	if b.cert, err = x509.ParseCertificate(der); err != nil {
		return fmt.Errorf("parse new serving certificate: %w", err)
	}
	b.CertPEM = encodeCert(der)
	b.KeyPEM, err = encodeKey(key)
	return err
}

// validity backdates NotBefore a little (a tenth of the lifetime, at most
// maxBackdate) so that an apiserver whose clock lags accepts the certificate.
func validity(now time.Time, lifetime time.Duration) (notBefore, notAfter time.Time) {
	back := min(lifetime/10, maxBackdate)
	return now.Add(-back).Truncate(time.Second), now.Add(lifetime).Truncate(time.Second)
}

// missingHosts lists the hosts c does not cover.
func missingHosts(c *x509.Certificate, hosts []string) []string {
	var missing []string
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			missing = append(missing, h)
		}
	}
	return missing
}

func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", key)
	}
	return signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial: %w", err)
	}
	return serial, nil
}

// sameCABundle says whether two CA bundles hold the same certificates.
func sameCABundle(a, b []byte) bool { return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) }
