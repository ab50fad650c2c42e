package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	labelselection "k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/cli/dashboard"
	"github.com/meshrev/meshrev/internal/readmodel"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// dashboardOptions are the inputs of "dashboard".
type dashboardOptions struct {
	*globals
	port int
	open bool
}

func newDashboardCommand(g *globals) *cobra.Command {
	o := &dashboardOptions{globals: g}
	cmd := &cobra.Command{
		Use:   "dashboard [--port 0] [--open]",
		Short: "Serve the upgrade as live web pages on 127.0.0.1, with a button for every step",
		Long: `Serve a local web dashboard on 127.0.0.1: the revision diagram with the phase and
the next step, the namespaces and the revision each resolves to, the data plane
by owner with gateways marked, and the history, kept live from watches on the
Mesh, the namespaces and the injected pods' metadata.

Every button runs the same code as the CLI verb (canary deploy, namespace
switch, promote, dataplane upgrade, unpublish, revoke) with your kubeconfig's
credentials, so what you may do is exactly what your RBAC allows; a refused
step shows the server's message. The URL printed carries a random token that
every request must present; the server answers on the loopback address only.`,
		Example: `  meshrev dashboard --open
  meshrev dashboard --port 8421`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context()) },
	}
	cmd.Flags().IntVar(&o.port, "port", 0, "port to listen on at 127.0.0.1 (0: a free port)")
	cmd.Flags().BoolVar(&o.open, "open", false, "open the dashboard in the default browser (xdg-open, open)")
	return cmd
}

func (o *dashboardOptions) run(ctx context.Context) error {
	if o.port < 0 || o.port > 65535 {
		return fmt.Errorf("dashboard: --port %d is not a port", o.port)
	}
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	backend, err := newDashboardBackend(ctx, o.globals, cfg)
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	// The server's own errors (a template that fails) go to stderr.
	log := funcr.New(func(prefix, args string) { fmt.Fprintln(o.streams.ErrOut, prefix, args) }, funcr.Options{})
	srv, err := dashboard.New(dashboard.Options{Backend: backend, Token: rand.Text(), Log: log})
	if err != nil {
		return err
	}
	backend.notify = srv.Notify
	if err := backend.watch(ctx); err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	go srv.Run(ctx)

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(o.port)))
	if err != nil {
		return fmt.Errorf("dashboard: listen: %w", err)
	}
	url := fmt.Sprintf("http://%s/?token=%s", ln.Addr(), srv.Token())
	fmt.Fprintf(o.streams.Out, "meshrev dashboard for %s: %s\nPress Ctrl-C to stop.\n", cfg.Host, url)
	if o.open {
		if err := openBrowser(url); err != nil {
			fmt.Fprintf(o.streams.ErrOut, "could not open a browser (%v): open the URL above yourself\n", err)
		}
	}
	// Requests live in ctx: stopping the dashboard ends the event streams.
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		shutdown, done := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer done()
		_ = hs.Shutdown(shutdown)
	}()
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("dashboard: serve: %w", err)
	}
	return nil
}

// openBrowser opens url in the desktop's browser without waiting for it.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// dashboardBackend reads the dashboard's state from watches' caches with
// the functions of "meshrev status" and "meshrev dataplane status", and
// takes its steps with the verbs' own code.
type dashboardBackend struct {
	g      *globals
	cfg    *rest.Config
	cache  cache.Cache
	reader client.Reader
	notify func()
}

func newDashboardBackend(ctx context.Context, g *globals, cfg *rest.Config) (*dashboardBackend, error) {
	s, err := readmodel.Scheme()
	if err != nil {
		return nil, err
	}
	injected, err := labels.NewRequirement(revisions.LabelRevision, labelselection.Exists, nil)
	if err != nil {
		return nil, err
	}
	// Only the injected pods' metadata is watched: what the data-plane
	// report reads, and nothing the dashboard does not show.
	c, err := cache.New(cfg, cache.Options{
		Scheme: s,
		ByObject: map[client.Object]cache.ByObject{
			readmodel.PodMeta(): {Label: labels.NewSelector().Add(*injected)},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watch the cluster: %w", err)
	}
	return &dashboardBackend{g: g, cfg: cfg, cache: c, reader: unpagedReader{c}, notify: func() {}}, nil
}

// watch starts the watches of the Mesh, the namespaces, the injected pods'
// metadata and the ReplicaSets' (the pods' owners), waits for them to
// sync, and calls notify on every change.
func (b *dashboardBackend) watch(ctx context.Context) error {
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { b.notify() },
		UpdateFunc: func(any, any) { b.notify() },
		DeleteFunc: func(any) { b.notify() },
	}
	for _, obj := range []client.Object{&v1alpha1.Mesh{}, &corev1.Namespace{}, readmodel.PodMeta(), readmodel.ReplicaSetMeta()} {
		inf, err := b.cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watch %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watch %T: %w", obj, err)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- b.cache.Start(ctx) }()
	syncCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if !b.cache.WaitForCacheSync(syncCtx) {
		select {
		case err := <-errc:
			return fmt.Errorf("watch the cluster: %w", err)
		default:
		}
		return errors.New("watch the cluster: the watches did not sync within 2 minutes (can your kubeconfig's user list and watch meshes, namespaces, pods and replicasets?)")
	}
	return nil
}

// unpagedReader drops client.Limit from lists: the read model pages its
// lists from the API server, but a cache answers in one page and would cut
// the list at the limit.
type unpagedReader struct{ client.Reader }

func (r unpagedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	kept := slices.DeleteFunc(slices.Clone(opts), func(o client.ListOption) bool {
		_, limit := o.(client.Limit)
		return limit
	})
	return r.Reader.List(ctx, list, kept...)
}

// State reads the dashboard's state from the caches.
func (b *dashboardBackend) State(ctx context.Context) *dashboard.State {
	st, err := b.state(ctx)
	if err != nil {
		return &dashboard.State{Error: err.Error()}
	}
	return st
}

func (b *dashboardBackend) state(ctx context.Context) (*dashboard.State, error) {
	mesh, err := getMesh(ctx, b.reader)
	if err != nil {
		return nil, err
	}
	nsLabels, err := readmodel.Namespaces(ctx, b.reader)
	if err != nil {
		return nil, err
	}
	outdated, err := outdatedWorkloads(ctx, b.reader, mesh, b.g.ownNamespace, "")
	if err != nil {
		return nil, err
	}
	return dashboardState(mesh, nsLabels, outdated, b.g.ownNamespace), nil
}

// dashboardState is the pages' state: the status view of "meshrev status"
// (revisions.Phase, revisions.Next, the boxes), every namespace resolved
// with revisions.Resolve, the data-plane view of "meshrev dataplane status"
// and the Mesh's history. Pure, like buildStatusView.
func dashboardState(mesh *v1alpha1.Mesh, nsLabels map[string]map[string]string, outdated []v1alpha1.WorkloadStatus, ownNamespace string) *dashboard.State {
	sv := buildStatusView(mesh, nsLabels, nil, ownNamespace)
	dv := buildDataPlaneView(mesh, outdated, "")
	st := &dashboard.State{
		Mesh:      sv.Mesh,
		Phase:     sv.Phase,
		Stable:    sv.Stable,
		Canary:    sv.Canary,
		Previous:  sv.Previous,
		Stale:     sv.Stale,
		Next:      dashboard.Next{Text: sv.Next.Text, Command: sv.Next.Command},
		DataPlane: dashboard.Counts{Pods: sv.DataPlane.Pods, UpToDate: sv.DataPlane.UpToDate, Outdated: sv.DataPlane.Outdated},
		Workloads: dv.Workloads,
		History:   mesh.Status.History,
	}
	for _, r := range sv.Revisions {
		st.Revisions = append(st.Revisions, dashboard.Revision{
			Name: r.Name, Version: r.Version, Tags: r.Tags,
			ControlPlane: r.ControlPlane, ServiceType: r.ServiceType, Pods: r.Pods,
		})
	}
	for _, ns := range slices.Sorted(maps.Keys(nsLabels)) {
		l := nsLabels[ns]
		d := revisions.Resolve(&mesh.Spec, ownNamespace, revisions.Subject{Namespace: ns, NamespaceLabels: l})
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(l)) {
			kv = append(kv, k+"="+l[k])
		}
		st.Namespaces = append(st.Namespaces, dashboard.Namespace{
			Name: ns, Labels: kv, Label: injectionLabel(l), Revision: d.RevisionName(), Reason: string(d.Reason),
		})
	}
	return st
}

// Do takes one step with the code of its verb, as if run with --yes (the
// page asked for confirmation), writing the verb's output and the API
// server's warnings to out.
func (b *dashboardBackend) Do(ctx context.Context, a dashboard.Action, out io.Writer) error {
	g := b.stepGlobals(out)
	switch a.Step {
	case dashboard.StepCanaryDeploy:
		return (&canaryDeployOptions{globals: g}).execute(ctx, []string{a.Version})
	case dashboard.StepNamespaceSwitch:
		o := &namespaceOptions{globals: g, verb: "namespace switch", mode: modeRevision, revision: a.To}
		return o.execute(ctx, []string{a.Namespace})
	case dashboard.StepPromote:
		return (&stepOptions{globals: g, yes: true, force: a.Force}).runPromote(ctx)
	case dashboard.StepUnpublish:
		return (&stepOptions{globals: g, yes: true, force: a.Force}).runUnpublish(ctx)
	case dashboard.StepRevoke:
		return (&stepOptions{globals: g, yes: true}).runRevoke(ctx)
	case dashboard.StepDataplaneUpgrade:
		o := &dataplaneUpgradeOptions{
			globals: g, namespace: a.Namespace, all: a.All, gateways: a.Gateways, batch: a.Batch,
			wait: true, timeout: defaultTimeout,
		}
		return o.execute(ctx, a.Workloads)
	}
	return fmt.Errorf("unknown step %q", a.Step)
}

// stepGlobals are the globals a step runs with: its output and the API
// server's warnings go to out, nothing is read from stdin, output is the
// table's.
func (b *dashboardBackend) stepGlobals(out io.Writer) *globals {
	cfg := rest.CopyConfig(b.cfg)
	cfg.WarningHandler = rest.NewWarningWriter(out, rest.WarningWriterOptions{Deduplicate: true})
	return &globals{
		streams:      IOStreams{In: strings.NewReader(""), Out: out, ErrOut: out},
		isTerminal:   func(any) bool { return false },
		now:          b.g.now,
		config:       b.g.config,
		output:       outputTable,
		ownNamespace: b.g.ownNamespace,
		restCfg:      cfg,
	}
}
