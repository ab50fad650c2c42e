package jsonscan

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzScanner checks the Scanner against encoding/json: it accepts exactly
// the valid JSON documents, and a document read through Object, Array,
// String and Decode is the value encoding/json decodes. Its seed corpus
// (testdata/fuzz/FuzzScanner and the f.Add seeds) runs in every plain go
// test.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `null`, `true`, `-0.5e+7`, `"a\u00e9\n"`, `{"a":[1,{"b":null}],"c":"\"}"}`,
		`{"a":1,}`, `[1 2]`, `01`, `1.`, `"\x01"`, `"\u12"`, `{"a" 1}`, `tru`, `[`,
		`{"metadata":{"name":"x"},"spec":{"containers":[{"name":"c","env":[{"name":"E"}]}]}}`,
		`{"a\u0062":1,"ab":2}`, ` [ "x" , {"k":"v"} ] `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(b)
		err := s.Skip()
		if err == nil {
			err = s.End()
		}
		require.Equal(t, json.Valid(b), err == nil, "scanner and encoding/json disagree on %q: %v", b, err)
		if err != nil || !utf8.Valid(b) {
			// (encoding/json replaces invalid UTF-8 in strings with U+FFFD;
			// the scanner hands strings on as they are.)
			return
		}
		var want any
		wantErr := json.Unmarshal(b, &want)
		s = New(b)
		got, err := tree(s)
		if wantErr != nil {
			// Valid JSON that encoding/json cannot decode into an any (a
			// number beyond float64): the scanner's readers refuse it too.
			require.EqualError(t, err, wantErr.Error())
			return
		}
		require.NoError(t, err)
		require.NoError(t, s.End())
		assert.Equal(t, want, got)
	})
}

// tree reads the next value as encoding/json decodes it into an any.
func tree(s *Scanner) (any, error) {
	switch s.Peek() {
	case '{':
		m := map[string]any{}
		_, err := s.Object(func(key []byte) error {
			v, err := tree(s)
			m[string(key)] = v
			return err
		})
		return m, err
	case '[':
		a := []any{}
		_, err := s.Array(func() error {
			v, err := tree(s)
			a = append(a, v)
			return err
		})
		return a, err
	case '"':
		var v string
		err := s.String(&v)
		return v, err
	}
	var v any
	err := s.Decode(&v)
	return v, err
}
