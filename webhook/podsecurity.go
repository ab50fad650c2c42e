package webhook

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Pod Security Admission: the namespace label and the levels it enforces.
const (
	LabelPodSecurityEnforce = "pod-security.kubernetes.io/enforce"
	PodSecurityBaseline     = "baseline"
	PodSecurityRestricted   = "restricted"
)

// baselineCapabilities may be added under the baseline level (Kubernetes
// Pod Security Standards); restricted allows NET_BIND_SERVICE only.
var baselineCapabilities = []corev1.Capability{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}

// PodSecurityProblems returns why the containers a template adds (f) break
// the Pod Security level a namespace enforces (its label
// pod-security.kubernetes.io/enforce): the API server would refuse every
// injected pod there. It checks the template's own containers, for the
// rules a sidecar can break: privileged, added capabilities, and for
// restricted privilege escalation, running as root and dropping ALL.
// Empty when the level is not baseline or restricted, or nothing breaks it.
func PodSecurityProblems(level string, f Fragment) []string {
	if level != PodSecurityBaseline && level != PodSecurityRestricted {
		return nil
	}
	var out []string
	check := func(kind string, c corev1.Container) {
		sc := c.SecurityContext
		if sc == nil {
			if level == PodSecurityRestricted {
				out = append(out, fmt.Sprintf("%s %s has no securityContext (restricted requires allowPrivilegeEscalation=false, runAsNonRoot, capabilities.drop ALL)", kind, c.Name))
			}
			return
		}
		if sc.Privileged != nil && *sc.Privileged {
			out = append(out, fmt.Sprintf("%s %s is privileged", kind, c.Name))
		}
		if sc.Capabilities != nil {
			for _, cap := range sc.Capabilities.Add {
				if level == PodSecurityRestricted && cap != "NET_BIND_SERVICE" || !slices.Contains(baselineCapabilities, cap) {
					out = append(out, fmt.Sprintf("%s %s adds capability %s", kind, c.Name, cap))
				}
			}
		}
		if level != PodSecurityRestricted {
			return
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			out = append(out, fmt.Sprintf("%s %s allows privilege escalation", kind, c.Name))
		}
		if (sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot) || (sc.RunAsUser != nil && *sc.RunAsUser == 0) {
			out = append(out, fmt.Sprintf("%s %s runs as root", kind, c.Name))
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			out = append(out, fmt.Sprintf("%s %s does not drop ALL capabilities", kind, c.Name))
		}
	}
	for _, c := range f.InitContainers {
		check("init container", c)
	}
	for _, c := range f.Containers {
		check("container", c)
	}
	return out
}
