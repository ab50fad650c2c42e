package revisions

import (
	"regexp"
	"strconv"
	"strings"
)

// nativeSidecarMinMinor is the first Kubernetes minor where native sidecars
// (init containers with restartPolicy Always) are stable: 1.33.
const nativeSidecarMinMinor = 33

// kubeletVersion is the version grammar Istio reads kubelet versions with
// (hashicorp/go-version's loose grammar): dotted numbers with an optional
// leading "v", then an optional pre-release (after "-", or letters right
// after the numbers) and an optional "+build".
var kubeletVersion = regexp.MustCompile(`^v?([0-9]+(?:\.[0-9]+)*)` +
	`(?:-[0-9]+[0-9A-Za-z~-]*(?:\.[0-9A-Za-z~-]+)*|-?[A-Za-z~-]+[0-9A-Za-z~-]*(?:\.[0-9A-Za-z~-]+)*)?` +
	`(?:\+[0-9A-Za-z~-]+(?:\.[0-9A-Za-z~-]+)*)?$`)

// KubeletRunsNativeSidecars reports whether a node whose kubelet reports
// version v (status.nodeInfo.kubeletVersion: "v1.36.3", "v1.33.5-eks-1a2b")
// runs native sidecars. It is Istio's rule (pkg/kube/inject
// DetectNativeSidecar): the version must parse, and its second number (a
// missing one counts as 0) must be at least 33; the first number is not
// read. Anything that does not parse ("", "kwok-v0.8.0") says no, so a node
// that cannot tell keeps the pods on classic sidecars.
func KubeletRunsNativeSidecars(v string) bool {
	m := kubeletVersion.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	segments := strings.Split(m[1], ".")
	for _, s := range segments {
		// Istio refuses a version with a number beyond int64.
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return false
		}
	}
	if len(segments) < 2 {
		return false
	}
	minor, _ := strconv.ParseInt(segments[1], 10, 64)
	return minor >= nativeSidecarMinMinor
}
