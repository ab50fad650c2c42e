package webhook

import (
	"encoding/json"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
)

// A small validating JSON walker for the hot path. encoding/json scans a
// value twice (validation, then decoding) and twice again for every
// json.RawMessage level, which for a pod with thousands of env vars is most
// of the request's cost. The walker validates every byte once, decodes only
// the fields the injector reads (with encoding/json, on their small spans)
// and skips everything else. Keys match exactly, as the API server's own
// decoder does; duplicate keys: the last wins.

// maxDepth bounds nesting, as encoding/json does.
const maxDepth = 10000

var errUnexpectedEnd = errors.New("unexpected end of JSON input")

type jsonWalker struct {
	b     []byte
	i     int
	depth int
}

func (w *jsonWalker) syntax(what string) error {
	if w.i >= len(w.b) {
		return errUnexpectedEnd
	}
	return fmt.Errorf("invalid character %q %s (offset %d)", w.b[w.i], what, w.i)
}

func (w *jsonWalker) ws() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (w *jsonWalker) peek() byte {
	w.ws()
	if w.i >= len(w.b) {
		return 0
	}
	return w.b[w.i]
}

// skip validates and skips one value.
func (w *jsonWalker) skip() error {
	switch w.peek() {
	case '{':
		_, err := w.object(func(_ []byte) error { return w.skip() })
		return err
	case '[':
		_, err := w.array(w.skip)
		return err
	case '"':
		_, _, err := w.str()
		return err
	case 't':
		return w.literal("true")
	case 'f':
		return w.literal("false")
	case 'n':
		return w.literal("null")
	case 0:
		return errUnexpectedEnd
	}
	return w.number()
}

func (w *jsonWalker) literal(lit string) error {
	if len(w.b)-w.i < len(lit) || string(w.b[w.i:w.i+len(lit)]) != lit {
		return w.syntax("in literal " + lit)
	}
	w.i += len(lit)
	return nil
}

func (w *jsonWalker) number() error {
	start := w.i
	if w.i < len(w.b) && w.b[w.i] == '-' {
		w.i++
	}
	switch {
	case w.i < len(w.b) && w.b[w.i] == '0':
		w.i++
	case w.i < len(w.b) && w.b[w.i] >= '1' && w.b[w.i] <= '9':
		w.digits()
	default:
		if w.i == start {
			return w.syntax("looking for beginning of value")
		}
		return w.syntax("in numeric literal")
	}
	if w.i < len(w.b) && w.b[w.i] == '.' {
		w.i++
		if w.digits() == 0 {
			return w.syntax("after decimal point in numeric literal")
		}
	}
	if w.i < len(w.b) && (w.b[w.i] == 'e' || w.b[w.i] == 'E') {
		w.i++
		if w.i < len(w.b) && (w.b[w.i] == '+' || w.b[w.i] == '-') {
			w.i++
		}
		if w.digits() == 0 {
			return w.syntax("in exponent of numeric literal")
		}
	}
	return nil
}

func (w *jsonWalker) digits() int {
	n := 0
	for w.i < len(w.b) && w.b[w.i] >= '0' && w.b[w.i] <= '9' {
		w.i++
		n++
	}
	return n
}

// str consumes a string and returns its raw contents (between the quotes)
// and whether it has escapes.
func (w *jsonWalker) str() (raw []byte, escaped bool, err error) {
	if w.peek() != '"' {
		return nil, false, w.syntax("looking for beginning of string")
	}
	w.i++
	start := w.i
	for w.i < len(w.b) {
		c := w.b[w.i]
		switch {
		case c == '"':
			raw = w.b[start:w.i]
			w.i++
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			w.i++
			if w.i >= len(w.b) {
				return nil, false, errUnexpectedEnd
			}
			switch w.b[w.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				w.i++
			case 'u':
				w.i++
				for range 4 {
					if w.i >= len(w.b) {
						return nil, false, errUnexpectedEnd
					}
					if !isHex(w.b[w.i]) {
						return nil, false, w.syntax("in \\u hexadecimal character escape")
					}
					w.i++
				}
			default:
				return nil, false, w.syntax("in string escape code")
			}
		case c < 0x20:
			return nil, false, w.syntax("in string literal")
		default:
			w.i++
		}
	}
	return nil, false, errUnexpectedEnd
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// object walks an object (or null, reported by isNull), calling member for
// each key with the walker on the value; member must consume the value.
func (w *jsonWalker) object(member func(key []byte) error) (isNull bool, err error) {
	switch w.peek() {
	case 'n':
		return true, w.literal("null")
	case '{':
	default:
		return false, w.syntax("looking for beginning of object")
	}
	if w.depth++; w.depth > maxDepth {
		return false, errors.New("exceeded max depth")
	}
	w.i++
	if w.peek() == '}' {
		w.i++
		w.depth--
		return false, nil
	}
	for {
		raw, esc, err := w.str()
		if err != nil {
			return false, err
		}
		key := raw
		if esc {
			var k string
			if err := json.Unmarshal(w.b[w.i-len(raw)-2:w.i], &k); err != nil {
				return false, err
			}
			key = []byte(k)
		}
		if w.peek() != ':' {
			return false, w.syntax("after object key")
		}
		w.i++
		if err := member(key); err != nil {
			return false, err
		}
		switch w.peek() {
		case ',':
			w.i++
		case '}':
			w.i++
			w.depth--
			return false, nil
		default:
			return false, w.syntax("after object key:value pair")
		}
	}
}

// array walks an array (or null), calling elem with the walker on each
// element; elem must consume it.
func (w *jsonWalker) array(elem func() error) (isNull bool, err error) {
	switch w.peek() {
	case 'n':
		return true, w.literal("null")
	case '[':
	default:
		return false, w.syntax("looking for beginning of array")
	}
	if w.depth++; w.depth > maxDepth {
		return false, errors.New("exceeded max depth")
	}
	w.i++
	if w.peek() == ']' {
		w.i++
		w.depth--
		return false, nil
	}
	for {
		if err := elem(); err != nil {
			return false, err
		}
		switch w.peek() {
		case ',':
			w.i++
		case ']':
			w.i++
			w.depth--
			return false, nil
		default:
			return false, w.syntax("after array element")
		}
	}
}

// span consumes a value and returns its bytes.
func (w *jsonWalker) span() ([]byte, error) {
	w.ws()
	start := w.i
	if err := w.skip(); err != nil {
		return nil, err
	}
	return w.b[start:w.i], nil
}

// decodeInto decodes the next value with encoding/json (small spans only).
func (w *jsonWalker) decodeInto(v any) error {
	s, err := w.span()
	if err != nil {
		return err
	}
	return json.Unmarshal(s, v)
}

// stringValue reads a string (null leaves it empty, as encoding/json does).
func (w *jsonWalker) stringValue(dst *string) error {
	if w.peek() != '"' {
		return w.decodeInto(dst)
	}
	raw, esc, err := w.str()
	if err != nil {
		return err
	}
	if esc {
		return json.Unmarshal(w.b[w.i-len(raw)-2:w.i], dst)
	}
	*dst = string(raw)
	return nil
}

// end checks that only white space follows the value.
func (w *jsonWalker) end() error {
	if w.ws(); w.i < len(w.b) {
		return w.syntax("after top-level value")
	}
	return nil
}

// decodeReview reads the AdmissionReview fields the injector needs; the
// object is returned as a span of body, not copied.
func decodeReview(body []byte) (*reviewIn, error) {
	w := &jsonWalker{b: body}
	var in reviewIn
	isNull, err := w.object(func(key []byte) error {
		switch string(key) {
		case "apiVersion":
			return w.stringValue(&in.APIVersion)
		case "kind":
			return w.stringValue(&in.Kind)
		case "request":
			req := &requestIn{}
			isNull, err := w.object(func(key []byte) error {
				switch string(key) {
				case "uid":
					var s string
					err := w.stringValue(&s)
					req.UID = types.UID(s)
					return err
				case "kind":
					return w.decodeInto(&req.Kind)
				case "resource":
					return w.decodeInto(&req.Resource)
				case "subResource":
					return w.stringValue(&req.SubResource)
				case "name":
					return w.stringValue(&req.Name)
				case "namespace":
					return w.stringValue(&req.Namespace)
				case "operation":
					return w.stringValue(&req.Operation)
				case "object":
					s, err := w.span()
					req.Object = s
					return err
				}
				return w.skip()
			})
			if !isNull {
				in.Request = req
			}
			return err
		}
		return w.skip()
	})
	if err != nil {
		return nil, err
	}
	if isNull {
		return nil, errors.New("AdmissionReview is null")
	}
	return &in, w.end()
}

// decodePod reads the pod fields the injector needs (podIn). Env and
// volumeMounts stay spans of b.
func decodePod(b []byte) (*podIn, error) {
	w := &jsonWalker{b: b}
	var p podIn
	isNull, err := w.object(func(key []byte) error {
		switch string(key) {
		case "metadata":
			if w.peek() == 'n' {
				p.Metadata = nil
				return w.literal("null")
			}
			p.Metadata = &podMeta{}
			return w.meta(p.Metadata)
		case "spec":
			spec := &podSpec{}
			isNull, err := w.object(func(key []byte) error {
				switch string(key) {
				case "hostNetwork":
					return w.decodeInto(&spec.HostNetwork)
				case "initContainers":
					err := w.containers(&spec.InitFull)
					spec.InitContainers = nil
					if spec.InitFull != nil {
						spec.InitContainers = make([]namedIn, len(spec.InitFull))
						for j, c := range spec.InitFull {
							spec.InitContainers[j] = namedIn{c.Name}
						}
					}
					return err
				case "volumes":
					return w.names(&spec.Volumes)
				case "containers":
					return w.containers(&spec.Containers)
				}
				return w.skip()
			})
			p.Spec = spec
			if isNull {
				p.Spec = nil
			}
			return err
		}
		return w.skip()
	})
	if err != nil {
		return nil, err
	}
	if isNull {
		return &p, nil
	}
	return &p, w.end()
}

// names reads an array of objects keeping their names.
func (w *jsonWalker) names(dst *[]namedIn) error {
	out := []namedIn{}
	isNull, err := w.array(func() error {
		var n namedIn
		_, err := w.object(func(key []byte) error {
			if string(key) == "name" {
				return w.stringValue(&n.Name)
			}
			return w.skip()
		})
		out = append(out, n)
		return err
	})
	if isNull {
		out = nil
	}
	*dst = out
	return err
}

func (w *jsonWalker) containers(dst *[]containerIn) error {
	out := []containerIn{}
	isNull, err := w.array(func() error {
		var c containerIn
		w.ws()
		start := w.i
		_, err := w.object(func(key []byte) error {
			switch string(key) {
			case "name":
				return w.stringValue(&c.Name)
			case "ports":
				c.Ports = nil
				return w.decodeInto(&c.Ports)
			case "env":
				s, err := w.span()
				c.Env = s
				return err
			case "volumeMounts":
				s, err := w.span()
				c.VolumeMounts = s
				return err
			case "livenessProbe":
				return w.decodeInto(&c.LivenessProbe)
			case "readinessProbe":
				return w.decodeInto(&c.ReadinessProbe)
			case "startupProbe":
				return w.decodeInto(&c.StartupProbe)
			case "lifecycle":
				return w.decodeInto(&c.Lifecycle)
			}
			return w.skip()
		})
		c.Raw = w.b[start:w.i]
		out = append(out, c)
		return err
	})
	if isNull {
		out = nil
	}
	*dst = out
	return err
}

// meta reads the metadata fields of podMeta with exact keys: a patch path is
// only right if the key it names is the one the API server reads.
func (w *jsonWalker) meta(m *podMeta) error {
	_, err := w.object(func(key []byte) error {
		switch string(key) {
		case "name":
			return w.stringValue(&m.Name)
		case "generateName":
			return w.stringValue(&m.GenerateName)
		case "namespace":
			return w.stringValue(&m.Namespace)
		case "labels":
			return w.stringMap(&m.Labels)
		case "annotations":
			return w.stringMap(&m.Annotations)
		case "ownerReferences":
			out := []ownerIn{}
			isNull, err := w.array(func() error {
				var o ownerIn
				_, err := w.object(func(key []byte) error {
					switch string(key) {
					case "apiVersion":
						return w.stringValue(&o.APIVersion)
					case "kind":
						return w.stringValue(&o.Kind)
					case "name":
						return w.stringValue(&o.Name)
					case "controller":
						return w.decodeInto(&o.Controller)
					}
					return w.skip()
				})
				out = append(out, o)
				return err
			})
			if isNull {
				out = nil
			}
			m.OwnerReferences = out
			return err
		}
		return w.skip()
	})
	return err
}

// stringMap reads an object of strings (null: nil map).
func (w *jsonWalker) stringMap(dst *map[string]string) error {
	m := map[string]string{}
	isNull, err := w.object(func(key []byte) error {
		var v string
		err := w.stringValue(&v)
		m[string(key)] = v
		return err
	})
	if isNull {
		m = nil
	}
	*dst = m
	return err
}
