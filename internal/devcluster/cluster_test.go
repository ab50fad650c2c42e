package devcluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"
)

func TestServingCertVerifiesForLoopback(t *testing.T) {
	ca, err := NewCA("test-ca")
	require.NoError(t, err)
	kp, err := ca.ServingCert("127.0.0.1", "localhost")
	require.NoError(t, err)

	for _, host := range []string{"127.0.0.1", "localhost"} {
		_, err := kp.Cert.Verify(x509.VerifyOptions{Roots: ca.CertPool(), DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.NoError(t, err, "host %s", host)
	}
	_, err = kp.Cert.Verify(x509.VerifyOptions{Roots: ca.CertPool(), DNSName: "example.com"})
	assert.Error(t, err, "the certificate must not be valid for other names")

	other, err := NewCA("other-ca")
	require.NoError(t, err)
	_, err = kp.Cert.Verify(x509.VerifyOptions{Roots: other.CertPool(), DNSName: "127.0.0.1"})
	assert.Error(t, err, "a different CA must not verify it")

	_, err = tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	assert.NoError(t, err, "PEM pair must load")
}

func TestClientCertCarriesUserAndGroups(t *testing.T) {
	ca, err := NewCA("test-ca")
	require.NoError(t, err)
	kp, err := ca.ClientCert("alice", "system:masters", "devs")
	require.NoError(t, err)
	assert.Equal(t, "alice", kp.Cert.Subject.CommonName)
	assert.ElementsMatch(t, []string{"system:masters", "devs"}, kp.Cert.Subject.Organization)
	_, err = kp.Cert.Verify(x509.VerifyOptions{Roots: ca.CertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err)
}

func TestWebhookServerIsTrustedThroughItsCABundle(t *testing.T) {
	srv, err := StartWebhookServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	}))
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Close()) }()
	assert.True(t, strings.HasPrefix(srv.URL, "https://127.0.0.1:"), srv.URL)

	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(srv.CABundle))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get(srv.URL + "/mutate")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "hello /mutate", string(body))

	_, err = http.Get(srv.URL) // system roots do not trust the test CA
	assert.Error(t, err)
}

func TestRequiredVersionReadsSingleLineAndBlockRequires(t *testing.T) {
	dir := t.TempDir()
	goMod := filepath.Join(dir, "go.mod")
	require.NoError(t, os.WriteFile(goMod, []byte("module x\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v1.36.3\n\nrequire (\n\tsigs.k8s.io/kwok v0.8.0\n\tgolang.org/x/mod v0.38.0 // indirect\n)\n"), 0o644))
	v, err := requiredVersion(goMod, "k8s.io/kubernetes")
	require.NoError(t, err)
	assert.Equal(t, "v1.36.3", v)
	v, err = requiredVersion(goMod, "sigs.k8s.io/kwok")
	require.NoError(t, err)
	assert.Equal(t, "v0.8.0", v)
	_, err = requiredVersion(goMod, "helm.sh/helm/v3")
	assert.ErrorContains(t, err, "does not require helm.sh/helm/v3")
}

// The build modules in the repository pin the versions docs/design.md names ("The local cluster").
func TestBuildModulesPinTheDocumentedVersions(t *testing.T) {
	root, err := RepoRoot()
	require.NoError(t, err)
	build := filepath.Join(root, BuildModulesDir)
	for _, c := range components {
		v, err := requiredVersion(filepath.Join(build, c.module, "go.mod"), c.pin)
		require.NoError(t, err, c.name)
		switch c.pin {
		case "k8s.io/kubernetes":
			assert.Equal(t, "v1.36.3", v)
		case "helm.sh/helm/v3":
			assert.Equal(t, "v3.22.0", v)
		case "istio.io/istio":
			// pilot-discovery is the istiod of the charts the e2e tests
			// install and of the injector test/compat compares with.
			for _, mod := range []string{"test/istiocharts", "test/compat"} {
				pinned, err := requiredVersion(filepath.Join(root, mod, "go.mod"), c.pin)
				require.NoError(t, err, mod)
				assert.Equal(t, pinned, v, "%s pins istio.io/istio at %s", mod, pinned)
			}
		}
		_, err = os.Stat(filepath.Join(build, c.module, "go.sum"))
		assert.NoError(t, err, "build module %s needs its go.sum", c.module)
	}

	// Every k8s.io staging module is replaced by its v0.36.3 release.
	data, err := os.ReadFile(filepath.Join(build, "k8s", "go.mod"))
	require.NoError(t, err)
	replaces := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[1] == "=>" && strings.HasPrefix(f[0], "k8s.io/") {
			replaces++
			assert.Equal(t, f[0], f[2], "replace %s must point at the same module", f[0])
			assert.Equal(t, "v0.36.3", f[3], "replace %s", f[0])
		}
	}
	assert.GreaterOrEqual(t, replaces, 30, "k8s.io/kubernetes v1.36.3 has 33 staging modules")
}

func TestStampChangesWithBuildInputs(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), []byte("a\n"), 0o644))
	c := components[indexOf("kube-apiserver")]
	s1, err := stampFor(dir, c, "go1.26.8 linux/amd64")
	require.NoError(t, err)
	s2, err := stampFor(dir, c, "go1.26.8 linux/amd64")
	require.NoError(t, err)
	assert.Equal(t, s1, s2, "stamps are deterministic")

	s3, err := stampFor(dir, c, "go1.27.0 linux/amd64")
	require.NoError(t, err)
	assert.NotEqual(t, s1, s3, "a new Go version rebuilds")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), []byte("b\n"), 0o644))
	s4, err := stampFor(dir, c, "go1.26.8 linux/amd64")
	require.NoError(t, err)
	assert.NotEqual(t, s1, s4, "a changed go.sum rebuilds")

	s5, err := stampFor(dir, components[indexOf("kubectl")], "go1.26.8 linux/amd64")
	require.NoError(t, err)
	assert.NotEqual(t, s4, s5, "each binary has its own stamp")

	out := filepath.Join(dir, "bin")
	assert.False(t, upToDate(out, s4))
	require.NoError(t, os.WriteFile(out, []byte("binary"), 0o755))
	require.NoError(t, os.WriteFile(out+".stamp", []byte(s4+"\n"), 0o644))
	assert.True(t, upToDate(out, s4))
	assert.False(t, upToDate(out, s5))
}

func TestKubeLDFlagsStampTheRelease(t *testing.T) {
	flags := strings.Join(kubeLDFlags(modInfo{Version: "v1.36.3"}), " ")
	for _, want := range []string{
		"k8s.io/component-base/version.gitVersion=v1.36.3",
		"k8s.io/component-base/version.gitMajor=1",
		"k8s.io/component-base/version.gitMinor=36",
		"k8s.io/client-go/pkg/version.gitVersion=v1.36.3",
	} {
		assert.Contains(t, flags, want)
	}
}

func TestStopAllStopsOnlyMarkedProcesses(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	l := Layout{Root: t.TempDir()}
	require.NoError(t, os.MkdirAll(l.StateDir(), 0o755))
	require.NoError(t, os.MkdirAll(l.LogDir(), 0o755))

	// A process of ours with a pid file, one whose pid file was lost, and a foreign one.
	p1, err := startProcess(l, "etcd", sleep, []string{"60"}, nil, false)
	require.NoError(t, err)
	p2, err := startProcess(l, "kwok", sleep, []string{"60"}, nil, false)
	require.NoError(t, err)
	require.NoError(t, os.Remove(l.PIDFile("kwok")))
	foreign := exec.Command(sleep, "60")
	require.NoError(t, foreign.Start())
	defer func() { _ = foreign.Process.Kill(); _ = foreign.Wait() }()

	assert.True(t, isOurs(p1.cmd.Process.Pid, l.Root))
	assert.False(t, isOurs(p1.cmd.Process.Pid, l.Root+"-other"), "the marker names the directory")
	assert.False(t, isOurs(foreign.Process.Pid, l.Root))
	assert.Equal(t, p1.cmd.Process.Pid, readPID(l.PIDFile("etcd")))

	n, err := stopAll(l)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for _, p := range []*process{p1, p2} {
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still running", p.name)
		}
	}
	assert.True(t, alive(foreign.Process.Pid), "a process without our marker is left alone")
	_, err = os.Stat(l.PIDFile("etcd"))
	assert.ErrorIs(t, err, os.ErrNotExist, "pid files are removed")
	assert.Empty(t, strays(l.Root))
}

// completeData writes what a cluster that came up leaves in l: PKI,
// kubeconfigs, an initialised etcd directory and the ports file.
func completeData(t *testing.T, l Layout) map[string]int {
	t.Helper()
	require.NoError(t, resetData(l))
	ports, err := freePorts(portNames)
	require.NoError(t, err)
	require.NoError(t, writePKI(l, fmt.Sprintf("https://127.0.0.1:%d", ports[portAPIServer])))
	require.NoError(t, os.MkdirAll(l.etcdMemberDir(), 0o700))
	require.NoError(t, writeJSON(l.PortsFile(), ports))
	return ports
}

func TestPreviousDataTellsFreshFromRestartableFromUnusable(t *testing.T) {
	tests := map[string]struct {
		damage      func(t *testing.T, l Layout)
		wantPorts   bool
		wantErrPart string
	}{
		"a directory never started in has no data": {
			damage: func(t *testing.T, l Layout) {
				require.NoError(t, os.RemoveAll(l.StateDir()))
				require.NoError(t, os.Remove(l.Kubeconfig()))
			},
		},
		"the leftovers of a start that never came up are no data": {
			damage: func(t *testing.T, l Layout) { require.NoError(t, os.Remove(l.PortsFile())) },
		},
		"a cluster that came up can be restarted": {
			damage:    func(*testing.T, Layout) {},
			wantPorts: true,
		},
		"a missing key is unusable": {
			damage:      func(t *testing.T, l Layout) { require.NoError(t, os.Remove(l.pki("sa.key"))) },
			wantErrPart: "sa.key",
		},
		"a missing admin kubeconfig is unusable": {
			damage:      func(t *testing.T, l Layout) { require.NoError(t, os.Remove(l.Kubeconfig())) },
			wantErrPart: "kubeconfig",
		},
		"uninitialised etcd data is unusable": {
			damage:      func(t *testing.T, l Layout) { require.NoError(t, os.RemoveAll(l.etcdDir())) },
			wantErrPart: "member",
		},
		"a corrupt ports file is unusable": {
			damage:      func(t *testing.T, l Layout) { require.NoError(t, os.WriteFile(l.PortsFile(), []byte("{"), 0o644)) },
			wantErrPart: "ports.json",
		},
		"a ports file without the apiserver port is unusable": {
			damage: func(t *testing.T, l Layout) {
				require.NoError(t, os.WriteFile(l.PortsFile(), []byte(`{"etcd-client":1,"etcd-peer":2,"kube-controller-manager":3,"kube-scheduler":4}`), 0o644))
			},
			wantErrPart: "no kube-apiserver port",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l := Layout{Root: t.TempDir()}
			want := completeData(t, l)
			tc.damage(t, l)
			ports, err := previousData(l)
			switch {
			case tc.wantErrPart != "":
				require.ErrorIs(t, err, ErrDataUnusable)
				assert.ErrorContains(t, err, tc.wantErrPart)
				assert.Nil(t, ports)
			case tc.wantPorts:
				require.NoError(t, err)
				assert.Equal(t, want, ports)
			default:
				require.NoError(t, err)
				assert.Nil(t, ports)
			}
		})
	}
}

// The files a restart checks for are exactly those a fresh start writes.
func TestWritePKIWritesWhatARestartNeeds(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	require.NoError(t, resetData(l))
	require.NoError(t, writePKI(l, "https://127.0.0.1:6443"))
	entries, err := os.ReadDir(l.PKIDir())
	require.NoError(t, err)
	var written []string
	for _, e := range entries {
		written = append(written, e.Name())
	}
	assert.ElementsMatch(t, pkiFiles, written)
	for _, u := range kubeconfigUsers(l) {
		cfg, err := clientcmd.LoadFromFile(u.file)
		require.NoError(t, err, u.file)
		for _, cl := range cfg.Clusters {
			assert.Equal(t, "https://127.0.0.1:6443", cl.Server, u.file)
		}
	}
}

func TestPrepareDataKeepsWipesOrMovesTheData(t *testing.T) {
	caOf := func(t *testing.T, l Layout) string {
		b, err := os.ReadFile(l.pki("ca.crt"))
		require.NoError(t, err)
		return string(b)
	}
	serverOf := func(t *testing.T, path string) string {
		cfg, err := clientcmd.LoadFromFile(path)
		require.NoError(t, err)
		return cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server
	}
	tests := map[string]struct {
		wipe, newPorts, takePort bool
		wantRestarted            bool
		wantSamePorts            bool
		wantLog                  string
	}{
		"a restart keeps the PKI and the ports": {
			wantRestarted: true, wantSamePorts: true, wantLog: "restarting local cluster",
		},
		"a restart whose apiserver port is taken moves the kubeconfigs to new ports": {
			takePort: true, wantRestarted: true, wantLog: "is taken; moving it to new ports",
		},
		"a restart asked for new ports moves the kubeconfigs": {
			newPorts: true, wantRestarted: true, wantLog: "restarting local cluster",
		},
		"a wipe starts a fresh cluster with a new CA": {
			wipe: true, wantLog: "wiping the data of the previous cluster",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l := Layout{Root: t.TempDir()}
			ports := completeData(t, l)
			ca := caOf(t, l)
			marker := filepath.Join(l.etcdDir(), "member", "object")
			require.NoError(t, os.WriteFile(marker, []byte("a stored object"), 0o600))
			if tc.takePort {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[portAPIServer]))
				require.NoError(t, err)
				defer ln.Close()
			}

			var log strings.Builder
			c := &Cluster{Layout: l}
			st, err := c.prepareData(&log, tc.wipe, tc.newPorts)
			require.NoError(t, err)
			assert.Contains(t, log.String(), tc.wantLog)
			assert.Equal(t, tc.wantRestarted, c.Restarted)
			assert.Equal(t, tc.wantSamePorts, reflect.DeepEqual(ports, st.Ports), "ports %v, before %v", st.Ports, ports)
			assert.Equal(t, caOf(t, l), string(c.CAPEM))
			for _, u := range kubeconfigUsers(l) {
				assert.Equal(t, st.APIServer, serverOf(t, u.file), u.file)
			}
			_, err = os.Stat(marker)
			if tc.wantRestarted {
				assert.Equal(t, ca, caOf(t, l), "a restart keeps the CA")
				assert.NoError(t, err, "a restart keeps the etcd data")
			} else {
				assert.NotEqual(t, ca, caOf(t, l), "a wipe makes a new CA")
				assert.ErrorIs(t, err, os.ErrNotExist, "a wipe drops the etcd data")
			}
		})
	}
}
