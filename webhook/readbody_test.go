package webhook

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadBodyAllocatesOnlyForBytesReceived(t *testing.T) {
	tests := map[string]struct {
		announced int64
		body      string
		wantErr   string
		maxCap    int
	}{
		"a client that announces 8 MiB and sends 100 bytes holds no 8 MiB buffer": {
			announced: 8 << 20, body: strings.Repeat("x", 100), maxCap: bodyChunk,
		},
		"a small body is read into one buffer just big enough": {
			announced: 300, body: strings.Repeat("x", 300), maxCap: 301,
		},
		"a body longer than its Content-Length is an error": {
			announced: 10, body: strings.Repeat("x", 20), wantErr: "longer than its Content-Length",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := &http.Request{ContentLength: tc.announced, Body: io.NopCloser(strings.NewReader(tc.body))}
			got, err := readBody(r, DefaultMaxRequestBytes)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.body, string(got))
			assert.LessOrEqual(t, cap(got), tc.maxCap)
		})
	}
}
