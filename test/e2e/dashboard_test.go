//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshrev/meshrev/cli"
	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// The dashboard test drives "meshrev dashboard" (in-process, as the CLI
// runs it, against the harness's real manager and API server) with
// headless Chromium: it walks the seed's canary upgrade by clicking the
// page's buttons, checks each page against the cluster, and saves a
// screenshot of each page under the test's artifact directory (go test
// -artifacts keeps them; make test-e2e passes it).

// chromiumEnv overrides the browser binary.
const chromiumEnv = "MESHREV_CHROMIUM"

// chromiumPath is the Chromium the test drives: $MESHREV_CHROMIUM, else
// Debian's /usr/bin/chromium. Missing, the test fails saying how to
// install it (make chromium does).
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv(chromiumEnv)
	if p == "" {
		p = "/usr/bin/chromium"
	}
	_, err := os.Stat(p)
	require.NoError(t, err, "the dashboard test needs Chromium: run `make chromium` (as root: apt-get install -y chromium) or set %s", chromiumEnv)
	return p
}

// startDashboard runs "meshrev dashboard --port 0" in-process and returns
// its URL (with the token).
func startDashboard(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, cli.Options{Streams: cli.IOStreams{In: strings.NewReader(""), Out: pw, ErrOut: pw}},
			[]string{"--kubeconfig", Env().KubeconfigPath, "dashboard", "--port", "0"})
		pw.Close()
	}()
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			t.Logf("dashboard: %s", line)
			if i := strings.Index(line, "http://127.0.0.1:"); i >= 0 {
				select {
				case urls <- line[i:]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			assert.Equal(t, 0, code, "the dashboard stops cleanly on cancel")
		case <-time.After(10 * time.Second):
			t.Error("the dashboard did not stop within 10s of its context ending")
		}
	})
	select {
	case u := <-urls:
		return u
	case code := <-done:
		t.Fatalf("meshrev dashboard exited with %d before printing its URL", code)
	case <-time.After(2 * time.Minute):
		t.Fatal("meshrev dashboard printed no URL within 2 minutes")
	}
	return ""
}

// browser is one headless Chromium tab on the dashboard.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	token string
	shots string
	n     int
}

func newBrowser(t *testing.T, url string) *browser {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, and lives as long as ctx: no timeout here.
	require.NoError(t, chromedp.Do(ctx), "start Chromium")

	base, query, ok := strings.Cut(url, "/?")
	require.True(t, ok, "the URL carries the token: %s", url)
	token, ok := strings.CutPrefix(query, "token=")
	require.True(t, ok, "the URL carries the token: %s", url)
	b := &browser{t: t, ctx: ctx, base: base, token: token, shots: t.ArtifactDir()}
	t.Logf("screenshots go to %s", b.shots)
	return b
}

// run runs chromedp actions with a timeout.
func (b *browser) run(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// evaluate evaluates a JavaScript expression into a T, with a timeout.
func evaluate[T any](b *browser, timeout time.Duration, js string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js))
}

// evalAs evaluates a JavaScript expression into a T.
func evalAs[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := evaluate[T](b, 30*time.Second, js)
	require.NoError(b.t, err, "evaluate %s", js)
	return v
}

// open loads a page and waits until its event stream is connected.
func (b *browser) open(path string) {
	b.t.Helper()
	require.NoError(b.t, b.run(30*time.Second, chromedp.Navigate(b.base+path+"?token="+b.token)), "open %s", path)
	b.wait("the page's event stream is connected", `document.getElementById("live").dataset.state === "live"`, 30*time.Second)
}

// text is the text content of the first element matching selector ("" when none).
func (b *browser) text(selector string) string {
	b.t.Helper()
	return evalAs[string](b, fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent`, selector))
}

// wait polls cond (a JavaScript boolean expression) until it holds and
// returns how long that took.
func (b *browser) wait(what, cond string, timeout time.Duration) time.Duration {
	b.t.Helper()
	start := time.Now()
	err := wait.PollUntilContextTimeout(b.ctx, 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, err := evaluate[bool](b, 10*time.Second, cond)
		return err == nil && ok, nil
	})
	require.NoError(b.t, err, "the page never showed %s (%s); activity: %q %q", what, cond, b.text("#step-status"), b.text("#step-error"))
	return time.Since(start)
}

// click clicks the element matching selector.
func (b *browser) click(selector string) {
	b.t.Helper()
	require.NoError(b.t, b.run(30*time.Second, chromedp.Click(chromedp.CSS(selector), chromedp.NodeVisible)), "click %s", selector)
}

// input sets a form field's value as typing would (an input event).
func (b *browser) input(selector, value string) {
	b.t.Helper()
	ok := evalAs[bool](b, fmt.Sprintf(`(() => { const el = document.querySelector(%s); if (!el) return false;
		el.value = %s; el.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`, jsString(selector), jsString(value)))
	require.True(b.t, ok, "no %s on the page", selector)
}

// confirm answers the page's confirmation dialog.
func (b *browser) confirm(ok bool) string {
	b.t.Helper()
	b.wait("the confirmation dialog", `document.getElementById("confirm").open`, 10*time.Second)
	question := b.text("#confirm-text")
	if ok {
		b.click("#confirm-ok")
	} else {
		b.click("#confirm-cancel")
	}
	return question
}

// stepResult waits for the step the page is running to end and returns
// the status line, the error shown (verbatim) and the step's output.
type pageStep struct {
	status, err, log string
	// sawProgress is set when output lines showed while the step still ran.
	sawProgress bool
}

func (b *browser) finish(timeout time.Duration) pageStep {
	b.t.Helper()
	var res pageStep
	err := wait.PollUntilContextTimeout(b.ctx, 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		s, err := evaluate[struct{ Status, Err, Log string }](b, 10*time.Second, `({status: document.getElementById("step-status").textContent,
			err: document.getElementById("step-error").textContent, log: document.getElementById("step-log").textContent})`)
		if err != nil {
			return false, nil
		}
		if strings.HasPrefix(s.Status, "Running") && s.Log != "" {
			res.sawProgress = true
		}
		res.status, res.err, res.log = s.Status, s.Err, s.Log
		return strings.HasPrefix(s.Status, "Done") || strings.HasPrefix(s.Status, "Refused") || strings.HasPrefix(s.Status, "Failed"), nil
	})
	require.NoError(b.t, err, "the step did not finish; last status %q", res.status)
	b.t.Logf("page step: %s\n%s%s", res.status, res.log, res.err)
	return res
}

// done requires the step to have succeeded.
func (b *browser) done(timeout time.Duration) pageStep {
	b.t.Helper()
	r := b.finish(timeout)
	require.True(b.t, strings.HasPrefix(r.status, "Done"), "the step failed: %s: %s", r.status, r.err)
	return r
}

// shot saves a full-page PNG screenshot.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(b.t, err)
	b.n++
	p := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name))
	require.NoError(b.t, os.WriteFile(p, png, 0o644))
	b.t.Logf("screenshot %s", p)
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// rowRevision is the JavaScript for the revision column of a namespace's row.
func rowRevision(ns string) string {
	return fmt.Sprintf(`((document.querySelector('tr[data-namespace=%s] td[data-field=revision]') || {textContent: ""}).textContent)`, jsString(ns))
}

// pageWorkloads are the data-plane page's rows, as namespace/Kind/name.
func (b *browser) pageWorkloads() []string {
	b.t.Helper()
	rows := evalAs[[]string](b, `Array.from(document.querySelectorAll("#dp-table tbody tr")).map(r => r.dataset.workload + (r.classList.contains("gateway") ? " (gateway)" : ""))`)
	slices.Sort(rows)
	return rows
}

// clusterWorkloads is "meshrev dataplane status -o json" run in-process,
// as namespace/Kind/name.
func clusterWorkloads(t *testing.T) []string {
	t.Helper()
	var out strings.Builder
	code := cli.Run(t.Context(), cli.Options{Streams: cli.IOStreams{Out: &out, ErrOut: &out}},
		[]string{"--kubeconfig", Env().KubeconfigPath, "dataplane", "status", "-o", "json"})
	require.Equal(t, 0, code, out.String())
	var v cli.DataPlaneView
	require.NoError(t, json.Unmarshal([]byte(out.String()), &v))
	var rows []string
	for _, w := range v.Workloads {
		r := w.Namespace + "/" + w.Kind + "/" + w.Name
		if w.Gateway {
			r += " (gateway)"
		}
		rows = append(rows, r)
	}
	slices.Sort(rows)
	return rows
}

func TestDashboardWalksTheUpgradeByClicking(t *testing.T) {
	startManager(t)
	cliCreateMesh(t)
	app := NewNamespace(t, "dash-seed", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	edge := NewNamespace(t, "dash-edge", map[string]string{revisions.LabelInjection: revisions.InjectionEnabled})
	for _, name := range []string{"reviews-v1", "reviews-v2", "productpage"} {
		applyDeployment(t, app, simpleDeployment(name, 1, nil))
	}
	applyDeployment(t, edge, simpleDeployment("ingressgateway", 1, map[string]string{revisions.LabelIstio: "ingressgateway"}))
	for _, name := range []string{"reviews-v1", "reviews-v2", "productpage"} {
		require.Equal(t, []string{"1-22-6"}, cliRevisionsOf(t, app, name))
	}
	require.Equal(t, []string{"1-22-6"}, cliRevisionsOf(t, edge, "ingressgateway"))

	b := newBrowser(t, startDashboard(t))

	// The revision diagram: stable alone, Ready, and the way forward.
	b.open("/")
	b.wait("stable's box, Ready", `!!document.querySelector('g.rev.stable[data-revision="1-22-6"] tspan.value.ready')`, 30*time.Second)
	assert.Equal(t, string(v1alpha1.PhaseStable), b.text("#phase"))
	assert.Equal(t, revisions.Next(&cliMesh(t).Spec, v1alpha1.PhaseStable).Text, b.text("#next-text"), "the next step is revisions.Next's")
	notButtons := evalAs[int](b, `Array.from(document.querySelectorAll("[data-step]")).filter(e => e.tagName !== "BUTTON" && e.tagName !== "FORM").length`)
	assert.Zero(t, notButtons, "every step is a <button> (or a form submitted by one)")
	b.shot("revisions-stable")

	// A refused deploy shows the server's message verbatim.
	require.NoError(t, b.run(10*time.Second, chromedp.SendKeys(chromedp.CSS("#canary-version"), "1.24.0")))
	b.click("#deploy-canary")
	r := b.finish(time.Minute)
	assert.True(t, strings.HasPrefix(r.status, "Refused"), r.status)
	assert.Contains(t, r.err, `canary deploy 1-24-0: admission webhook "mesh.meshrev.io" denied the request`)
	assert.Contains(t, r.err, "the skip policy allows at most one minor version per upgrade")
	assert.Empty(t, cliMesh(t).Spec.Canary, "a refused step changes nothing")

	// Step 1: deploy the canary by clicking.
	b.input("#canary-version", "1.23.6")
	b.click("#deploy-canary")
	r = b.done(time.Minute)
	assert.Contains(t, r.log, "canary 1-23-6 (version 1.23.6) deployed beside stable 1-22-6", "the page shows what the verb prints")
	assert.Equal(t, "1-23-6", cliMesh(t).Spec.Canary)
	cliWaitMesh(t, "canary 1-23-6 control plane Ready", func(m *v1alpha1.Mesh) bool { return cliControlPlaneReady(m, "1-23-6") })
	b.wait("the canary's box, Ready", `!!document.querySelector('g.rev.canary[data-revision="1-23-6"] tspan.value.ready')`, 10*time.Second)
	assert.Equal(t, string(v1alpha1.PhaseCanaryDeployed), b.text("#phase"))
	b.shot("revisions-canary")

	// Step 2: the namespaces page, searchable; move the seed's namespace by clicking.
	b.open("/namespaces")
	assert.Contains(t, b.text(fmt.Sprintf(`tr[data-namespace=%s]`, jsString(app))), "istio-injection=enabled")
	assert.Equal(t, "1-22-6", strings.TrimSpace(evalAs[string](b, rowRevision(app))))
	require.NoError(t, b.run(10*time.Second, chromedp.SendKeys(chromedp.CSS("#ns-filter"), app)))
	b.wait("only the seed's namespace after filtering", `Array.from(document.querySelectorAll("#ns-table tbody tr")).filter(r => !r.hidden).length === 1`, 5*time.Second)
	assert.Contains(t, b.text("#ns-count"), "1 of ")
	b.click(fmt.Sprintf(`button[aria-label=%s]`, jsString("Switch "+app+" to canary")))
	r = b.done(time.Minute)
	assert.Contains(t, r.log, "new pods get revision 1-23-6")
	assert.Equal(t, "canary", cliNamespaceLabel(t, app, revisions.LabelRev))
	assert.Empty(t, cliNamespaceLabel(t, app, revisions.LabelInjection))
	b.wait("the seed's namespace on the canary", rowRevision(app)+`.trim() === "1-23-6"`, 10*time.Second)
	b.wait("the filter kept after the update", `Array.from(document.querySelectorAll("#ns-table tbody tr")).filter(r => !r.hidden).length === 1`, 5*time.Second)
	b.shot("namespaces-filtered")
	b.input("#ns-filter", "")

	// A step taken with the CLI shows in the open page within a second or two.
	var out strings.Builder
	start := time.Now()
	require.Equal(t, 0, cli.Run(t.Context(), cli.Options{Streams: cli.IOStreams{Out: &out, ErrOut: &out}},
		[]string{"--kubeconfig", Env().KubeconfigPath, "namespace", "switch", edge, "--to", "canary"}), out.String())
	cliDone := time.Since(start)
	seen := b.wait("the CLI's switch", rowRevision(edge)+`.trim() === "1-23-6"`, 3*time.Second)
	t.Logf("FIGURE: the page showed the CLI's namespace switch %s after the CLI returned (the CLI took %s)", seen.Round(time.Millisecond), cliDone.Round(time.Millisecond))
	b.shot("namespaces")

	// Revoke while namespaces are on the canary: the server refuses and the page says why.
	b.open("/")
	b.click("#promote")
	assert.Contains(t, b.confirm(false), "After a promotion the upgrade cannot be revoked")
	assert.Equal(t, "1-23-6", cliMesh(t).Spec.Canary, "a cancelled promote changes nothing")
	b.click("#revoke")
	assert.Contains(t, b.confirm(true), "Revoke canary 1-23-6")
	r = b.finish(time.Minute)
	assert.True(t, strings.HasPrefix(r.status, "Refused"), r.status)
	assert.Contains(t, r.err, "revoke 1-23-6: admission webhook")
	assert.Contains(t, r.err, app+" (istio.io/rev=canary)")
	assert.Equal(t, "1-23-6", cliMesh(t).Spec.Canary)
	b.shot("revoke-refused")

	// Step 3: promote.
	b.click("#promote")
	b.confirm(true)
	r = b.done(time.Minute)
	assert.Contains(t, r.log, "promoted 1-23-6 to stable (was 1-22-6)")
	m := cliMesh(t)
	assert.Equal(t, "1-23-6", m.Spec.Stable)
	assert.Empty(t, m.Spec.Canary)
	b.wait("1-23-6 stable in the diagram", `!!document.querySelector('g.rev.stable[data-revision="1-23-6"]') && !!document.querySelector('g.rev.old[data-revision="1-22-6"]')`, 10*time.Second)
	b.wait("the old stable tagged so", `document.querySelector('g.rev.old[data-revision="1-22-6"] tspan[data-field=tags]').textContent === "- (old stable)"`, 5*time.Second)

	// Step 4: the data plane, by owner, gateways marked, as "meshrev dataplane status" computes it.
	b.open("/dataplane")
	want := []string{app + "/Deployment/productpage", app + "/Deployment/reviews-v1", app + "/Deployment/reviews-v2", edge + "/Deployment/ingressgateway (gateway)"}
	slices.Sort(want)
	b.wait("the outdated workloads", fmt.Sprintf(`document.querySelectorAll("#dp-table tbody tr").length === %d`, len(want)), time.Minute)
	assert.Equal(t, want, b.pageWorkloads())
	assert.Equal(t, want, clusterWorkloads(t), "the page lists what meshrev dataplane status lists")
	b.shot("dataplane")

	// One row's button.
	b.click(fmt.Sprintf(`tr[data-workload=%s] button`, jsString(app+"/Deployment/reviews-v2")))
	r = b.done(5 * time.Minute)
	assert.Regexp(t, `\[1/1\] .* deployment/reviews-v2 in `+app+` rolled out`, r.log, "the verb's progress line")
	assert.Equal(t, []string{"1-23-6"}, cliRevisionsOf(t, app, "reviews-v2"))
	b.wait("reviews-v2 gone from the list", fmt.Sprintf(`!document.querySelector('tr[data-workload=%s]')`, jsString(app+"/Deployment/reviews-v2")), 10*time.Second)

	// The batch button: one rollout at a time, progress shown while it runs.
	b.input("#dp-batch", "1")
	b.click("#upgrade-all")
	r = b.done(5 * time.Minute)
	assert.Contains(t, r.log, "[1/2]")
	assert.Contains(t, r.log, "[2/2]")
	assert.True(t, r.sawProgress, "progress lines showed while the upgrade ran")
	for _, name := range []string{"reviews-v1", "productpage"} {
		assert.Equal(t, []string{"1-23-6"}, cliRevisionsOf(t, app, name), "%s runs the new stable", name)
	}
	assert.Equal(t, []string{"1-22-6"}, cliRevisionsOf(t, edge, "ingressgateway"), "the batch leaves gateways alone")
	b.wait("only the gateway left", `document.querySelectorAll("#dp-table tbody tr").length === 1 && !!document.querySelector("#dp-table tr.gateway")`, 10*time.Second)
	b.shot("dataplane-gateway-left")

	b.click("#upgrade-gateways")
	r = b.done(5 * time.Minute)
	assert.Contains(t, r.log, "deployment/ingressgateway in "+edge+" rolled out")
	assert.Equal(t, []string{"1-23-6"}, cliRevisionsOf(t, edge, "ingressgateway"))
	b.wait("nothing left to upgrade", `!!document.getElementById("dp-nothing")`, 10*time.Second)
	cliWaitMesh(t, "nothing outdated reported", func(m *v1alpha1.Mesh) bool {
		return m.Status.ObservedGeneration == m.Generation && m.Status.DataPlane.Outdated == 0
	})
	m = cliMesh(t)
	b.wait("the controller's counts", fmt.Sprintf(`document.getElementById("dp-counts").textContent.startsWith("%d pods with a sidecar, %d up to date, 0 outdated")`, m.Status.DataPlane.Pods, m.Status.DataPlane.UpToDate), 10*time.Second)
	b.shot("dataplane-done")

	// Step 5: unpublish the old revision.
	b.open("/")
	b.wait("phase ReadyToUnpublish", fmt.Sprintf(`document.getElementById("phase").textContent === %q`, v1alpha1.PhaseReadyToUnpublish), 30*time.Second)
	b.shot("revisions-ready-to-unpublish")
	b.click("#unpublish")
	assert.Contains(t, b.confirm(true), "Unpublish revision 1-22-6")
	r = b.done(time.Minute)
	assert.Contains(t, r.log, "unpublished 1-22-6")
	m = cliMesh(t)
	require.Len(t, m.Spec.Revisions, 1)
	assert.Equal(t, "1-23-6", m.Spec.Revisions[0].Name)
	b.wait("one box left", `document.querySelectorAll("g.rev").length === 1`, 10*time.Second)
	b.wait("phase Stable", fmt.Sprintf(`document.getElementById("phase").textContent === %q`, v1alpha1.PhaseStable), 30*time.Second)
	cliWaitGone(t, controlPlaneNamespace, "istiod-1-22-6")
	b.shot("revisions-done")

	// The history, as the Mesh records it.
	cliWaitMesh(t, "the unpublish recorded", func(m *v1alpha1.Mesh) bool {
		return len(m.Status.History) > 0 && m.Status.History[len(m.Status.History)-1].Action == "Unpublish"
	})
	b.open("/history")
	m = cliMesh(t)
	steps := evalAs[[]string](b, `Array.from(document.querySelectorAll("#history-table tbody th")).map(th => th.textContent)`)
	var recorded []string
	for _, h := range m.Status.History {
		recorded = append(recorded, h.Action)
	}
	assert.Equal(t, recorded, steps)
	assert.Subset(t, steps, []string{"DeployCanary", "Promote", "Unpublish"})
	b.shot("history")

	// The same page in the dark theme.
	require.NoError(t, b.run(10*time.Second, func(ctx context.Context, target *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, target, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		})
		return chromedp.Void{}, err
	}))
	b.open("/history")
	b.shot("history-dark")
}
