package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/internal/jsonscan"
)

// inputs are AdmissionReviews of the injector's benchmarks (webhook's
// BenchmarkServeInject): the typical pod and Istio's two benchmark pods.
func inputs(tb testing.TB) map[string][]byte {
	tb.Helper()
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		require.NoError(tb, err)
		j, err := yaml.YAMLToJSON(b)
		require.NoError(tb, err)
		return review(j)
	}
	return map[string][]byte{
		"typical":               read("../../../webhook/testdata/inject/pods/reviews-v2.yaml"),
		"istio-anchor":          read("../../../webhook/testdata/anchors/serve-pod.json"),
		"istio-anchor-env-2000": read("../../../webhook/testdata/anchors/manyenv-pod.json"),
	}
}

var names = []string{"typical", "istio-anchor", "istio-anchor-env-2000"}

func review(pod []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","object":`)
	b.Write(pod)
	b.WriteString(`,"oldObject":null,"dryRun":false,"options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}`)
	return b.Bytes()
}

// extracted is what the injector reads of a review: the request's uid, the
// pod's labels and annotations, and each container's name and env (a span
// of the input).
type extracted struct {
	uid         string
	labels      map[string]string
	annotations map[string]string
	containers  []string
	env         [][]byte
}

// withScanner reads a review as the injector does, with jsonscan.
func withScanner(b []byte) (*extracted, error) {
	var out extracted
	var object []byte
	s := jsonscan.New(b)
	_, err := s.Object(func(key []byte) error {
		if string(key) != "request" {
			return s.Skip()
		}
		_, err := s.Object(func(key []byte) error {
			switch string(key) {
			case "uid":
				return s.String(&out.uid)
			case "object":
				var err error
				object, err = s.Span()
				return err
			}
			return s.Skip()
		})
		return err
	})
	if err == nil {
		err = s.End()
	}
	if err != nil {
		return nil, err
	}
	s = jsonscan.New(object)
	_, err = s.Object(func(key []byte) error {
		switch string(key) {
		case "metadata":
			_, err := s.Object(func(key []byte) error {
				switch string(key) {
				case "labels":
					return s.StringMap(&out.labels)
				case "annotations":
					return s.StringMap(&out.annotations)
				}
				return s.Skip()
			})
			return err
		case "spec":
			_, err := s.Object(func(key []byte) error {
				if string(key) != "containers" {
					return s.Skip()
				}
				_, err := s.Array(func() error {
					var name string
					var env []byte
					_, err := s.Object(func(key []byte) error {
						switch string(key) {
						case "name":
							return s.String(&name)
						case "env":
							var err error
							env, err = s.Span()
							return err
						}
						return s.Skip()
					})
					out.containers = append(out.containers, name)
					out.env = append(out.env, env)
					return err
				})
				return err
			})
			return err
		}
		return s.Skip()
	})
	return &out, err
}

// textReader reads with one reused jsontext.Decoder. Duplicate names are
// allowed (the API server's decoder takes the last) and UTF-8 is not
// checked (encoding/json does not refuse invalid UTF-8 either), as with
// jsonscan.
type textReader struct {
	r   bytes.Reader
	dec jsontext.Decoder
}

var textOpts = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

func (t *textReader) reset(b []byte) {
	t.r.Reset(b)
	t.dec.Reset(&t.r, textOpts...)
}

// span reads the next value and returns it as a slice of the input b.
func (t *textReader) span(b []byte) ([]byte, error) {
	v, err := t.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	end := int(t.dec.InputOffset())
	return b[end-len(v) : end], nil
}

// str reads a string (object name or value), unescaped.
func (t *textReader) str() ([]byte, error) {
	v, err := t.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	if v.Kind() != '"' {
		return nil, fmt.Errorf("want a string, got %s", v.Kind())
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1], nil
	}
	return jsontext.AppendUnquote(nil, v)
}

// object reads an object, calling member for each name.
func (t *textReader) object(member func(name []byte) error) error {
	tok, err := t.dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() == 'n' {
		return nil
	}
	if tok.Kind() != '{' {
		return fmt.Errorf("want an object, got %s", tok.Kind())
	}
	for t.dec.PeekKind() != '}' {
		name, err := t.str()
		if err != nil {
			return err
		}
		if err := member(name); err != nil {
			return err
		}
	}
	_, err = t.dec.ReadToken()
	return err
}

func (t *textReader) stringMap(dst *map[string]string) error {
	m := map[string]string{}
	err := t.object(func(name []byte) error {
		v, err := t.str()
		m[string(name)] = string(v)
		return err
	})
	*dst = m
	return err
}

// withJSONText reads a review as withScanner does, with jsontext.
func (t *textReader) withJSONText(b []byte) (*extracted, error) {
	var out extracted
	var object []byte
	t.reset(b)
	err := t.object(func(name []byte) error {
		if string(name) != "request" {
			return t.dec.SkipValue()
		}
		return t.object(func(name []byte) error {
			switch string(name) {
			case "uid":
				v, err := t.str()
				out.uid = string(v)
				return err
			case "object":
				var err error
				object, err = t.span(b)
				return err
			}
			return t.dec.SkipValue()
		})
	})
	if err != nil {
		return nil, err
	}
	if _, err := t.dec.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("data after the review: %v", err)
	}
	t.reset(object)
	err = t.object(func(name []byte) error {
		switch string(name) {
		case "metadata":
			return t.object(func(name []byte) error {
				switch string(name) {
				case "labels":
					return t.stringMap(&out.labels)
				case "annotations":
					return t.stringMap(&out.annotations)
				}
				return t.dec.SkipValue()
			})
		case "spec":
			return t.object(func(name []byte) error {
				if string(name) != "containers" {
					return t.dec.SkipValue()
				}
				if _, err := t.dec.ReadToken(); err != nil {
					return err
				}
				for t.dec.PeekKind() != ']' {
					var cname string
					var env []byte
					err := t.object(func(name []byte) error {
						switch string(name) {
						case "name":
							v, err := t.str()
							cname = string(v)
							return err
						case "env":
							var err error
							env, err = t.span(object)
							return err
						}
						return t.dec.SkipValue()
					})
					if err != nil {
						return err
					}
					out.containers = append(out.containers, cname)
					out.env = append(out.env, env)
				}
				_, err := t.dec.ReadToken()
				return err
			})
		}
		return t.dec.SkipValue()
	})
	return &out, err
}

func TestBothReadTheSame(t *testing.T) {
	in := inputs(t)
	var tr textReader
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			want, err := withScanner(in[name])
			require.NoError(t, err)
			got, err := tr.withJSONText(in[name])
			require.NoError(t, err)
			require.NotEmpty(t, want.containers)
			assert.Equal(t, want, got)
			var wantUID struct {
				Request struct{ UID string } `json:"request"`
			}
			require.NoError(t, json.Unmarshal(in[name], &wantUID))
			assert.Equal(t, wantUID.Request.UID, got.uid)
		})
	}
}

// BenchmarkRead reads what the injector needs of each review.
func BenchmarkRead(b *testing.B) {
	in := inputs(b)
	for _, name := range names {
		body := in[name]
		b.Run("in="+name+"/impl=jsonscan", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := withScanner(body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("in="+name+"/impl=jsontext", func(b *testing.B) {
			var tr textReader
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tr.withJSONText(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidate validates each whole review.
func BenchmarkValidate(b *testing.B) {
	in := inputs(b)
	for _, name := range names {
		body := in[name]
		b.Run("in="+name+"/impl=jsonscan", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				s := jsonscan.New(body)
				if err := s.Skip(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("in="+name+"/impl=jsontext", func(b *testing.B) {
			var tr textReader
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				tr.reset(body)
				if err := tr.dec.SkipValue(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("in="+name+"/impl=encoding-json-Valid", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if !json.Valid(body) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
