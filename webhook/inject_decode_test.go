package webhook

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodePodMatchesEncodingJSON(t *testing.T) {
	tests := map[string]struct{ path string }{
		"a ReplicaSet's pod":              {path: "testdata/inject/pods/reviews-v2.yaml"},
		"a gateway pod":                   {path: "testdata/inject/pods/ingressgateway.yaml"},
		"Istio's serve pod":               {path: "testdata/anchors/serve-pod.json"},
		"Istio's pod with 2,000 env vars": {path: "testdata/anchors/manyenv-pod.json"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := loadPod(t, tc.path)
			got, err := decodePod(b)
			require.NoError(t, err)
			var want podIn
			require.NoError(t, json.Unmarshal(b, &want))
			assert.Equal(t, want.Metadata, got.Metadata)
			require.NotNil(t, got.Spec)
			assert.Equal(t, want.Spec.HostNetwork, got.Spec.HostNetwork)
			assert.Equal(t, want.Spec.InitContainers, got.Spec.InitContainers)
			assert.Equal(t, want.Spec.Volumes, got.Spec.Volumes)
			require.Len(t, got.Spec.Containers, len(want.Spec.Containers))
			for i := range want.Spec.Containers {
				assert.Equal(t, want.Spec.Containers[i].Name, got.Spec.Containers[i].Name)
				assert.Equal(t, want.Spec.Containers[i].Ports, got.Spec.Containers[i].Ports)
				assert.JSONEq(t, orNull(want.Spec.Containers[i].Env), orNull(got.Spec.Containers[i].Env))
				assert.JSONEq(t, orNull(want.Spec.Containers[i].VolumeMounts), orNull(got.Spec.Containers[i].VolumeMounts))
			}
		})
	}
}

func TestDecodePodRefusesWhatIsNotAPod(t *testing.T) {
	tests := map[string]struct {
		in      string
		wantErr string
	}{
		"a number is not an object":         {in: `7`, wantErr: "looking for beginning of object"},
		"a label must be a string":          {in: `{"metadata":{"labels":{"a":1}}}`, wantErr: "cannot unmarshal number"},
		"a container name must be a string": {in: `{"spec":{"containers":[{"name":5}]}}`, wantErr: "cannot unmarshal number"},
		"trailing data after the pod":       {in: `{} {}`, wantErr: "after top-level value"},
		"a truncated pod":                   {in: `{"spec":{"containers":[`, wantErr: "unexpected end"},
		"an empty object has no metadata":   {in: `{}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := decodePod([]byte(tc.in))
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.Nil(t, p.Metadata)
				assert.Nil(t, p.Spec)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func orNull(b []byte) string {
	if len(b) == 0 {
		return "null"
	}
	return string(b)
}
