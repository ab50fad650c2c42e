package webhook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProxyImageFromValues(t *testing.T) {
	cases := map[string]struct {
		values  string
		want    string
		wantOK  bool
		wantErr string
	}{
		"hub and tag of the release, Istio's default image name": {
			values: `{"global":{"hub":"mirror.example/istio","tag":"1.23.6","proxy":{"image":""}}}`, want: "mirror.example/istio/proxyv2:1.23.6", wantOK: true,
		},
		"an image name of the release": {
			values: `{"global":{"hub":"docker.io/istio","tag":"1.23.6","proxy":{"image":"proxyv2-custom"}}}`, want: "docker.io/istio/proxyv2-custom:1.23.6", wantOK: true,
		},
		"a variant is appended to the tag": {
			values: `{"global":{"hub":"docker.io/istio","tag":"1.23.6","variant":"distroless"}}`, want: "docker.io/istio/proxyv2:1.23.6-distroless", wantOK: true,
		},
		"a full image reference wins over hub and tag": {
			values: `{"global":{"hub":"docker.io/istio","tag":"1.23.6","proxy":{"image":"registry.example/envoy:7"}}}`, want: "registry.example/envoy:7", wantOK: true,
		},
		"a numeric tag": {
			values: `{"global":{"hub":"docker.io/istio","tag":1.23}}`, want: "docker.io/istio/proxyv2:1.23", wantOK: true,
		},
		"no hub says nothing":                   {values: `{"global":{"tag":"1.23.6"}}`},
		"no values say nothing":                 {values: ""},
		"values that are not JSON are an error": {values: `{`, wantErr: "injection values are not JSON"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok, err := ProxyImageFromValues(c.values)
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.wantOK, ok)
			assert.Equal(t, c.want, got)
		})
	}
}
