package compat

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// podSecurityTally checks meshrev's injected pods against the Pod Security
// baseline level with Kubernetes' own evaluator (k8s.io/pod-security-admission,
// what the API server's PodSecurity admission runs): with istio-cni
// (trafficInterception: CNI) injection must add no baseline violation to a
// pod; with istio-init it does (NET_ADMIN, NET_RAW), which shows the check
// can fail.
type podSecurityTally struct {
	eval policy.Evaluator
	// cni counts the injected pods in CNI mode and those the injection made
	// fail baseline (with an example); initContainer the same with istio-init.
	cni, initContainer struct {
		pods, broken int
		example      string
	}
	// tproxy counts the pods left out: interceptionMode TPROXY gives
	// istio-proxy NET_ADMIN in both injectors, whatever the interception.
	tproxy int
}

func (p *podSecurityTally) add(t testing.TB, cni bool, in input, out outcome) {
	t.Helper()
	if out.Refused {
		return
	}
	if p.eval == nil {
		e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
		require.NoError(t, err)
		p.eval = e
	}
	var meta struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal(in.Pod, &meta))
	if meta.Metadata.Annotations["sidecar.istio.io/interceptionMode"] == "TPROXY" {
		p.tproxy++
		return
	}
	before := p.forbidden(t, in.Pod)
	var added []string
	for _, r := range p.forbidden(t, out.Pod) {
		if !slices.Contains(before, r) {
			added = append(added, r)
		}
	}
	c := &p.initContainer
	if cni {
		c = &p.cni
	}
	c.pods++
	if len(added) > 0 {
		c.broken++
		if c.example == "" {
			c.example = fmt.Sprintf("%s: %s", in.Name, strings.Join(added, "; "))
		}
	}
}

// forbidden is what the baseline level (latest) forbids in the pod.
func (p *podSecurityTally) forbidden(t testing.TB, raw []byte) []string {
	var pod corev1.Pod
	require.NoError(t, json.Unmarshal(raw, &pod))
	res := policy.AggregateCheckResults(p.eval.EvaluatePod(psapi.LevelVersion{Level: psapi.LevelBaseline, Version: psapi.LatestVersion()}, &pod.ObjectMeta, &pod.Spec))
	out := make([]string, len(res.ForbiddenReasons))
	for j := range res.ForbiddenReasons {
		out[j] = res.ForbiddenReasons[j] + " (" + res.ForbiddenDetails[j] + ")"
	}
	return out
}

func (p *podSecurityTally) check(t *testing.T) {
	t.Logf("Pod Security baseline (k8s.io/pod-security-admission): injection made %d of %d injected pods fail with istio-cni, %d of %d with istio-init (%d TPROXY pods left out)",
		p.cni.broken, p.cni.pods, p.initContainer.broken, p.initContainer.pods, p.tproxy)
	require.Positive(t, p.cni.pods, "no pod was injected in CNI mode")
	require.Zero(t, p.cni.broken, "with trafficInterception: CNI the injected pod must pass baseline when the pod did; first: %s", p.cni.example)
	require.Positive(t, p.initContainer.broken, "with istio-init (NET_ADMIN, NET_RAW) injected pods fail baseline; the check is not seeing the capabilities")
}
