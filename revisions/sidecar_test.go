package revisions

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKubeletRunsNativeSidecars(t *testing.T) {
	cases := map[string]struct {
		version string
		want    bool
	}{
		"the local cluster's kubelet runs them":   {version: "v1.36.3", want: true},
		"1.33, where they went stable, runs them": {version: "v1.33.0", want: true},
		"1.32 does not": {version: "v1.32.9", want: false},
		"1.28, where they came in as beta, does not":         {version: "v1.28.15", want: false},
		"a vendor's pre-release suffix is read":              {version: "v1.33.5-eks-1a2b3c4", want: true},
		"an old vendor version with a suffix is still old":   {version: "v1.31.2-gke.1200", want: false},
		"a build suffix is read":                             {version: "v1.34.1+k3s1", want: true},
		"letters right after the numbers are a pre-release":  {version: "1.33beta", want: true},
		"no leading v is fine":                               {version: "1.35.0", want: true},
		"two numbers are enough":                             {version: "v1.33", want: true},
		"a lone number has minor 0":                          {version: "v1", want: false},
		"only the minor is read, as Istio does":              {version: "v2.0.0", want: false},
		"an empty version (a node not reporting yet) is old": {version: "", want: false},
		"kwok's own version is no kubelet version":           {version: "kwok-v0.8.0", want: false},
		"garbage after the numbers is refused":               {version: "v1.36.3 (patched)", want: false},
		"a number beyond int64 is refused":                   {version: "v1.99999999999999999999.0", want: false},
		"an empty part is refused":                           {version: "v1..33", want: false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, c.want, KubeletRunsNativeSidecars(c.version), "kubelet version %q", c.version)
		})
	}
}
