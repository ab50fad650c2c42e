package webhook

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProxyConfig(t *testing.T) {
	const revAddr = "istiod-1-23-6.istio-system.svc:15012"
	cases := map[string]struct {
		defaultConfig map[string]any
		discovery     string
		annotation    string
		want          string
		valuesHold    bool
		wantHold      bool
		wantErr       string
	}{
		"Istio's default install carries nothing": {
			discovery: "istiod.istio-system.svc:15012", want: `{}`,
		},
		"a revision's pod dials the revision's istiod, as Istio's chart sets it": {
			discovery: revAddr, want: `{"discoveryAddress":"` + revAddr + `"}`,
		},
		"the release's defaultConfig is the base, its proxyMetadata included": {
			defaultConfig: map[string]any{"discoveryAddress": revAddr, "proxyMetadata": map[string]any{"ISTIO_META_DNS_CAPTURE": "true"}},
			discovery:     revAddr,
			want:          `{"discoveryAddress":"` + revAddr + `","proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"true"}}`,
		},
		"fields equal to Istio's defaults and an empty proxyMetadata are dropped": {
			defaultConfig: map[string]any{"statusPort": float64(15020), "drainDuration": "45s", "proxyMetadata": map[string]any{}},
			discovery:     "istiod.istio-system.svc:15012",
			want:          `{}`,
		},
		"the pod's annotation wins field by field and merges proxyMetadata": {
			defaultConfig: map[string]any{"proxyMetadata": map[string]any{"A": "1"}, "concurrency": float64(2)},
			discovery:     revAddr,
			annotation:    "concurrency: 4\nproxyMetadata:\n  B: \"2\"\n",
			want:          `{"concurrency":4,"discoveryAddress":"` + revAddr + `","proxyMetadata":{"A":"1","B":"2"}}`,
		},
		"the annotation can point the proxy elsewhere": {
			discovery: revAddr, annotation: "discoveryAddress: istiod.istio-system.svc:15012",
			want: `{}`,
		},
		"holdApplicationUntilProxyStarts from the release holds every pod": {
			defaultConfig: map[string]any{"holdApplicationUntilProxyStarts": true},
			discovery:     "istiod.istio-system.svc:15012",
			want:          `{"holdApplicationUntilProxyStarts":true}`,
			wantHold:      true,
		},
		"a pod can turn the release's hold off": {
			defaultConfig: map[string]any{"holdApplicationUntilProxyStarts": true},
			discovery:     "istiod.istio-system.svc:15012",
			annotation:    "holdApplicationUntilProxyStarts: false",
			want:          `{"holdApplicationUntilProxyStarts":false}`,
		},
		"the release's global.proxy hold holds every pod, as Istio ORs the two": {
			discovery: "istiod.istio-system.svc:15012", valuesHold: true, annotation: "holdApplicationUntilProxyStarts: false",
			want: `{"holdApplicationUntilProxyStarts":false}`, wantHold: true,
		},
		"the release's global.proxy hold leaves PROXY_CONFIG as it is": {
			discovery: "istiod.istio-system.svc:15012", valuesHold: true, want: `{}`, wantHold: true,
		},
		"an annotation that is not a mapping refuses the pod": {
			discovery: revAddr, annotation: "[1, 2", wantErr: "is not a ProxyConfig",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			base, err := newProxyConfigBase(c.defaultConfig, c.discovery, c.valuesHold)
			require.NoError(t, err)
			annots := map[string]string{}
			if c.annotation != "" {
				annots[annotationProxyConfig] = c.annotation
			}
			env, hold, err := proxyConfig(base, annots)
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				return
			}
			require.NoError(t, err)
			var e struct{ Name, Value string }
			require.NoError(t, json.Unmarshal(env, &e))
			assert.Equal(t, "PROXY_CONFIG", e.Name)
			assert.JSONEq(t, c.want, e.Value)
			assert.Equal(t, c.wantHold, hold)
		})
	}
}

func TestProxyConfigLeavesTheBaseAsItWas(t *testing.T) {
	base, err := newProxyConfigBase(map[string]any{"proxyMetadata": map[string]any{"A": "1"}}, "istiod.istio-system.svc:15012", false)
	require.NoError(t, err)
	_, _, err = proxyConfig(base, map[string]string{annotationProxyConfig: "proxyMetadata:\n  B: \"2\"\n"})
	require.NoError(t, err)
	env, _, err := proxyConfig(base, nil)
	require.NoError(t, err)
	assert.Contains(t, string(env), `{\"proxyMetadata\":{\"A\":\"1\"}}`, "one pod's annotation never leaks into the next pod")
}
