// Package dashboard is "meshrev dashboard": the canary upgrade as live web
// pages served on 127.0.0.1 (the revision diagram, the namespaces, the data
// plane, the history) with a button for every step. It renders HTML on the
// server with html/template and keeps a little JavaScript embedded in the
// binary. It knows nothing of the cluster: a Backend (the CLI) reads the
// state and takes the steps with the verbs' own code, and calls Notify when
// its watches see a change; the server then renders the changed fragments
// once and pushes them to every open page over server-sent events.
package dashboard

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net"
	"net/http"
	"path"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

//go:embed assets
var assets embed.FS

// TokenHeader carries the token on the page's POSTs (a header a cross-site
// form cannot set).
const TokenHeader = "X-Meshrev-Token"

// debounce is how long the server waits after a change for more changes
// before rendering: a rollout's burst of pod events becomes one update.
const debounce = 150 * time.Millisecond

// fragments are the parts of the pages that follow the cluster, each a
// template of the same name rendered from the State.
var fragments = []string{"summary", "diagram", "steps", "namespaces", "dataplane", "history"}

// pages are the pages, by path.
var pages = map[string]struct{ name, title string }{
	"/":           {"revisions", "Revisions"},
	"/namespaces": {"namespaces-page", "Namespaces"},
	"/dataplane":  {"dataplane-page", "Data plane"},
	"/history":    {"history-page", "History"},
}

// Options configure a Server.
type Options struct {
	// Backend reads the state and takes the steps.
	Backend Backend
	// Token is the secret every request must carry.
	Token string
	// Log receives the server's errors.
	Log logr.Logger
}

// Server serves the dashboard.
type Server struct {
	backend Backend
	token   string
	log     logr.Logger
	tmpl    *template.Template

	notify chan struct{}

	mu      sync.Mutex
	version uint64
	// rendered are the fragments of version, by name.
	rendered map[string]string
	subs     map[chan event]struct{}
	// running names the step in progress: one step at a time.
	running string
	// nsKey is what the namespaces fragment was rendered from.
	nsKey *namespacesKey
}

// namespacesKey is what the namespaces fragment shows.
type namespacesKey struct {
	err, stable, canary string
	namespaces          []Namespace
}

// event is one server-sent event.
type event struct {
	name string
	data string
}

// New returns a server; Run must be running for the pages to follow changes.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil || len(opts.Token) < 16 {
		return nil, errors.New("dashboard: a backend and a token of at least 16 characters are required")
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: parse templates: %w", err)
	}
	return &Server{
		backend: opts.Backend,
		token:   opts.Token,
		log:     opts.Log,
		tmpl:    tmpl,
		notify:  make(chan struct{}, 1),
		subs:    map[chan event]struct{}{},
	}, nil
}

// Notify says the cluster changed; the server renders again after a short
// quiet period. It never blocks.
func (s *Server) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Run renders the fragments once, then again after every burst of changes,
// and pushes those that changed to the open pages, until ctx ends.
func (s *Server) Run(ctx context.Context) {
	s.refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
		}
		// Let the burst settle, then render once.
		t := time.NewTimer(debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select {
		case <-s.notify:
		default:
		}
		s.refresh(ctx)
	}
}

// refresh renders every fragment from a fresh state and broadcasts those
// that differ from the last rendering.
func (s *Server) refresh(ctx context.Context) {
	st := s.backend.State(ctx)
	// The namespaces table is the one fragment that grows with the cluster
	// (thousands of rows): pod events during a rollout leave its inputs as
	// they were, so it is rendered again only when they change.
	nsKey := namespacesKey{st.Error, st.Stable, st.Canary, st.Namespaces}
	s.mu.Lock()
	prevNS, prevKey := s.rendered["namespaces"], s.nsKey
	s.mu.Unlock()
	out := map[string]string{}
	for _, name := range fragments {
		if name == "namespaces" && prevKey != nil && reflect.DeepEqual(*prevKey, nsKey) {
			out[name] = prevNS
			continue
		}
		html, err := s.render(name, view{State: st, Token: s.token})
		if err != nil {
			s.log.Error(err, "render fragment", "fragment", name)
			continue
		}
		out[name] = html
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []string
	for _, name := range fragments {
		if html, ok := out[name]; ok && html != s.rendered[name] {
			changed = append(changed, name)
		}
	}
	if s.rendered != nil && len(changed) == 0 {
		return
	}
	s.rendered = out
	s.nsKey = &nsKey
	s.version++
	for _, name := range changed {
		s.broadcastLocked(fragmentEvent(name, out[name], s.version))
	}
}

func fragmentEvent(name, html string, version uint64) event {
	b, _ := json.Marshal(map[string]any{"name": name, "html": html, "version": version})
	return event{name: "fragment", data: string(b)}
}

// broadcastLocked sends ev to every subscriber; a subscriber too slow to
// keep up loses the event rather than holding the others back (its page
// reloads the fragments when it reconnects).
func (s *Server) broadcastLocked(ev event) {
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (s *Server) broadcast(ev event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broadcastLocked(ev)
}

// view is what the templates get.
type view struct {
	*State
	// Token is put in the links and the page's meta tag.
	Token string
	// Page and Title name the page being rendered.
	Page, Title string
	// Version is the fragments' version the page was rendered from.
	Version uint64
}

func (s *Server) render(name string, v view) (string, error) {
	var b bytes.Buffer
	if err := s.tmpl.ExecuteTemplate(&b, name, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Token is the secret the dashboard's URL carries.
func (s *Server) Token() string { return s.token }

// Handler returns the dashboard's HTTP handler: every request is checked
// for the host, then the token; POSTs also for their origin.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for p := range pages {
		if p == "/" {
			mux.HandleFunc("GET /{$}", s.page)
			continue
		}
		mux.HandleFunc("GET "+p, s.page)
	}
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /assets/{file}", s.asset)
	mux.HandleFunc("POST /api/step", s.step)
	return s.guard(mux)
}

// guard refuses requests for another host name (DNS rebinding), without
// the token, and POSTs from another origin (CSRF).
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		if !loopbackHost(r.Host) {
			http.Error(w, "meshrev dashboard answers only on 127.0.0.1 or localhost", http.StatusMisdirectedRequest)
			return
		}
		token := r.URL.Query().Get("token")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			// A POST carries the token in a header, which a cross-site
			// form cannot set, and comes from this origin.
			token = r.Header.Get(TokenHeader)
			if err := sameOrigin(r); err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(s.token)) != 1 {
			http.Error(w, "missing or wrong token: open the URL meshrev dashboard printed", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names the loopback address
// the server listens on.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return host == "127.0.0.1" || host == "localhost"
}

// sameOrigin refuses a request that a browser marks as coming from another
// site: its Origin must be this server's, and Sec-Fetch-Site, when sent,
// same-origin.
func sameOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return errors.New("refused: a step must come from the dashboard's own page (no Origin header)")
	}
	if origin != "http://"+r.Host {
		return fmt.Errorf("refused: a step must come from the dashboard's own page, not %s", origin)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("refused: a step must come from the dashboard's own page (Sec-Fetch-Site %s)", site)
	}
	return nil
}

// page renders one whole page from the fragments of the current version.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	p, ok := pages[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	st := s.backend.State(r.Context())
	s.mu.Lock()
	version := s.version
	s.mu.Unlock()
	html, err := s.render(p.name, view{State: st, Token: s.token, Page: r.URL.Path, Title: p.title, Version: version})
	if err != nil {
		s.log.Error(err, "render page", "page", p.name)
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, html)
}

// asset serves the embedded script and style sheet.
func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	ext := path.Ext(name)
	if ext != ".js" && ext != ".css" {
		http.NotFound(w, r)
		return
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", mime.TypeByExtension(ext))
	_, _ = w.Write(b)
}

// events streams the fragments as they change. A page passes the version
// it was rendered from; when the server is further along, it first gets
// every fragment, so nothing that changed in between is lost.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	ch := make(chan event, 64)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	var initial []event
	if s.version != since {
		for _, name := range fragments {
			if html, ok := s.rendered[name]; ok {
				initial = append(initial, fragmentEvent(name, html, s.version))
			}
		}
	}
	running := s.running
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if running != "" {
		initial = append(initial, jsonEvent("running", map[string]string{"step": running}))
	}
	for _, ev := range initial {
		writeEvent(w, ev)
	}
	fl.Flush()
	keepalive := time.NewTicker(25 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-ch:
			writeEvent(w, ev)
			fl.Flush()
		case <-keepalive.C:
			_, _ = io.WriteString(w, ": keepalive\n\n")
			fl.Flush()
		}
	}
}

func writeEvent(w io.Writer, ev event) {
	fmt.Fprintf(w, "event: %s\n", ev.name)
	for _, line := range strings.Split(ev.data, "\n") {
		fmt.Fprintf(w, "data: %s\n", line)
	}
	_, _ = io.WriteString(w, "\n")
}

func jsonEvent(name string, v any) event {
	b, _ := json.Marshal(v)
	return event{name: name, data: string(b)}
}

// stepResult is the answer to a step: the verb's output, and its error
// verbatim (the server's refusal, when it refused).
type stepResult struct {
	OK     bool   `json:"ok"`
	Output string `json:"output"`
	Error  string `json:"error,omitempty"`
}

// maxStepBody bounds a step request.
const maxStepBody = 64 << 10

// step takes one step with the backend, streaming its output lines as
// "progress" events while it runs, and answers with the whole output and
// the error. The step runs on the server's context, not the request's:
// leaving the page does not stop a data-plane upgrade half way.
func (s *Server) step(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "a step is a JSON request", http.StatusUnsupportedMediaType)
		return
	}
	var a Action
	dec := json.NewDecoder(io.LimitReader(r.Body, maxStepBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		http.Error(w, "bad step: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !knownStep(a.Step) {
		http.Error(w, fmt.Sprintf("unknown step %q", a.Step), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	if s.running != "" {
		running := s.running
		s.mu.Unlock()
		writeJSON(w, http.StatusConflict, stepResult{Error: fmt.Sprintf("another step is running (%s): wait for it to finish", running)})
		return
	}
	s.running = a.Step
	s.mu.Unlock()
	s.broadcast(jsonEvent("running", map[string]string{"step": a.Step}))

	out := &lineWriter{emit: func(line string) {
		s.broadcast(jsonEvent("progress", map[string]string{"step": a.Step, "line": line}))
	}}
	err := s.backend.Do(context.WithoutCancel(r.Context()), a, out)
	out.Close()

	res := stepResult{OK: err == nil, Output: out.String()}
	if err != nil {
		res.Error = err.Error()
	}
	s.mu.Lock()
	s.running = ""
	s.mu.Unlock()
	s.broadcast(jsonEvent("done", map[string]any{"step": a.Step, "ok": res.OK, "error": res.Error}))
	s.Notify()
	writeJSON(w, http.StatusOK, res)
}

func knownStep(step string) bool {
	switch step {
	case StepCanaryDeploy, StepNamespaceSwitch, StepPromote, StepDataplaneUpgrade, StepUnpublish, StepRevoke:
		return true
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// lineWriter collects a verb's output and emits each complete line as it
// is written.
type lineWriter struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	emit    func(string)
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

// Close emits the last line when it had no newline.
func (l *lineWriter) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.emit(string(l.partial))
		l.partial = nil
	}
}

func (l *lineWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}
