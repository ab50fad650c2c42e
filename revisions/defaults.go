package revisions

import (
	"fmt"
	"strconv"
)

// Defaults shared by the manager, the webhooks, the controller and the CLI:
// each is defined here once.
const (
	// DefaultMeshNamespace is where the control planes run unless told otherwise.
	DefaultMeshNamespace = "istio-system"
	// DefaultProxyImageRepo is the sidecar image repository; a revision
	// without proxyImage runs <repo>:<version>.
	DefaultProxyImageRepo = "docker.io/istio/proxyv2"
	// DefaultControlPlaneImageRepo is the istiod image repository the CLI
	// proposes for a revision's control plane: <repo>:<version>.
	DefaultControlPlaneImageRepo = "docker.io/istio/pilot"
)

// The ports of a control plane (istiod) that meshrev names.
const (
	// PortXDS is istiod's plain-text xDS port.
	PortXDS = 15010
	// PortXDSTLS is istiod's mTLS xDS and CA port, the one sidecars dial.
	PortXDSTLS = 15012
	// PortWebhook is istiod's webhook port, served behind the Service's 443.
	PortWebhook = 15017
	// PortMonitoring is istiod's monitoring port.
	PortMonitoring = 15014
)

// ControlPlaneName is the name of the Deployment and Service that run a
// revision's control plane: istiod-<revision>.
func ControlPlaneName(revision string) string { return "istiod-" + revision }

// DiscoveryAddress is the address a sidecar of revision dials when the
// revision does not name one: istiod-<revision>.<meshNamespace>.svc:15012.
func DiscoveryAddress(revision, meshNamespace string) string {
	return fmt.Sprintf("%s.%s.svc:%s", ControlPlaneName(revision), meshNamespace, strconv.Itoa(PortXDSTLS))
}
