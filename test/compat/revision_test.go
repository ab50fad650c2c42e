package compat

import "github.com/meshrev/meshrev/revisions/v1alpha1"

// istioDiscoveryAddress is where Istio's default chart points the proxy for
// the default revision (istiod, not istiod-<revision>): a revision setting,
// given to meshrev's revision explicitly.
const istioDiscoveryAddress = "istiod.istio-system.svc:15012"

// meshrevRevision is the revision meshrev injects for the comparison, in
// the sidecar mode and traffic interception under test.
func meshrevRevision(name, version string, native, cni bool) v1alpha1.Revision {
	mode := v1alpha1.SidecarModeClassic
	if native {
		mode = v1alpha1.SidecarModeNative
	}
	ti := v1alpha1.TrafficInterceptionInitContainer
	if cni {
		ti = v1alpha1.TrafficInterceptionCNI
	}
	return v1alpha1.Revision{Name: name, Version: version, DiscoveryAddress: istioDiscoveryAddress, SidecarMode: mode, TrafficInterception: ti}
}
