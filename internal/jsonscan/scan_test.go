package jsonscan

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSkipRefusesWhatIsNotJSON(t *testing.T) {
	tests := map[string]struct {
		in      string
		wantErr string
	}{
		"a trailing comma in an object":           {in: `{"a":1,}`, wantErr: `invalid character '}' looking for beginning of string`},
		"array elements without a comma":          {in: `[1 2]`, wantErr: `after array element`},
		"a number with a leading zero":            {in: `01`, wantErr: `after top-level value`},
		"a number ending in a decimal point":      {in: `1.`, wantErr: `unexpected end`},
		"an exponent without digits":              {in: `1e+`, wantErr: `unexpected end`},
		"a control character in a string":         {in: "\"a\x01\"", wantErr: `in string literal`},
		"a short unicode escape":                  {in: `"\u12"`, wantErr: `in \u hexadecimal character escape`},
		"an unknown escape":                       {in: `"\q"`, wantErr: `in string escape code`},
		"a key without a colon":                   {in: `{"a" 1}`, wantErr: `after object key`},
		"a truncated literal":                     {in: `tru`, wantErr: `in literal true`},
		"an unterminated array":                   {in: `[`, wantErr: `unexpected end`},
		"an unterminated string":                  {in: `"abc`, wantErr: `unexpected end`},
		"nothing at all":                          {in: ``, wantErr: `unexpected end`},
		"a stray byte where a value should be":    {in: `]`, wantErr: `looking for beginning of value`},
		"more nesting than encoding/json takes":   {in: strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), wantErr: `exceeded max depth`},
		"a NUL after the value":                   {in: "0\x00", wantErr: `after top-level value`},
		"the deepest nesting encoding/json takes": {in: strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)},
		"white space around a value":              {in: " \t\n\r{\"a\":[true,false,null,-1.5E-3]} \n"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := New([]byte(tc.in))
			err := s.Skip()
			if err == nil {
				err = s.End()
			}
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestObjectUnescapesKeysAndReportsNull(t *testing.T) {
	tests := map[string]struct {
		in         string
		wantKeys   []string
		wantIsNull bool
	}{
		"plain keys in document order":   {in: `{"b":1,"a":2,"b":3}`, wantKeys: []string{"b", "a", "b"}},
		"an escaped key is unescaped":    {in: `{"app\u002fname":1,"tab\t":2}`, wantKeys: []string{"app/name", "tab\t"}},
		"an empty object has no members": {in: ` { } `},
		"null is no object":              {in: `null`, wantIsNull: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := New([]byte(tc.in))
			var keys []string
			isNull, err := s.Object(func(key []byte) error {
				keys = append(keys, string(key))
				return s.Skip()
			})
			require.NoError(t, err)
			require.NoError(t, s.End())
			assert.Equal(t, tc.wantIsNull, isNull)
			assert.Equal(t, tc.wantKeys, keys)
		})
	}
}

func TestSpanIsTheValuesBytesInPlace(t *testing.T) {
	in := []byte(`{"object": {"spec":{"env":[{"name":"A"}]}} , "after":1}`)
	s := New(in)
	var span []byte
	_, err := s.Object(func(key []byte) error {
		if string(key) == "object" {
			var err error
			span, err = s.Span()
			return err
		}
		return s.Skip()
	})
	require.NoError(t, err)
	assert.Equal(t, `{"spec":{"env":[{"name":"A"}]}}`, string(span))
	assert.Same(t, &in[11], &span[0], "a span must be a slice of the input, not a copy")
}

func TestStringReadsAsEncodingJSONDoes(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    string
		wantErr string
	}{
		"a plain string":                 {in: `"istio-proxy"`, want: "istio-proxy"},
		"an escaped string is unescaped": {in: `"a\u00e9\n\"b"`, want: "a\u00e9\n\"b"},
		"null leaves the value as it is": {in: `null`, want: "before"},
		"a number is no string":          {in: `5`, wantErr: "cannot unmarshal number"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := "before"
			err := New([]byte(tc.in)).String(&got)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestStringMap(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		"strings by key, the last duplicate wins": {in: `{"app":"a","app":"b","x\/y":"z"}`, want: map[string]string{"app": "b", "x/y": "z"}},
		"null is a nil map":                       {in: `null`},
		"an empty object is an empty map":         {in: `{}`, want: map[string]string{}},
		"a value must be a string":                {in: `{"a":1}`, wantErr: "cannot unmarshal number"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got map[string]string
			err := New([]byte(tc.in)).StringMap(&got)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestObjects(t *testing.T) {
	type named struct{ Name string }
	tests := map[string]struct {
		in      string
		want    []named
		wantErr string
	}{
		"one element per object, other keys skipped": {in: `[{"name":"a","x":[1]},{"y":{}},{"name":"c"}]`, want: []named{{"a"}, {""}, {"c"}}},
		"null is a nil slice":                        {in: `null`},
		"an empty array is an empty slice":           {in: `[]`, want: []named{}},
		"an element must be an object":               {in: `[{"name":"a"},7]`, wantErr: "looking for beginning of object"},
		"a member's error ends the reading":          {in: `[{"name":1}]`, wantErr: "cannot unmarshal number"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := New([]byte(tc.in))
			var got []named
			err := Objects(s, &got, func(e *named, key []byte) error {
				if string(key) == "name" {
					return s.String(&e.Name)
				}
				return s.Skip()
			})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
