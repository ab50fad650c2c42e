package cli

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/cli/dashboard"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func TestDashboardStateIsWhatStatusAndDataplaneStatusSay(t *testing.T) {
	mesh := &v1alpha1.Mesh{
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.MeshName, Generation: 3},
		Spec: v1alpha1.MeshSpec{
			Revisions: []v1alpha1.Revision{{Name: "1-22-6", Version: "1.22.6"}, {Name: "1-23-6", Version: "1.23.6"}},
			Stable:    "1-22-6", Canary: "1-23-6",
		},
		Status: v1alpha1.MeshStatus{
			ObservedGeneration: 3,
			DataPlane:          v1alpha1.DataPlaneStatus{Pods: 5, UpToDate: 4, Outdated: 1},
			History:            []v1alpha1.HistoryEntry{{Action: "Install", To: "1-22-6"}, {Action: "DeployCanary", From: "1-22-6", To: "1-23-6"}},
		},
	}
	nsLabels := map[string]map[string]string{
		"shop":     {revisions.LabelRev: revisions.TagCanary, "team": "a"},
		"legacy":   {revisions.LabelInjection: revisions.InjectionEnabled},
		"off":      {revisions.LabelInjection: revisions.InjectionDisabled},
		"plain":    {},
		"zz-later": {revisions.LabelRev: "1-22-6"},
	}
	outdated := []v1alpha1.WorkloadStatus{{Kind: "Deployment", Namespace: "edge", Name: "gw", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1, Gateway: true}}
	st := dashboardState(mesh, nsLabels, outdated, defaultOwnNamespace)

	sv := buildStatusView(mesh, nsLabels, nil, defaultOwnNamespace)
	assert.Equal(t, sv.Phase, st.Phase, "the phase is revisions.Phase's, as in meshrev status")
	assert.Equal(t, dashboard.Next{Text: sv.Next.Text, Command: sv.Next.Command}, st.Next)
	require.Len(t, st.Revisions, 2)
	assert.Equal(t, []string{"stable"}, st.Revisions[0].Tags)
	assert.Equal(t, []string{"canary"}, st.Revisions[1].Tags)
	assert.Equal(t, dashboard.Counts{Pods: 5, UpToDate: 4, Outdated: 1}, st.DataPlane)
	assert.Equal(t, outdated, st.Workloads)
	assert.Equal(t, mesh.Status.History, st.History)

	tests := map[string]struct {
		ns       string
		want     dashboard.Namespace
		position int
	}{
		"a namespace on the canary tag resolves to the canary": {ns: "shop", position: 3,
			want: dashboard.Namespace{Name: "shop", Labels: []string{"istio.io/rev=canary", "team=a"}, Label: "istio.io/rev=canary", Revision: "1-23-6", Reason: string(revisions.ReasonNamespaceRevisionLabel)}},
		"istio-injection=enabled resolves to stable": {ns: "legacy", position: 0,
			want: dashboard.Namespace{Name: "legacy", Labels: []string{"istio-injection=enabled"}, Label: "istio-injection=enabled", Revision: "1-22-6", Reason: string(revisions.ReasonNamespaceInjectionEnabled)}},
		"a disabled namespace gets no sidecar": {ns: "off", position: 1,
			want: dashboard.Namespace{Name: "off", Labels: []string{"istio-injection=disabled"}, Label: "istio-injection=disabled", Reason: string(revisions.ReasonNamespaceDisabled)}},
		"an unlabelled namespace is listed too, with no sidecar": {ns: "plain", position: 2,
			want: dashboard.Namespace{Name: "plain", Label: "no injection label", Reason: string(revisions.Resolve(&mesh.Spec, defaultOwnNamespace, revisions.Subject{Namespace: "plain"}).Reason)}},
	}
	require.Len(t, st.Namespaces, len(nsLabels), "every namespace, labelled or not")
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, st.Namespaces[tc.position], "sorted by name")
		})
	}
}

// listRecorder records the options of its lists.
type listRecorder struct {
	client.Reader
	opts []client.ListOption
}

func (l *listRecorder) List(_ context.Context, _ client.ObjectList, opts ...client.ListOption) error {
	l.opts = opts
	return nil
}

func TestUnpagedReaderDropsOnlyTheLimit(t *testing.T) {
	rec := &listRecorder{}
	r := unpagedReader{rec}
	require.NoError(t, r.List(context.Background(), &v1alpha1.MeshList{}, client.Limit(500), client.InNamespace("a"), client.HasLabels{"x"}))
	assert.Equal(t, []client.ListOption{client.InNamespace("a"), client.HasLabels{"x"}}, rec.opts, "a cache would cut its one page at the limit")
}

func TestOpenBrowserRunsTheDesktopsOpener(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatalf("this test fakes xdg-open, the opener on linux; %s uses another", runtime.GOOS)
	}
	dir := t.TempDir()
	got := filepath.Join(dir, "opened")
	script := "#!/bin/sh\nprintf '%s' \"$1\" > " + got + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "xdg-open"), []byte(script), 0o755))
	t.Setenv("PATH", dir)

	url := "http://127.0.0.1:8421/?token=ABC"
	require.NoError(t, openBrowser(url))
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(got)
		return err == nil && string(b) == url
	}, 10*time.Second, 20*time.Millisecond, "xdg-open was given the dashboard's URL")
}

func TestDashboardRefusesWhatIsNotAPort(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"a port above 65535 is refused":   {args: []string{"dashboard", "--port", "70000"}, want: "--port 70000 is not a port"},
		"a negative port is refused":      {args: []string{"dashboard", "--port=-1"}, want: "--port -1 is not a port"},
		"the dashboard takes no argument": {args: []string{"dashboard", "now"}, want: "takes no arguments"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := Run(context.Background(), Options{Streams: IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}}, tc.args)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut.String(), tc.want)
			assert.Empty(t, out.String(), "no URL printed")
		})
	}
}
