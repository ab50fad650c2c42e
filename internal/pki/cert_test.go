package pki

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

var testHosts = ServiceHosts("meshrev-webhook", "meshrev-system", "127.0.0.1", "localhost")

// fresh issues a new bundle at t0 with the given lifetimes.
func fresh(t *testing.T, caLife, certLife time.Duration) *Bundle {
	t.Helper()
	b, err := Renew(nil, Decide(nil, testHosts, t0, Rotation{}), IssueOptions{Hosts: testHosts, CALifetime: caLife, CertLifetime: certLife}, t0)
	require.NoError(t, err)
	return b
}

func TestServiceHosts(t *testing.T) {
	tests := map[string]struct {
		service, namespace string
		extra              []string
		want               []string
	}{
		"a service gets its in-cluster DNS names, the .svc form first": {
			service: "meshrev-webhook", namespace: "meshrev-system",
			want: []string{"meshrev-webhook.meshrev-system.svc", "meshrev-webhook", "meshrev-webhook.meshrev-system", "meshrev-webhook.meshrev-system.svc.cluster.local"},
		},
		"extra hosts follow, deduplicated and without empty ones": {
			service: "wh", namespace: "ns", extra: []string{"127.0.0.1", "", "localhost", "127.0.0.1", "wh.ns.svc"},
			want: []string{"wh.ns.svc", "wh", "wh.ns", "wh.ns.svc.cluster.local", "127.0.0.1", "localhost"},
		},
		"without a service only the extra hosts remain": {
			extra: []string{"127.0.0.1"},
			want:  []string{"127.0.0.1"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, ServiceHosts(tc.service, tc.namespace, tc.extra...))
		})
	}
}

func TestIssuedCertificates(t *testing.T) {
	b := fresh(t, 0, 0)

	ca, cert := b.CA(), b.Cert()
	assert.True(t, ca.IsCA, "the CA is a CA")
	assert.NotZero(t, ca.KeyUsage&x509.KeyUsageCertSign, "the CA can sign certificates")
	assert.Equal(t, t0.Add(DefaultCALifetime), ca.NotAfter, "the CA is valid for ten years")
	assert.Equal(t, t0.Add(-maxBackdate), ca.NotBefore, "NotBefore is backdated for clock skew")

	assert.False(t, cert.IsCA, "the serving certificate is not a CA")
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, cert.ExtKeyUsage)
	assert.Equal(t, t0.Add(DefaultCertLifetime), cert.NotAfter, "the serving certificate is valid for a year")
	assert.Equal(t, "meshrev-webhook.meshrev-system.svc", cert.Subject.CommonName)
	assert.Equal(t, []string{"meshrev-webhook.meshrev-system.svc", "meshrev-webhook", "meshrev-webhook.meshrev-system", "meshrev-webhook.meshrev-system.svc.cluster.local", "localhost"}, cert.DNSNames)
	require.Len(t, cert.IPAddresses, 1)
	assert.True(t, cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")))

	// The apiserver verifies the serving certificate against the caBundle for
	// the host it dials: check exactly that for every host.
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(b.CABundlePEM))
	for _, host := range testHosts {
		_, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.NoError(t, err, "host %s", host)
	}
	_, err := cert.Verify(x509.VerifyOptions{DNSName: "evil.example.com", Roots: roots, CurrentTime: t0})
	assert.Error(t, err, "a host outside the SANs is refused")

	parsed, err := ParseBundle(b.Data())
	require.NoError(t, err, "the Secret data round-trips")
	assert.True(t, parsed.Cert().Equal(cert))
	assert.True(t, parsed.CA().Equal(ca))
}

func TestServingCertificateNeverOutlivesItsCA(t *testing.T) {
	b := fresh(t, 90*time.Minute, time.Hour)
	late := t0.Add(80 * time.Minute)
	next, err := Renew(b, Plan{Action: ActionIssueCert}, IssueOptions{Hosts: testHosts, CALifetime: 90 * time.Minute, CertLifetime: time.Hour}, late)
	require.NoError(t, err)
	assert.Equal(t, b.CA().NotAfter, next.Cert().NotAfter, "cut to the CA's expiry")
}

func TestDecide(t *testing.T) {
	const caLife, certLife = 30 * time.Hour, 3 * time.Hour
	b := fresh(t, caLife, certLife)
	certRenew := RenewAt(b.Cert())
	caRenew := RenewAt(b.CA())
	back := min(certLife/10, maxBackdate)
	require.Equal(t, t0.Add(-back).Add((certLife+back)*2/3), certRenew, "renewal at two thirds of the whole validity")

	// Step one of a CA rotation at caRenew: a new CA, the old serving certificate kept.
	rotating, err := Renew(b, Plan{Action: ActionNewCA}, IssueOptions{Hosts: testHosts, CALifetime: caLife, CertLifetime: certLife}, caRenew)
	require.NoError(t, err)
	const propagation = time.Minute
	// The old serving certificate has long been due by caRenew; a fresher one
	// shows the waiting without that.
	rotatingFresh, err := Renew(b, Plan{Action: ActionNewCA}, IssueOptions{Hosts: testHosts, CALifetime: caLife, CertLifetime: certLife}, t0.Add(time.Minute))
	require.NoError(t, err)
	require.False(t, rotatingFresh.SignedByCurrentCA())

	tests := map[string]struct {
		bundle   *Bundle
		hosts    []string
		now      time.Time
		rotation Rotation
		want     Action
		// next is the expected NextCheck (zero: not checked).
		next time.Time
	}{
		"no bundle yet creates a CA and a certificate": {
			now: t0, hosts: testHosts, want: ActionNewCA,
		},
		"a fresh bundle is kept until the serving certificate's renewal": {
			bundle: b, hosts: testHosts, now: t0.Add(time.Minute), want: ActionNone, next: certRenew,
		},
		"just before two thirds of the serving lifetime the bundle is kept": {
			bundle: b, hosts: testHosts, now: certRenew.Add(-time.Second), want: ActionNone,
		},
		"at two thirds of the serving lifetime the certificate is reissued from the same CA": {
			bundle: b, hosts: testHosts, now: certRenew, want: ActionIssueCert,
		},
		"an expired serving certificate is reissued": {
			bundle: b, hosts: testHosts, now: b.Cert().NotAfter.Add(time.Hour), want: ActionIssueCert,
		},
		"at two thirds of the CA lifetime a new CA is made": {
			bundle: b, hosts: testHosts, now: caRenew, want: ActionNewCA,
		},
		"a host the certificate does not cover reissues it": {
			bundle: b, hosts: append(testHosts, "10.0.0.7"), now: t0, want: ActionIssueCert,
		},
		"a certificate not yet valid (clock went back) is reissued": {
			bundle: b, hosts: testHosts, now: t0.Add(-time.Hour), want: ActionIssueCert,
		},
		"during a CA rotation the old CA's certificate is served until the new CA has propagated": {
			bundle: rotatingFresh, hosts: testHosts, now: t0.Add(90 * time.Second),
			rotation: Rotation{CASince: t0.Add(time.Minute), Propagation: propagation},
			want:     ActionNone, next: t0.Add(time.Minute + propagation),
		},
		"once the new CA has propagated the certificate is reissued from it": {
			bundle: rotatingFresh, hosts: testHosts, now: t0.Add(time.Minute + propagation),
			rotation: Rotation{CASince: t0.Add(time.Minute), Propagation: propagation},
			want:     ActionIssueCert,
		},
		"an old CA's certificate that expires before the new CA propagates is reissued at once": {
			bundle: rotating, hosts: testHosts, now: rotating.Cert().NotAfter.Add(-time.Second),
			rotation: Rotation{CASince: rotating.Cert().NotAfter.Add(-time.Minute), Propagation: time.Hour},
			want:     ActionIssueCert,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := Decide(tc.bundle, tc.hosts, tc.now, tc.rotation)
			assert.Equal(t, tc.want, p.Action, p.Reason)
			assert.NotEmpty(t, p.Reason, "every plan says why")
			if !tc.next.IsZero() {
				assert.Equal(t, tc.next, p.NextCheck)
			}
			if p.Action == ActionNone {
				assert.True(t, p.NextCheck.After(tc.now), "a kept bundle says when to look again")
			}
		})
	}
}

func TestRenew(t *testing.T) {
	opts := IssueOptions{Hosts: testHosts, CALifetime: 30 * time.Hour, CertLifetime: 3 * time.Hour}
	b := fresh(t, opts.CALifetime, opts.CertLifetime)

	tests := map[string]struct {
		action Action
		now    time.Time
		// newCA: a new CA heads the bundle.
		newCA bool
		// newCert: a new serving certificate, issued by the current CA.
		newCert bool
		// trusted is the number of CAs in the new caBundle, newest first.
		trusted int
	}{
		"reissuing the serving certificate keeps the CA and the caBundle": {
			action: ActionIssueCert, now: t0.Add(2 * time.Hour), newCert: true, trusted: 1,
		},
		"a new CA joins the bundle and the valid serving certificate of the old one stays (step one)": {
			action: ActionNewCA, now: t0.Add(time.Hour), newCA: true, trusted: 2,
		},
		"a new CA replaces an expired serving certificate at once": {
			action: ActionNewCA, now: t0.Add(20 * time.Hour), newCA: true, newCert: true, trusted: 2,
		},
		"a new CA drops an old one that expired": {
			action: ActionNewCA, now: t0.Add(31 * time.Hour), newCA: true, newCert: true, trusted: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			next, err := Renew(b, Plan{Action: tc.action}, opts, tc.now)
			require.NoError(t, err)
			assert.Equal(t, tc.newCA, !next.CA().Equal(b.CA()), "new CA")
			assert.Equal(t, tc.newCert, !next.Cert().Equal(b.Cert()), "new serving certificate")
			if tc.newCert {
				assert.NotEqual(t, b.KeyPEM, next.KeyPEM, "with a new key")
				assert.True(t, next.SignedByCurrentCA(), "issued by the current CA")
			}
			if !tc.newCA {
				assert.Equal(t, b.CABundlePEM, next.CABundlePEM, "the caBundle the API server holds keeps working")
			}
			trusted := next.Trusted()
			require.Len(t, trusted, tc.trusted)
			assert.True(t, trusted[0].Equal(next.CA()), "the current CA comes first")
			if tc.trusted == 2 {
				assert.True(t, trusted[1].Equal(b.CA()), "then the previous one")
			}
			parsed, err := ParseBundle(next.Data())
			require.NoError(t, err, "the Secret data round-trips")
			assert.Len(t, parsed.Trusted(), tc.trusted)
			// Whatever is served verifies against the published bundle.
			roots := x509.NewCertPool()
			require.True(t, roots.AppendCertsFromPEM(next.CABundlePEM))
			_, err = next.Cert().Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: roots, CurrentTime: tc.now})
			assert.NoError(t, err)
		})
	}

	t.Run("keeping the bundle returns it unchanged", func(t *testing.T) {
		next, err := Renew(b, Plan{Action: ActionNone}, opts, t0)
		require.NoError(t, err)
		assert.Same(t, b, next)
	})
	t.Run("a serving certificate needs a CA", func(t *testing.T) {
		_, err := Renew(nil, Plan{Action: ActionIssueCert}, opts, t0)
		assert.ErrorContains(t, err, "without a CA")
	})
	t.Run("a serving certificate needs hosts", func(t *testing.T) {
		_, err := Renew(nil, Plan{Action: ActionNewCA}, IssueOptions{}, t0)
		assert.ErrorContains(t, err, "no hosts")
	})
}

func TestParseBundleRefusesIncoherentData(t *testing.T) {
	a := fresh(t, 0, 0)
	other := fresh(t, 0, 0)
	with := func(key string, v []byte) map[string][]byte {
		d := a.Data()
		d[key] = v
		return d
	}
	tests := map[string]struct {
		data map[string][]byte
		want string
	}{
		"a missing key": {
			data: with(KeyTLSKey, nil), want: "key tls.key is missing",
		},
		"a serving key of another certificate": {
			data: with(KeyTLSKey, other.KeyPEM), want: "tls.key does not belong to tls.crt",
		},
		"a CA key of another CA": {
			data: with(KeyCAKey, other.CAKeyPEM), want: "ca.key does not belong",
		},
		"a serving certificate signed by another CA": {
			data: func() map[string][]byte {
				d := with(KeyTLSCert, other.CertPEM)
				d[KeyTLSKey] = other.KeyPEM
				return d
			}(),
			want: "not signed by any CA of ca.crt",
		},
		"garbage instead of PEM": {
			data: with(KeyCACert, []byte("not a certificate")), want: "no PEM certificate",
		},
		"a leaf where the CA belongs": {
			data: with(KeyCACert, a.CertPEM), want: "not a CA",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseBundle(tc.data)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tls.key")

	wrote, err := writeFileAtomic(path, []byte("one"), 0o600)
	require.NoError(t, err)
	assert.True(t, wrote)
	wrote, err = writeFileAtomic(path, []byte("one"), 0o600)
	require.NoError(t, err)
	assert.False(t, wrote, "unchanged content is not rewritten (no needless certwatcher reload)")
	wrote, err = writeFileAtomic(path, []byte("two"), 0o600)
	require.NoError(t, err)
	assert.True(t, wrote)

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "two", string(data))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "keys are private")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary files are left behind")
}
