package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

const testToken = "0123456789abcdefTOKEN"

// fakeBackend serves a fixed state and records the steps; Do answers with
// err after writing lines.
type fakeBackend struct {
	mu    sync.Mutex
	state State
	steps []Action
	lines []string
	err   error
	// block, when set, holds Do until it is closed.
	block chan struct{}
}

func (f *fakeBackend) State(context.Context) *State {
	f.mu.Lock()
	defer f.mu.Unlock()
	// A fresh state each time, as the CLI's backend builds one.
	s := f.state
	s.Namespaces = slices.Clone(s.Namespaces)
	return &s
}

func (f *fakeBackend) Do(_ context.Context, a Action, out io.Writer) error {
	f.mu.Lock()
	f.steps = append(f.steps, a)
	lines, err, block := f.lines, f.err, f.block
	f.mu.Unlock()
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	if block != nil {
		<-block
	}
	return err
}

func (f *fakeBackend) set(fn func(s *State)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.state)
}

// canaryState is a mesh in the middle of an upgrade.
func canaryState() State {
	return State{
		Mesh: "default", Phase: v1alpha1.PhaseCanaryDeployed, Stable: "1-22-6", Canary: "1-23-6",
		Revisions: []Revision{
			{Name: "1-22-6", Version: "1.22.6", Tags: []string{"stable"}, ControlPlane: "Ready", ServiceType: "ClusterIP", Pods: 3},
			{Name: "1-23-6", Version: "1.23.6", Tags: []string{"canary"}, ControlPlane: "NotReady", ServiceType: "ClusterIP", Pods: 1},
		},
		Next: Next{Text: "switch a namespace to the canary", Command: "meshrev namespace switch NS --to canary"},
		Namespaces: []Namespace{
			{Name: "bookinfo", Labels: []string{"istio.io/rev=canary", "team=shop"}, Label: "istio.io/rev=canary", Revision: "1-23-6", Reason: "NamespaceRevisionLabel"},
			{Name: "plain", Label: "no injection label", Reason: "NotEnabled"},
		},
		DataPlane: Counts{Pods: 4, UpToDate: 3, Outdated: 1},
		Workloads: []v1alpha1.WorkloadStatus{
			{Kind: "Deployment", Namespace: "edge", Name: "ingressgateway", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 1, Gateway: true},
			{Kind: "ReplicaSet", Namespace: "bookinfo", Name: "bare-rs", Revisions: []string{"1-22-6"}, Want: "1-23-6", Pods: 2},
		},
		History: []v1alpha1.HistoryEntry{
			{Time: metav1.NewTime(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)), Action: "Install", To: "1-22-6"},
			{Time: metav1.NewTime(time.Date(2026, 11, 29, 12, 5, 0, 0, time.UTC)), Action: "DeployCanary", From: "1-22-6", To: "1-23-6"},
		},
	}
}

func newTestServer(t *testing.T, b *fakeBackend) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(Options{Backend: b, Token: testToken})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Run(ctx)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

func TestNewRefusesAShortToken(t *testing.T) {
	_, err := New(Options{Backend: &fakeBackend{}, Token: "short"})
	require.Error(t, err)
}

func TestEveryRequestNeedsTheTokenAndStepsTheirOrigin(t *testing.T) {
	b := &fakeBackend{state: canaryState()}
	_, ts := newTestServer(t, b)
	origin := ts.URL
	stepBody := `{"step":"promote"}`
	tests := map[string]struct {
		method, path, body string
		header             map[string]string
		want               int
	}{
		"a page with the token is served":                     {method: "GET", path: "/?token=" + testToken, want: 200},
		"a page without the token is refused":                 {method: "GET", path: "/", want: 401},
		"a page with a wrong token is refused":                {method: "GET", path: "/namespaces?token=" + testToken + "x", want: 401},
		"the script without the token is refused":             {method: "GET", path: "/assets/app.js", want: 401},
		"the script with the token is served":                 {method: "GET", path: "/assets/app.js?token=" + testToken, want: 200},
		"the event stream without the token is refused":       {method: "GET", path: "/events", want: 401},
		"another host name is refused (DNS rebinding)":        {method: "GET", path: "/?token=" + testToken, header: map[string]string{"Host": "evil.example"}, want: 421},
		"a step with the token header from the page is taken": {method: "POST", path: "/api/step", body: stepBody, header: map[string]string{TokenHeader: testToken, "Origin": origin, "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}, want: 200},
		"a step with the token only in the URL is refused":    {method: "POST", path: "/api/step?token=" + testToken, body: stepBody, header: map[string]string{"Origin": origin, "Content-Type": "application/json"}, want: 401},
		"a step from another origin is refused (CSRF)":        {method: "POST", path: "/api/step", body: stepBody, header: map[string]string{TokenHeader: testToken, "Origin": "http://evil.example", "Content-Type": "application/json"}, want: 403},
		"a step without an Origin is refused":                 {method: "POST", path: "/api/step", body: stepBody, header: map[string]string{TokenHeader: testToken, "Content-Type": "application/json"}, want: 403},
		"a step marked cross-site is refused":                 {method: "POST", path: "/api/step", body: stepBody, header: map[string]string{TokenHeader: testToken, "Origin": origin, "Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, want: 403},
		"a step sent as a form is refused":                    {method: "POST", path: "/api/step", body: "step=promote", header: map[string]string{TokenHeader: testToken, "Origin": origin, "Content-Type": "application/x-www-form-urlencoded"}, want: 415},
		"an unknown step is refused":                          {method: "POST", path: "/api/step", body: `{"step":"delete-everything"}`, header: map[string]string{TokenHeader: testToken, "Origin": origin, "Content-Type": "application/json"}, want: 400},
		"a step with an unknown field is refused":             {method: "POST", path: "/api/step", body: `{"step":"promote","yes":true}`, header: map[string]string{TokenHeader: testToken, "Origin": origin, "Content-Type": "application/json"}, want: 400},
		"an unknown page is not found":                        {method: "GET", path: "/nothing?token=" + testToken, want: 404},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			for k, v := range tc.header {
				if k == "Host" {
					req.Host = v
					continue
				}
				req.Header.Set(k, v)
			}
			resp, err := ts.Client().Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tc.want, resp.StatusCode, "body: %s", body)
			assert.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"), "the token in the URL never leaves in a Referer")
		})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	require.Len(t, b.steps, 1, "only the one good step reached the backend")
	assert.Equal(t, Action{Step: StepPromote}, b.steps[0])
}

func get(t *testing.T, ts *httptest.Server, path string) string {
	t.Helper()
	resp, err := ts.Client().Get(ts.URL + path + "?token=" + testToken)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestPagesShowTheState(t *testing.T) {
	b := &fakeBackend{state: canaryState()}
	_, ts := newTestServer(t, b)
	tests := map[string]struct {
		path string
		want []string
		not  []string
	}{
		"the revisions page draws a box per revision with the phase and the next step": {
			path: "/",
			want: []string{`<svg class="diagram"`, `data-revision="1-22-6"`, `data-revision="1-23-6"`, `class="value notready"`, "CanaryDeployed",
				"meshrev namespace switch NS --to canary", `id="promote"`, `id="revoke"`, `data-confirm="Revoke canary 1-23-6`, `aria-current="page"`},
			not: []string{`id="deploy-canary"`, `id="unpublish"`},
		},
		"the namespaces page lists every namespace with labels, the revision and switch buttons": {
			path: "/namespaces",
			want: []string{`<tr data-namespace="bookinfo">`, `<span class="chip">team=shop</span>`, `<span class="rev canary">1-23-6</span>`,
				`no sidecar (NotEnabled)`, `aria-label="Switch plain to canary"`, `<label for="ns-filter">`},
		},
		"the data-plane page marks gateways and offers per-row and batch upgrades": {
			path: "/dataplane",
			want: []string{`class="gateway"`, `<span class="chip gw">gateway</span>`, `data-workload="deployment/ingressgateway" data-gateways="true"`,
				`data-workload="bare-rs"`, `id="upgrade-all"`, `id="upgrade-gateways"`, "1 outdated"},
		},
		"the history page lists the steps": {
			path: "/history",
			want: []string{"2026-11-29 12:05:00", "<th scope=\"row\">DeployCanary</th>"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			page := get(t, ts, tc.path)
			for _, w := range tc.want {
				assert.Contains(t, page, w)
			}
			for _, n := range tc.not {
				assert.NotContains(t, page, n)
			}
			assert.Contains(t, page, `<meta name="meshrev-token" content="`+testToken+`">`)
		})
	}
}

func TestPagesShowWhyTheStateCannotBeRead(t *testing.T) {
	b := &fakeBackend{state: State{Error: `no Mesh "default" in the cluster`}}
	_, ts := newTestServer(t, b)
	assert.Contains(t, get(t, ts, "/"), `no Mesh &#34;default&#34; in the cluster`)
}

func TestPagesEscapeWhatTheClusterSays(t *testing.T) {
	st := canaryState()
	st.Namespaces[0].Labels = []string{`team=<script>alert(1)</script>`}
	b := &fakeBackend{state: st}
	_, ts := newTestServer(t, b)
	page := get(t, ts, "/namespaces")
	assert.NotContains(t, page, "<script>alert(1)")
	assert.Contains(t, page, "&lt;script&gt;alert(1)")
}

// post sends a step as the page does.
func post(t *testing.T, ts *httptest.Server, body string) (int, stepResult) {
	t.Helper()
	req, err := http.NewRequest("POST", ts.URL+"/api/step", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TokenHeader, testToken)
	req.Header.Set("Origin", ts.URL)
	resp, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var res stepResult
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
	return resp.StatusCode, res
}

func TestAStepAnswersWithTheVerbsOutputAndItsErrorVerbatim(t *testing.T) {
	refusal := `revoke 1-23-6: admission webhook "mesh.meshrev.io" denied the request: spec.canary: Forbidden: namespaces still use the canary: app (istio.io/rev=canary)`
	tests := map[string]struct {
		lines []string
		err   error
		want  stepResult
	}{
		"a step that succeeds answers ok with its output": {
			lines: []string{"promoted 1-23-6 to stable (was 1-22-6)"},
			want:  stepResult{OK: true, Output: "promoted 1-23-6 to stable (was 1-22-6)\n"},
		},
		"a refused step answers with the server's message as is": {
			err:  errors.New(refusal),
			want: stepResult{Error: refusal},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := &fakeBackend{state: canaryState(), lines: tc.lines, err: tc.err}
			_, ts := newTestServer(t, b)
			code, res := post(t, ts, `{"step":"revoke"}`)
			assert.Equal(t, 200, code)
			assert.Equal(t, tc.want, res)
		})
	}
}

func TestOneStepAtATime(t *testing.T) {
	b := &fakeBackend{state: canaryState(), block: make(chan struct{})}
	_, ts := newTestServer(t, b)
	first := make(chan stepResult)
	go func() {
		_, res := post(t, ts, `{"step":"dataplane-upgrade","all":true}`)
		first <- res
	}()
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.steps) == 1
	}, 5*time.Second, 10*time.Millisecond)
	code, res := post(t, ts, `{"step":"promote"}`)
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, res.Error, "another step is running (dataplane-upgrade)")
	close(b.block)
	assert.True(t, (<-first).OK)
}

// sse reads server-sent events.
type sse struct {
	r *bufio.Reader
}

func openEvents(t *testing.T, ts *httptest.Server, since string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", ts.URL+"/events?token="+testToken+"&since="+since, nil)
	require.NoError(t, err)
	resp, err := ts.Client().Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	return &sse{r: bufio.NewReader(resp.Body)}
}

// next returns the next event's name and data.
func (s *sse) next(t *testing.T) (string, string) {
	t.Helper()
	var name string
	var data []string
	for {
		line, err := s.r.ReadString('\n')
		require.NoError(t, err)
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && name != "":
			return name, strings.Join(data, "\n")
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
}

func TestEventsPushTheFragmentsThatChangedAndTheStepsProgress(t *testing.T) {
	b := &fakeBackend{state: canaryState(), lines: []string{"[1/2] deployment/a in app rolled out", "[2/2] deployment/b in app rolled out"}}
	s, ts := newTestServer(t, b)
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.version == 1
	}, 5*time.Second, 10*time.Millisecond, "the first rendering")

	// A page rendered from an older version first gets every fragment.
	ev := openEvents(t, ts, "0")
	got := map[string]string{}
	for range fragments {
		name, data := ev.next(t)
		require.Equal(t, "fragment", name)
		var f struct{ Name, HTML string }
		require.NoError(t, json.Unmarshal([]byte(data), &f))
		got[f.Name] = f.HTML
	}
	assert.Contains(t, got["diagram"], "1-23-6")

	// A page as fresh as the server gets only what changes: the namespace
	// switched, the summary and diagram are as they were.
	fresh := openEvents(t, ts, "1")
	b.set(func(st *State) {
		st.Namespaces[1].Label = "istio.io/rev=canary"
		st.Namespaces[1].Revision = "1-23-6"
	})
	s.Notify()
	name, data := fresh.next(t)
	require.Equal(t, "fragment", name)
	var f struct {
		Name, HTML string
		Version    uint64
	}
	require.NoError(t, json.Unmarshal([]byte(data), &f))
	assert.Equal(t, "namespaces", f.Name, "only the namespaces changed")
	assert.Equal(t, uint64(2), f.Version)
	assert.Contains(t, f.HTML, `<tr data-namespace="plain">`)

	// A step's output lines arrive while it runs, then its end.
	_, res := post(t, ts, `{"step":"dataplane-upgrade","all":true}`)
	require.True(t, res.OK)
	var seen []string
	for len(seen) < 4 {
		name, data := fresh.next(t)
		if name == "fragment" {
			continue
		}
		seen = append(seen, name+" "+data)
	}
	assert.Equal(t, []string{
		`running {"step":"dataplane-upgrade"}`,
		`progress {"line":"[1/2] deployment/a in app rolled out","step":"dataplane-upgrade"}`,
		`progress {"line":"[2/2] deployment/b in app rolled out","step":"dataplane-upgrade"}`,
		`done {"error":"","ok":true,"step":"dataplane-upgrade"}`,
	}, seen)
}

func TestLineWriterEmitsCompleteLines(t *testing.T) {
	tests := map[string]struct {
		writes []string
		want   []string
	}{
		"lines split across writes are emitted whole":       {writes: []string{"ab", "c\nde", "f\n"}, want: []string{"abc", "def"}},
		"a last line without a newline is emitted on close": {writes: []string{"one\ntwo"}, want: []string{"one", "two"}},
		"nothing written emits nothing":                     {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			w := &lineWriter{emit: func(l string) { got = append(got, l) }}
			for _, s := range tc.writes {
				_, _ = io.WriteString(w, s)
			}
			w.Close()
			assert.Equal(t, tc.want, got)
			assert.Equal(t, strings.Join(tc.writes, ""), w.String())
		})
	}
}

func TestDiagramLaysBoxesOutSideBySide(t *testing.T) {
	st := canaryState()
	st.Revisions = append(st.Revisions, Revision{Name: "1-21-0", Version: "1.21.0", ControlPlane: "External"})
	st.Previous = "1-21-0"
	d := diagram(&st)
	require.Len(t, d.Boxes, 3)
	assert.Equal(t, []string{"stable", "canary", "old"}, []string{d.Boxes[0].Role, d.Boxes[1].Role, d.Boxes[2].Role})
	assert.Equal(t, 0, d.Boxes[0].ArrowTo, "no arrow into the first box")
	assert.Greater(t, d.Boxes[1].X, d.Boxes[0].X+d.Boxes[0].W)
	assert.Equal(t, d.Boxes[2].X+d.Boxes[2].W+margin, d.W)
	assert.Equal(t, "- (old stable)", d.Boxes[2].Lines[1].Value)
	assert.Contains(t, d.Summary, "revision 1-23-6, version 1.23.6, tags canary, control plane NotReady (ClusterIP), 1 pods")
}

// BenchmarkRenderNamespaces renders the namespaces fragment of 5000
// namespaces: what the server does once per change (not per page open).
func BenchmarkRenderNamespaces(b *testing.B) {
	st := canaryState()
	st.Namespaces = nil
	for i := range 5000 {
		name := fmt.Sprintf("team-%04d", i)
		st.Namespaces = append(st.Namespaces, Namespace{Name: name, Labels: []string{"istio.io/rev=canary", "kubernetes.io/metadata.name=" + name},
			Label: "istio.io/rev=canary", Revision: "1-23-6", Reason: "NamespaceRevisionLabel"})
	}
	s, err := New(Options{Backend: &fakeBackend{state: st}, Token: testToken})
	require.NoError(b, err)
	var size int
	for b.Loop() {
		html, err := s.render("namespaces", view{State: &st, Token: testToken})
		if err != nil {
			b.Fatal(err)
		}
		size = len(html)
	}
	b.ReportMetric(float64(size), "bytes/render")
}
