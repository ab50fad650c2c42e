package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubectlFlags are the connection flags every kubectl plugin takes.
var kubectlFlags = []string{"kubeconfig", "context", "cluster", "user", "as", "as-group", "token", "server",
	"certificate-authority", "insecure-skip-tls-verify", "request-timeout"}

func TestEveryVerbTakesKubectlsConnectionFlags(t *testing.T) {
	root := NewCommand(Options{Name: "kubectl-meshrev"})
	var verbs []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() {
			verbs = append(verbs, c)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	require.Greater(t, len(verbs), 10, "the walk found the verbs")
	// The verbs whose objects live in one namespace take -n; cluster-wide
	// ones (the Mesh, namespace labels) do not.
	takesNamespace := map[string]bool{
		"kubectl meshrev check-inject": true, "kubectl meshrev dataplane status": true, "kubectl meshrev dataplane upgrade": true,
		"kubectl meshrev redeploy": true, "kubectl meshrev verify": true,
	}
	for _, v := range verbs {
		for _, name := range kubectlFlags {
			assert.NotNil(t, v.InheritedFlags().Lookup(name), "%s --%s", v.CommandPath(), name)
		}
		assert.NotNil(t, v.InheritedFlags().ShorthandLookup("s"), "%s -s (kubectl's --server shorthand)", v.CommandPath())
		ns := v.LocalFlags().Lookup("namespace")
		if ns == nil {
			ns = v.InheritedFlags().Lookup("namespace")
		}
		if takesNamespace[v.CommandPath()] {
			require.NotNil(t, ns, "%s -n", v.CommandPath())
			assert.Equal(t, "n", ns.Shorthand)
		} else {
			assert.Nil(t, ns, "%s takes no namespace: -n would be silently ignored", v.CommandPath())
		}
	}
}

// writeKubeconfig writes a kubeconfig with two contexts, "a" (current,
// namespace team-a) and "b", two clusters and two users, and returns its path.
func writeKubeconfig(t *testing.T, dir string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster-a"] = &clientcmdapi.Cluster{Server: "https://a.example.com:6443"}
	kc.Clusters["cluster-b"] = &clientcmdapi.Cluster{Server: "https://b.example.com:6443", InsecureSkipTLSVerify: true}
	kc.AuthInfos["user-a"] = &clientcmdapi.AuthInfo{Token: "token-a"}
	kc.AuthInfos["user-b"] = &clientcmdapi.AuthInfo{Token: "token-b"}
	kc.Contexts["a"] = &clientcmdapi.Context{Cluster: "cluster-a", AuthInfo: "user-a", Namespace: "team-a"}
	kc.Contexts["b"] = &clientcmdapi.Context{Cluster: "cluster-b", AuthInfo: "user-b", Namespace: "team-b"}
	kc.CurrentContext = "a"
	path := filepath.Join(dir, "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*kc, path))
	return path
}

// parsedGlobals returns the globals of a root command that parsed args.
func parsedGlobals(t *testing.T, args ...string) (*globals, error) {
	t.Helper()
	var errOut bytes.Buffer
	g := &globals{streams: IOStreams{Out: &bytes.Buffer{}, ErrOut: &errOut}}
	cmd := &cobra.Command{Use: "meshrev"}
	g.addFlags(cmd)
	require.NoError(t, cmd.ParseFlags(args))
	return g, g.validate()
}

func TestConnectionFlagsOverrideTheKubeconfigAsInKubectl(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, dir)
	ca := filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte("not read until a request is made"), 0o600))
	tests := map[string]struct {
		args   []string
		want   func(c *rest.Config)
		wantNS string
	}{
		"the current context": {
			want:   func(*rest.Config) {},
			wantNS: "team-a",
		},
		"--context picks another context": {
			args: []string{"--context=b"},
			want: func(c *rest.Config) {
				c.Host, c.BearerToken, c.Insecure = "https://b.example.com:6443", "token-b", true
			},
			wantNS: "team-b",
		},
		"--cluster and --user replace the context's": {
			args: []string{"--cluster=cluster-b", "--user=user-b"},
			want: func(c *rest.Config) {
				c.Host, c.BearerToken, c.Insecure = "https://b.example.com:6443", "token-b", true
			},
			wantNS: "team-a",
		},
		"--server, --token and --certificate-authority": {
			args: []string{"--server=https://127.0.0.1:7443", "--token=t0k3n", "--certificate-authority=" + ca},
			want: func(c *rest.Config) {
				c.Host, c.BearerToken, c.CAFile = "https://127.0.0.1:7443", "t0k3n", ca
			},
			wantNS: "team-a",
		},
		"-s and --insecure-skip-tls-verify": {
			args: []string{"-s", "https://127.0.0.1:7443", "--insecure-skip-tls-verify"},
			want: func(c *rest.Config) {
				c.Host, c.Insecure = "https://127.0.0.1:7443", true
			},
			wantNS: "team-a",
		},
		"--as and --as-group impersonate": {
			args: []string{"--as=system:serviceaccount:team-a:viewer", "--as-group=viewers", "--as-group=auditors"},
			want: func(c *rest.Config) {
				c.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:team-a:viewer", Groups: []string{"viewers", "auditors"}}
			},
			wantNS: "team-a",
		},
		"--request-timeout in seconds or as a duration": {
			args: []string{"--request-timeout=1m30s"},
			want: func(c *rest.Config) {
				c.Timeout = 90 * time.Second
			},
			wantNS: "team-a",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g, err := parsedGlobals(t, append([]string{"--kubeconfig=" + kubeconfig}, tc.args...)...)
			require.NoError(t, err)
			got, err := g.restConfig()
			require.NoError(t, err)
			want := &rest.Config{Host: "https://a.example.com:6443", BearerToken: "token-a"}
			tc.want(want)
			assert.Equal(t, want.Host, got.Host)
			assert.Equal(t, want.BearerToken, got.BearerToken)
			assert.Equal(t, want.Insecure, got.Insecure)
			assert.Equal(t, want.CAFile, got.CAFile)
			assert.Equal(t, want.Impersonate.UserName, got.Impersonate.UserName)
			assert.Equal(t, want.Impersonate.Groups, got.Impersonate.Groups)
			assert.Equal(t, want.Timeout, got.Timeout)
			assert.Equal(t, "meshrev-cli", got.UserAgent)
			ns, err := g.contextNamespace()
			require.NoError(t, err)
			assert.Equal(t, tc.wantNS, ns)
		})
	}
}

func TestAnInvalidRequestTimeoutIsRefusedBeforeTheAPIIsCalled(t *testing.T) {
	code, _, stderr := run(t, "", "--request-timeout=soon", "status")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "--request-timeout=soon: Invalid timeout value")
	assert.NotContains(t, stderr, "load kubeconfig", "refused before the kubeconfig is read")
}

func TestTheKubeconfigIsReadOnce(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, dir)
	g, err := parsedGlobals(t, "--kubeconfig="+kubeconfig)
	require.NoError(t, err)
	ns, err := g.contextNamespace()
	require.NoError(t, err)
	assert.Equal(t, "team-a", ns)

	// Whatever happens to the file after the first read, the command
	// goes on with what it read: the namespace and the connection come
	// from one and the same kubeconfig.
	require.NoError(t, os.WriteFile(kubeconfig, []byte("this is: [not a kubeconfig"), 0o600))
	cfg, err := g.restConfig()
	require.NoError(t, err)
	assert.Equal(t, "https://a.example.com:6443", cfg.Host)
	require.NoError(t, os.Remove(kubeconfig))
	again, err := g.restConfig()
	require.NoError(t, err)
	assert.Same(t, cfg, again)
	ns, err = g.contextNamespace()
	require.NoError(t, err)
	assert.Equal(t, "team-a", ns)

	// A fresh command reads the file again, and so sees it is gone.
	g2, err := parsedGlobals(t, "--kubeconfig="+kubeconfig)
	require.NoError(t, err)
	_, err = g2.restConfig()
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "load kubeconfig:"), err.Error())
}
