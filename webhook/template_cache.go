// Render cache: each revision's templates are rendered once per change of
// the revision or its template text, with the last good render kept.

package webhook

import (
	"sync"
)

// templateKey identifies what a rendering depends on: a change of any field
// (or of the template text) renders again.
type templateKey struct {
	name, version, proxyImage, discovery, templatesCM string
	// proxy is the revision's ProxySettings, as a string (comparable).
	proxy string
	cni   bool
	text  Templates
}

// cacheEntry is what the cache knows of one revision.
type cacheEntry struct {
	key  templateKey
	tmpl *revisionTemplates
	err  error
	// good is the last successful render of this revision and goodKey what
	// it was rendered from: injection falls back to it while the current
	// templates fail.
	good    *revisionTemplates
	goodKey templateKey
	// reported is the last template error logged for this revision, so that
	// a broken ConfigMap is logged once per distinct error, not per pod.
	reported string
}

// templateCache renders each revision's templates once and keeps the result
// until the revision or its template text changes, and keeps the last good
// render of each revision.
type templateCache struct {
	mu      sync.RWMutex
	entries map[string]*cacheEntry
}

// get returns the render of key, calling render only when the revision's
// entry was rendered from another key.
func (c *templateCache) get(key templateKey, render func() (*revisionTemplates, error)) (*revisionTemplates, error) {
	c.mu.RLock()
	e := c.entries[key.name]
	c.mu.RUnlock()
	if e != nil && e.key == key {
		return e.tmpl, e.err
	}
	t, err := render()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*cacheEntry{}
	}
	// A failure is cached too: a broken template is reported once per change,
	// not rendered again for every pod.
	ne := &cacheEntry{key: key, tmpl: t, err: err}
	if old := c.entries[key.name]; old != nil {
		ne.good, ne.goodKey, ne.reported = old.good, old.goodKey, old.reported
	}
	if err == nil {
		ne.good, ne.goodKey = t, key
	}
	c.entries[key.name] = ne
	return t, err
}

// lastGood returns the last good render of the revision name and what it
// was rendered from.
func (c *templateCache) lastGood(name string) (templateKey, *revisionTemplates, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.entries[name]
	if e == nil || e.good == nil {
		return templateKey{}, nil, false
	}
	return e.goodKey, e.good, true
}

// setGood records a good render of key made outside get (the last good text
// rendered again for changed revision fields).
func (c *templateCache) setGood(key templateKey, t *revisionTemplates) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key.name]; e != nil {
		e.good, e.goodKey = t, key
	}
}

// firstReport says whether msg is a new error for the revision name (to be
// logged) and remembers it.
func (c *templateCache) firstReport(name, msg string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*cacheEntry{}
	}
	e := c.entries[name]
	if e == nil {
		e = &cacheEntry{key: templateKey{name: "\x00unrendered"}}
		c.entries[name] = e
	}
	if e.reported == msg {
		return false
	}
	e.reported = msg
	return true
}

// healed forgets the reported error of the revision name once its templates
// render again, so that a later breakage is logged again.
func (c *templateCache) healed(name string) {
	c.mu.RLock()
	e := c.entries[name]
	reported := e != nil && e.reported != ""
	c.mu.RUnlock()
	if !reported {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[name]; e != nil {
		e.reported = ""
	}
}

// prune forgets revisions that are no longer published.
func (c *templateCache) prune(keep func(name string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.entries {
		if !keep(name) {
			delete(c.entries, name)
		}
	}
}
