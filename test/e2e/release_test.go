//go:build e2e

package e2e

// Release artefacts against the local cluster: the chart packaged by make
// installs the image make built, and the CLI behaves as a kubectl plugin
// (impersonation refused or allowed exactly as RBAC says, --server and
// --token without a kubeconfig, --request-timeout).

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshrev/meshrev/cli"
	"github.com/meshrev/meshrev/internal/devcluster"
)

// TestReleaseChartInstallsTheImageMakeBuilt runs `make image chart-package`
// as a release does, installs the packaged chart with the real helm and
// checks the manager Deployment and its pods run exactly the image make
// wrote to the OCI layout.
func TestReleaseChartInstallsTheImageMakeBuilt(t *testing.T) {
	root, err := devcluster.RepoRoot()
	require.NoError(t, err)
	dist := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	mk := exec.CommandContext(ctx, "make", "--no-print-directory", "image", "chart-package", "DIST="+dist)
	mk.Dir = root
	out, err := mk.CombinedOutput()
	require.NoError(t, err, "make image chart-package:\n%s", out)
	t.Logf("make image chart-package (%s):\n%s", time.Since(start).Round(time.Second), out)

	refBytes, err := os.ReadFile(filepath.Join(dist, "image.ref"))
	require.NoError(t, err)
	ref := strings.TrimSpace(string(refBytes))
	imageTag, digest, ok := strings.Cut(ref, "@")
	require.True(t, ok, "image.ref is repository:tag@digest: %q", ref)
	version := imageTag[strings.LastIndex(imageTag, ":")+1:]

	// The digest of image.ref is the index in the OCI layout.
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	indexJSON, err := os.ReadFile(filepath.Join(dist, "image", "index.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(indexJSON, &index))
	require.Len(t, index.Manifests, 1)
	assert.Equal(t, digest, index.Manifests[0].Digest)
	assert.Equal(t, version, index.Manifests[0].Annotations["org.opencontainers.image.ref.name"])

	pkg := filepath.Join(dist, "meshrev-"+version+".tgz")
	require.FileExists(t, pkg, "the chart packaged with the image's version")

	managerMu.Lock()
	t.Cleanup(managerMu.Unlock)
	c := ctrlClient(t)
	cs := Client(t)
	helm := newHelm(t)
	ns := NewNamespace(t, "meshrev-release", nil)
	installed := false
	t.Cleanup(func() { chartCleanup(t, c, ns, installed) })
	status := helm.run(t, "install", chartRelease, pkg, "-n", ns, "--wait", "--timeout", "2m")
	installed = true
	assert.Contains(t, status, "STATUS: deployed")
	chartVersion := helm.run(t, "list", "-n", ns, "-o", "json")
	assert.Contains(t, chartVersion, `"chart":"meshrev-`+version+`"`)
	assert.Contains(t, chartVersion, `"app_version":"`+version+`"`)

	d, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "meshrev-manager", metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, d.Spec.Template.Spec.Containers, 1)
	assert.Equal(t, imageTag, d.Spec.Template.Spec.Containers[0].Image, "the chart's default image is the one make image built")
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
	require.NoError(t, err)
	require.NotEmpty(t, pods.Items)
	for _, p := range pods.Items {
		assert.Equal(t, imageTag, p.Spec.Containers[0].Image, "pod %s", p.Name)
	}

	// Pods do not really run on kwok's nodes: run the image's own binary,
	// unpacked from the layout, with the Deployment's arguments and the
	// chart's ServiceAccount, and read the version off its metrics server.
	t.Run("the image's binary runs as the chart's manager and reports its version", func(t *testing.T) {
		bin := unpackImageBinary(t, filepath.Join(dist, "image"), "meshrev-manager")
		container := d.Spec.Template.Spec.Containers[0]
		args := make([]string, 0, len(container.Args)+8)
		for _, a := range container.Args {
			args = append(args, strings.ReplaceAll(a, "$(POD_NAMESPACE)", ns))
		}
		ports := freeLocalPorts(t, 3)
		args = append(args, "--kubeconfig="+serviceAccountKubeconfig(t, cs, ns, chartServiceAccount), "--cert-dir="+t.TempDir(),
			"--webhook-host=127.0.0.1", "--webhook-port="+strconv.Itoa(ports[0]),
			"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(ports[1]), "--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(ports[2]))
		var logs bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case err := <-exited:
				assert.NoError(t, err, "meshrev-manager exits cleanly on SIGINT")
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				t.Error("meshrev-manager did not stop within 60s of SIGINT")
			}
			if t.Failed() {
				t.Logf("meshrev-manager %s\n%s", strings.Join(args, " "), logs.String())
			}
		}()
		var metrics string
		err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
			select {
			case err := <-exited:
				return false, fmt.Errorf("meshrev-manager exited: %v", err)
			default:
			}
			if _, err := httpGet(ctx, "http://127.0.0.1:"+strconv.Itoa(ports[2])+"/readyz"); err != nil {
				return false, nil
			}
			m, err := httpGet(ctx, "http://127.0.0.1:"+strconv.Itoa(ports[1])+"/metrics")
			metrics = m
			return err == nil, nil
		})
		require.NoError(t, err, "the manager from the image became ready")
		var buildInfo string
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "meshrev_build_info{") {
				buildInfo = line
			}
		}
		assert.Contains(t, buildInfo, `version="`+version+`"`)
		assert.True(t, strings.HasSuffix(buildInfo, "} 1"), buildInfo)
		out, err := exec.Command(bin, "--version").Output()
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(out), "meshrev-manager "+version+" (revision "), string(out))
	})
}

// unpackImageBinary writes the file name of the image for this machine's
// platform, read from the OCI layout dir, into a temp dir and returns its path.
func unpackImageBinary(t *testing.T, dir, name string) string {
	t.Helper()
	root, err := layout.ImageIndexFromPath(dir)
	require.NoError(t, err)
	rootManifest, err := root.IndexManifest()
	require.NoError(t, err)
	require.Len(t, rootManifest.Manifests, 1)
	idx, err := root.ImageIndex(rootManifest.Manifests[0].Digest)
	require.NoError(t, err)
	m, err := idx.IndexManifest()
	require.NoError(t, err)
	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	for _, desc := range m.Manifests {
		if desc.Platform == nil || !desc.Platform.Equals(want) {
			continue
		}
		img, err := idx.Image(desc.Digest)
		require.NoError(t, err)
		rc := mutate.Extract(img)
		defer rc.Close()
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			require.NoError(t, err, "no %s in the %s image", name, want)
			if strings.TrimPrefix(h.Name, "/") != name {
				continue
			}
			path := filepath.Join(t.TempDir(), name)
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
			require.NoError(t, err)
			_, err = io.Copy(f, tr)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			return path
		}
	}
	t.Fatalf("no %s image in %s", want, dir)
	return ""
}

// pluginResult is one run of kubectl-meshrev.
type pluginResult struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// runPlugin runs the CLI with exactly args, no kubeconfig of the harness
// and a HOME without ~/.kube: what it connects to comes from the flags.
func runPlugin(ctx context.Context, t *testing.T, bin string, args ...string) pluginResult {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "KUBECONFIG=") || strings.HasPrefix(kv, "HOME=")
	}), "HOME="+t.TempDir())
	start := time.Now()
	err := cmd.Run()
	r := pluginResult{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run kubectl-meshrev %s: %v", strings.Join(args, " "), err)
	}
	shown := slices.Clone(args)
	for i := range shown {
		if i > 0 && shown[i-1] == "--token" {
			shown[i] = "<token>"
		}
	}
	t.Logf("$ kubectl meshrev %s  (exit %d, %s)\n%s%s", strings.Join(shown, " "), r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

// statusAccess is what `meshrev status` reads, in the order it reads it.
var statusAccess = []authorizationv1.ResourceAttributes{
	{Group: "meshrev.io", Resource: "meshes", Verb: "get", Name: "default"},
	{Resource: "namespaces", Verb: "list"},
	{Resource: "pods", Verb: "list"},
}

// accessDenied asks the API server's authorizer (SubjectAccessReview)
// whether user in groups may do what status does, and returns the first
// thing it may not do, or nil when it may do all.
func accessDenied(t *testing.T, user string, groups []string) *authorizationv1.ResourceAttributes {
	t.Helper()
	for _, a := range statusAccess {
		sar, err := Client(t).AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: append([]string{"system:authenticated"}, groups...), ResourceAttributes: &a},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		if !sar.Status.Allowed {
			return &a
		}
	}
	return nil
}

// TestPluginImpersonationFollowsRBAC runs `kubectl meshrev status --as` and
// --as-group as identities with no, partial and full read access, and
// checks the CLI is refused or allowed exactly as the authorizer says.
func TestPluginImpersonationFollowsRBAC(t *testing.T) {
	bin := cliBinary(t)
	startManager(t)
	cliCreateMesh(t)
	cs := Client(t)
	ctx := t.Context()

	ns := NewNamespace(t, "plugin-rbac", nil)
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	sa := "system:serviceaccount:" + ns + ":viewer"
	group := "meshrev-viewers-" + rand.String(5)

	// Two roles: the Mesh alone, and everything status reads.
	suffix := rand.String(5)
	meshOnly, full := "meshrev-mesh-reader-"+suffix, "meshrev-status-reader-"+suffix
	roles := map[string][]rbacv1.PolicyRule{
		meshOnly: {{APIGroups: []string{"meshrev.io"}, Resources: []string{"meshes"}, Verbs: []string{"get"}}},
		full: {
			{APIGroups: []string{"meshrev.io"}, Resources: []string{"meshes"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"namespaces", "pods"}, Verbs: []string{"list"}},
		},
	}
	for name, rules := range roles {
		_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = cs.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	bind := func(t *testing.T, role string, subject rbacv1.Subject) {
		t.Helper()
		name := role + "-" + rand.String(5)
		_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{subject},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		t.Cleanup(func() {
			_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}
	admin := meshrev(t, bin, "status", "-o", "json").ok(t)

	// expect runs status as user (and groups) and checks the outcome is the
	// authorizer's answer: allowed prints what the admin sees, refused names
	// the first request RBAC denies. RBAC bindings take effect as the API
	// server's informers see them, so the authorizer is polled until it
	// gives the answer the test set up.
	expect := func(t *testing.T, wantDenied string, user string, groups ...string) {
		t.Helper()
		var denied *authorizationv1.ResourceAttributes
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			denied = accessDenied(t, user, groups)
			got := ""
			if denied != nil {
				got = denied.Resource
			}
			return got == wantDenied, nil
		})
		require.NoError(t, err, "the authorizer did not come to deny %q for %s (last: %+v)", wantDenied, user, denied)
		args := []string{"--kubeconfig", Env().KubeconfigPath, "status", "-o", "json", "--as", user}
		for _, g := range groups {
			args = append(args, "--as-group", g)
		}
		r := runPlugin(ctx, t, bin, args...)
		if denied == nil {
			require.Equal(t, 0, r.code, "RBAC allows %s everything status reads:\n%s", user, r.stderr)
			var got, want cli.StatusView
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
			require.NoError(t, json.Unmarshal([]byte(admin.stdout), &want))
			assert.Equal(t, want.Stable, got.Stable)
			assert.Equal(t, want.Revisions, got.Revisions, "the same Mesh as the admin sees")
			return
		}
		assert.Equal(t, 1, r.code, "RBAC denies %s %s %s", user, denied.Verb, denied.Resource)
		assert.Contains(t, r.stderr, fmt.Sprintf("User %q cannot %s resource %q", user, denied.Verb, denied.Resource))
		assert.Empty(t, r.stdout)
	}

	t.Run("a ServiceAccount without a binding is refused the Mesh", func(t *testing.T) {
		expect(t, "meshes", sa)
	})
	t.Run("with the Mesh alone it is refused the namespaces", func(t *testing.T) {
		bind(t, meshOnly, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "viewer", Namespace: ns})
		expect(t, "namespaces", sa)
	})
	t.Run("with everything status reads it is allowed", func(t *testing.T) {
		bind(t, full, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "viewer", Namespace: ns})
		expect(t, "", sa)
	})
	t.Run("--as-group grants what the group is bound to, and only with the group", func(t *testing.T) {
		bind(t, full, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: group})
		expect(t, "", "jane@example.com", group)
		expect(t, "meshes", "jane@example.com")
	})
}

// TestPluginConnectsWithServerAndToken runs the CLI with no kubeconfig at
// all: --server, --token and --certificate-authority (or
// --insecure-skip-tls-verify) are the whole connection, as with kubectl.
// --request-timeout bounds a request to a server that never answers.
func TestPluginConnectsWithServerAndToken(t *testing.T) {
	bin := cliBinary(t)
	startManager(t)
	cliCreateMesh(t)
	cs := Client(t)
	ctx := t.Context()

	ns := NewNamespace(t, "plugin-token", nil)
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "operator"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	binding := "meshrev-plugin-token-" + rand.String(5)
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: binding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "operator", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding, metav1.DeleteOptions{})
	})
	// view does not cover meshrev.io; a role for the Mesh.
	role := "meshrev-plugin-mesh-" + rand.String(5)
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"meshrev.io"}, Resources: []string{"meshes"}, Verbs: []string{"get"}}, {APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list"}}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.RbacV1().ClusterRoles().Delete(context.Background(), role, metav1.DeleteOptions{}) })
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "operator", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), role, metav1.DeleteOptions{})
	})
	sa := "system:serviceaccount:" + ns + ":operator"
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return accessDenied(t, sa, []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}) == nil, nil
	})
	require.NoError(t, err, "the bindings take effect")

	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "operator", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(3600))},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	token := tr.Status.Token
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(caFile, Env().CAPEM, 0o600))
	server := Env().Config.Host

	t.Run("--server, --token and --certificate-authority without a kubeconfig", func(t *testing.T) {
		r := runPlugin(ctx, t, bin, "status", "-o", "json", "--server", server, "--token", token, "--certificate-authority", caFile)
		require.Equal(t, 0, r.code, r.stderr)
		var v cli.StatusView
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &v))
		assert.Equal(t, "1-22-6", v.Stable)
	})
	t.Run("-s and --insecure-skip-tls-verify", func(t *testing.T) {
		r := runPlugin(ctx, t, bin, "status", "-s", server, "--token", token, "--insecure-skip-tls-verify")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stdout, "1-22-6")
	})
	t.Run("the server's certificate is checked without either", func(t *testing.T) {
		r := runPlugin(ctx, t, bin, "status", "--server", server, "--token", token)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "certificate signed by unknown authority")
	})
	t.Run("a wrong token is unauthorized", func(t *testing.T) {
		r := runPlugin(ctx, t, bin, "status", "--server", server, "--token", "not-a-token", "--certificate-authority", caFile)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "the server has asked for the client to provide credentials", "401 Unauthorized")
	})
	t.Run("a valid --request-timeout against the cluster", func(t *testing.T) {
		r := runPlugin(ctx, t, bin, "status", "--server", server, "--token", token, "--certificate-authority", caFile, "--request-timeout", "30s")
		assert.Equal(t, 0, r.code, r.stderr)
	})

	t.Run("--request-timeout ends a request the server never answers", func(t *testing.T) {
		// A TLS server that accepts every request and never answers.
		stalled := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}))
		t.Cleanup(stalled.Close)
		r := runPlugin(ctx, t, bin, "status", "--server", stalled.URL, "--insecure-skip-tls-verify", "--token", "x", "--request-timeout", "1s")
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "?timeout=1s", "the request carries the timeout")
		// client-go bounds the request twice (http.Client.Timeout and the
		// request's context); whichever fires first words the error.
		assert.Regexp(t, `Client\.Timeout exceeded|context deadline exceeded`, r.stderr)
		assert.Less(t, r.took, 20*time.Second, "ended by the 1s request timeout")

		// Without it the same command is still waiting 5s later.
		waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		cmd := exec.CommandContext(waitCtx, bin, "status", "--server", stalled.URL, "--insecure-skip-tls-verify", "--token", "x")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "KUBECONFIG=")
		err := cmd.Run()
		require.Error(t, err)
		assert.ErrorIs(t, waitCtx.Err(), context.DeadlineExceeded, "killed by the test's deadline, not ended by itself: %v", err)
	})
}
