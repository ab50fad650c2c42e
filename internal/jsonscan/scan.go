// Package jsonscan is a small validating JSON scanner for the admission hot
// path. encoding/json scans a value twice (validation, then decoding) and
// twice again for every json.RawMessage level, which for a pod with
// thousands of env vars is most of a request's cost. A Scanner validates
// every byte once, lets its caller decode only the fields it reads (with
// encoding/json, on their small spans) and skips everything else. Keys match
// exactly, as the API server's own decoder does; of duplicate keys, the
// caller sees each in order, so the last one wins.
package jsonscan

import (
	"encoding/json"
	"errors"
	"fmt"
)

// maxDepth bounds nesting, as encoding/json does.
const maxDepth = 10000

// ErrUnexpectedEnd is returned when the input ends inside a value.
var ErrUnexpectedEnd = errors.New("unexpected end of JSON input")

// Scanner walks one JSON document held in memory. Its methods consume the
// next value; the document's bytes are never copied, so a Span stays valid
// as long as the input does.
type Scanner struct {
	b     []byte
	i     int
	depth int
}

// New returns a Scanner at the start of b.
func New(b []byte) *Scanner {
	return &Scanner{b: b}
}

// syntax is encoding/json's syntax error for the byte at the offset.
func (s *Scanner) syntax(what string) error {
	if s.i >= len(s.b) {
		return ErrUnexpectedEnd
	}
	return fmt.Errorf("invalid character %q %s (offset %d)", s.b[s.i], what, s.i)
}

// ws skips white space.
func (s *Scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Peek returns the first byte of the next value (after white space), or 0
// at the end of the input.
func (s *Scanner) Peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// Skip validates and consumes the next value. Most of a request is
// skipped (everything the injector does not read, and every span), so Skip
// is one loop over an explicit stack of open objects and arrays rather than
// Object and Array with callbacks.
func (s *Scanner) Skip() error {
	var buf [64]byte
	stack := buf[:0] // '{' or '[' per open container
	for {
		// A value.
		switch s.Peek() {
		case '{':
			if s.depth+len(stack) >= maxDepth {
				return errors.New("exceeded max depth")
			}
			s.i++
			if s.Peek() == '}' {
				s.i++
				break
			}
			stack = append(stack, '{')
			if err := s.key(); err != nil {
				return err
			}
			continue
		case '[':
			if s.depth+len(stack) >= maxDepth {
				return errors.New("exceeded max depth")
			}
			s.i++
			if s.Peek() == ']' {
				s.i++
				break
			}
			stack = append(stack, '[')
			continue
		case '"':
			if _, _, err := s.str(); err != nil {
				return err
			}
		case 't':
			if err := s.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := s.literal("false"); err != nil {
				return err
			}
		case 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
		case 0:
			return ErrUnexpectedEnd
		default:
			if err := s.number(); err != nil {
				return err
			}
		}
		// After a value: close what ends here, up to the next value.
		for next := false; !next; {
			if len(stack) == 0 {
				return nil
			}
			top := stack[len(stack)-1]
			switch c := s.Peek(); {
			case c == ',':
				s.i++
				if top == '{' {
					if err := s.key(); err != nil {
						return err
					}
				}
				next = true
			case c == '}' && top == '{', c == ']' && top == '[':
				s.i++
				stack = stack[:len(stack)-1]
			case top == '{':
				return s.syntax("after object key:value pair")
			default:
				return s.syntax("after array element")
			}
		}
	}
}

// key consumes an object key and its colon.
func (s *Scanner) key() error {
	if _, _, err := s.str(); err != nil {
		return err
	}
	if s.Peek() != ':' {
		return s.syntax("after object key")
	}
	s.i++
	return nil
}

// Null consumes the literal null.
func (s *Scanner) Null() error {
	s.ws()
	return s.literal("null")
}

// literal consumes lit (true, false or null) at the offset.
func (s *Scanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.syntax("in literal " + lit)
	}
	s.i += len(lit)
	return nil
}

// number consumes a number, as RFC 8259 spells it.
func (s *Scanner) number() error {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		s.digits()
	default:
		if s.i == start {
			return s.syntax("looking for beginning of value")
		}
		return s.syntax("in numeric literal")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return s.syntax("after decimal point in numeric literal")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return s.syntax("in exponent of numeric literal")
		}
	}
	return nil
}

// digits consumes decimal digits and says how many.
func (s *Scanner) digits() int {
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// str consumes a string and returns its raw contents (between the quotes)
// and whether it has escapes.
func (s *Scanner) str() (raw []byte, escaped bool, err error) {
	if s.Peek() != '"' {
		return nil, false, s.syntax("looking for beginning of string")
	}
	s.i++
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			s.i++
			if s.i >= len(s.b) {
				return nil, false, ErrUnexpectedEnd
			}
			switch s.b[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for range 4 {
					if s.i >= len(s.b) {
						return nil, false, ErrUnexpectedEnd
					}
					if !isHex(s.b[s.i]) {
						return nil, false, s.syntax("in \\u hexadecimal character escape")
					}
					s.i++
				}
			default:
				return nil, false, s.syntax("in string escape code")
			}
		case c < 0x20:
			return nil, false, s.syntax("in string literal")
		default:
			s.i++
		}
	}
	return nil, false, ErrUnexpectedEnd
}

// isHex says whether c is a hexadecimal digit.
func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// Object walks an object (or null, reported by isNull), calling member for
// each key (unescaped) with the scanner on the value; member must consume
// the value. key is only valid during the call.
func (s *Scanner) Object(member func(key []byte) error) (isNull bool, err error) {
	isNull, empty, err := s.open('{', '}', "looking for beginning of object")
	if isNull || empty || err != nil {
		return isNull, err
	}
	for more := true; more; {
		raw, esc, err := s.str()
		if err != nil {
			return false, err
		}
		key := raw
		if esc {
			var k string
			if err := json.Unmarshal(s.b[s.i-len(raw)-2:s.i], &k); err != nil {
				return false, err
			}
			key = []byte(k)
		}
		if s.Peek() != ':' {
			return false, s.syntax("after object key")
		}
		s.i++
		if err := member(key); err != nil {
			return false, err
		}
		if more, err = s.more('}', "after object key:value pair"); err != nil {
			return false, err
		}
	}
	return false, nil
}

// Array walks an array (or null, reported by isNull), calling elem with the
// scanner on each element; elem must consume it.
func (s *Scanner) Array(elem func() error) (isNull bool, err error) {
	isNull, empty, err := s.open('[', ']', "looking for beginning of array")
	if isNull || empty || err != nil {
		return isNull, err
	}
	for more := true; more; {
		if err := elem(); err != nil {
			return false, err
		}
		if more, err = s.more(']', "after array element"); err != nil {
			return false, err
		}
	}
	return false, nil
}

// open consumes null (isNull) or the opening bracket of an object or array;
// empty says that the closing bracket followed at once.
func (s *Scanner) open(opening, closing byte, notOpening string) (isNull, empty bool, err error) {
	switch s.Peek() {
	case 'n':
		return true, true, s.literal("null")
	case opening:
	default:
		return false, false, s.syntax(notOpening)
	}
	if s.depth++; s.depth > maxDepth {
		return false, false, errors.New("exceeded max depth")
	}
	s.i++
	if s.Peek() == closing {
		s.i++
		s.depth--
		return false, true, nil
	}
	return false, false, nil
}

// more consumes what follows a member or element: a comma (true: another
// follows) or the closing bracket (false).
func (s *Scanner) more(closing byte, notMore string) (bool, error) {
	switch s.Peek() {
	case ',':
		s.i++
		return true, nil
	case closing:
		s.i++
		s.depth--
		return false, nil
	}
	return false, s.syntax(notMore)
}

// Span validates and consumes the next value and returns its bytes (a
// slice of the input, not a copy).
func (s *Scanner) Span() ([]byte, error) {
	s.ws()
	start := s.i
	if err := s.Skip(); err != nil {
		return nil, err
	}
	return s.b[start:s.i], nil
}

// Decode decodes the next value into v with encoding/json; meant for small
// values, whose span is then scanned a second time.
func (s *Scanner) Decode(v any) error {
	b, err := s.Span()
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// String reads a string into dst (null leaves dst as it is, as
// encoding/json does; any other value is encoding/json's type error).
func (s *Scanner) String(dst *string) error {
	if s.Peek() != '"' {
		return s.Decode(dst)
	}
	raw, esc, err := s.str()
	if err != nil {
		return err
	}
	if esc {
		return json.Unmarshal(s.b[s.i-len(raw)-2:s.i], dst)
	}
	*dst = string(raw)
	return nil
}

// StringMap reads an object of strings (null: a nil map).
func (s *Scanner) StringMap(dst *map[string]string) error {
	m := map[string]string{}
	isNull, err := s.Object(func(key []byte) error {
		var v string
		err := s.String(&v)
		m[string(key)] = v
		return err
	})
	if isNull {
		m = nil
	}
	*dst = m
	return err
}

// End checks that only white space follows the value.
func (s *Scanner) End() error {
	if s.ws(); s.i < len(s.b) {
		return s.syntax("after top-level value")
	}
	return nil
}

// Objects reads an array of objects into *dst, one element per object,
// calling member with the element and each key; member must consume the
// value. An element is appended even when member fails, so that *dst shows
// how far reading got. null gives a nil slice, [] an empty one.
func Objects[T any](s *Scanner, dst *[]T, member func(e *T, key []byte) error) error {
	out := []T{}
	isNull, err := s.Array(func() error {
		var e T
		_, err := s.Object(func(key []byte) error { return member(&e, key) })
		out = append(out, e)
		return err
	})
	if isNull {
		out = nil
	}
	*dst = out
	return err
}
