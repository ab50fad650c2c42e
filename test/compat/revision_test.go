package compat

import "github.com/meshrev/meshrev/revisions/v1alpha1"

// meshrevRevision is the revision meshrev injects for the comparison.
// meshrev has no per-revision sidecar mode yet: native is not expressible.
func meshrevRevision(name, version string, native bool) v1alpha1.Revision {
	_ = native
	return v1alpha1.Revision{Name: name, Version: version}
}
