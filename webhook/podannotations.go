package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// The pod annotations Istio's injector reads, validated as Istio validates
// them before it renders (pkg/kube/inject/validate.go): a pod with an
// invalid value is refused with the same reasons, instead of being injected
// with a value the proxy or istio-iptables would fail on.

var annotationValidators = map[string]func(string) error{
	"sidecar.istio.io/interceptionMode":                     validateInterceptionMode,
	annotationStatusPort:                                    validateStatusPort,
	"readiness.status.sidecar.istio.io/initialDelaySeconds": validateUInt32,
	"readiness.status.sidecar.istio.io/periodSeconds":       validateUInt32,
	"readiness.status.sidecar.istio.io/failureThreshold":    validateUInt32,
	"traffic.sidecar.istio.io/includeOutboundIPRanges":      validateIncludeIPRanges,
	"traffic.sidecar.istio.io/excludeOutboundIPRanges":      validateExcludeIPRanges,
	"traffic.sidecar.istio.io/includeInboundPorts":          validateIncludeInboundPorts,
	"traffic.sidecar.istio.io/excludeInboundPorts":          portListValidator("excludeInboundPorts"),
	"traffic.sidecar.istio.io/excludeOutboundPorts":         portListValidator("excludeOutboundPorts"),
	"traffic.sidecar.istio.io/excludeInterfaces":            validateInterfaceNames,
	"traffic.sidecar.istio.io/kubevirtInterfaces":           validateInterfaceNames,
	"istio.io/reroute-virtual-interfaces":                   validateInterfaceNames,
	annotationMergeMetrics:                                  validateBool,
	annotationProxyConfig:                                   validateProxyConfigYAML,
	"sidecar.istio.io/proxyCPU":                             validateQuantity,
	"sidecar.istio.io/proxyMemory":                          validateQuantity,
	"sidecar.istio.io/proxyCPULimit":                        validateQuantity,
	"sidecar.istio.io/proxyMemoryLimit":                     validateQuantity,
}

// validateAnnotations returns every invalid annotation, in key order.
func validateAnnotations(annots map[string]string) error {
	var errs []string
	for k, v := range annots {
		if f, ok := annotationValidators[k]; ok {
			if err := f(v); err != nil {
				errs = append(errs, fmt.Sprintf("invalid value '%s' for annotation '%s': %v", v, k, err))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return &conflictError{strings.Join(errs, "; ")}
}

func validateInterceptionMode(v string) error {
	switch v {
	case "REDIRECT", "TPROXY", "NONE":
		return nil
	}
	return fmt.Errorf("interceptionMode invalid, use REDIRECT,TPROXY,NONE: %v", v)
}

func validateStatusPort(v string) error {
	if _, err := parsePort(v); err != nil {
		return fmt.Errorf("excludeInboundPorts invalid: %v", err)
	}
	return nil
}

func validateUInt32(v string) error {
	_, err := strconv.ParseUint(v, 10, 32)
	return err
}

func validateBool(v string) error {
	_, err := strconv.ParseBool(v)
	return err
}

func validateQuantity(v string) error {
	for _, r := range v {
		if unicode.IsControl(r) {
			return errors.New("value contains control characters")
		}
	}
	_, err := resource.ParseQuantity(v)
	return err
}

func validateIncludeIPRanges(v string) error {
	if v == "*" {
		return nil
	}
	if err := validateCIDRList(v); err != nil {
		return fmt.Errorf("includeIPRanges invalid: %v", err)
	}
	return nil
}

func validateExcludeIPRanges(v string) error {
	if err := validateCIDRList(v); err != nil {
		return fmt.Errorf("excludeIPRanges invalid: %v", err)
	}
	return nil
}

func validateCIDRList(v string) error {
	if v == "" {
		return nil
	}
	for c := range strings.SplitSeq(v, ",") {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("failed parsing cidr '%s': %v", c, err)
		}
	}
	return nil
}

func validateIncludeInboundPorts(v string) error {
	if v == "*" {
		return nil
	}
	return portListValidator("includeInboundPorts")(v)
}

func portListValidator(name string) func(string) error {
	return func(v string) error {
		v = strings.TrimSpace(v)
		if v == "" {
			return nil
		}
		for p := range strings.SplitSeq(v, ",") {
			if _, err := parsePort(p); err != nil {
				return fmt.Errorf("%s invalid: failed parsing port '%s': %v", name, p, err)
			}
		}
		return nil
	}
}

func parsePort(s string) (int, error) {
	p, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("failed parsing port '%s': %v", s, err)
	}
	return int(p), nil
}

var interfaceName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_.\-]*$`)

func validateInterfaceNames(v string) error {
	if v == "" {
		return nil
	}
	for iface := range strings.SplitSeq(v, ",") {
		iface = strings.TrimSpace(iface)
		switch {
		case iface == "":
			return errors.New("empty interface name")
		case len(iface) > 15:
			return fmt.Errorf("interface name %q too long (max 15 chars)", iface)
		case !interfaceName.MatchString(iface):
			return fmt.Errorf("interface name %q contains invalid characters", iface)
		}
	}
	return nil
}

// validateProxyConfigYAML checks that proxy.istio.io/config is a YAML
// mapping. Istio also validates each ProxyConfig field against its proto;
// meshrev does not carry that schema (COMPAT.md).
func validateProxyConfigYAML(v string) error {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(v), &m); err != nil {
		return fmt.Errorf("failed to convert to apply proxy config: %v", err)
	}
	return nil
}

// Annotations that change what is injected, read as Istio's template reads
// them (present, even empty, wins over the default).
const (
	annInterceptionMode  = "sidecar.istio.io/interceptionMode"
	annIncludeIPRanges   = "traffic.sidecar.istio.io/includeOutboundIPRanges"
	annExcludeIPRanges   = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
	annIncludeInbound    = "traffic.sidecar.istio.io/includeInboundPorts"
	annExcludeInbound    = "traffic.sidecar.istio.io/excludeInboundPorts"
	annIncludeOutbound   = "traffic.sidecar.istio.io/includeOutboundPorts"
	annExcludeOutbound   = "traffic.sidecar.istio.io/excludeOutboundPorts"
	annExcludeInterfaces = "traffic.sidecar.istio.io/excludeInterfaces"
	annKubevirt          = "traffic.sidecar.istio.io/kubevirtInterfaces"
	annReroute           = "istio.io/reroute-virtual-interfaces"
	annAgentLogLevel     = "sidecar.istio.io/agentLogLevel"
	annLogLevel          = "sidecar.istio.io/logLevel"
	annComponentLogLevel = "sidecar.istio.io/componentLogLevel"
	annProxyImage        = "sidecar.istio.io/proxyImage"
	annProxyCPU          = "sidecar.istio.io/proxyCPU"
	annProxyMemory       = "sidecar.istio.io/proxyMemory"
	annProxyCPULimit     = "sidecar.istio.io/proxyCPULimit"
	annProxyMemoryLimit  = "sidecar.istio.io/proxyMemoryLimit"
	annReadinessDelay    = "readiness.status.sidecar.istio.io/initialDelaySeconds"
	annReadinessPeriod   = "readiness.status.sidecar.istio.io/periodSeconds"
	annReadinessFailures = "readiness.status.sidecar.istio.io/failureThreshold"
	annUserVolume        = "sidecar.istio.io/userVolume"
	annUserVolumeMount   = "sidecar.istio.io/userVolumeMount"
)

// initAnnotations are those that change istio-init; proxyAnnotations those
// that change istio-proxy. A pod with none of them gets the pre-marshalled
// containers as they are.
var (
	initAnnotations = []string{annInterceptionMode, annIncludeIPRanges, annExcludeIPRanges, annIncludeInbound, annExcludeInbound,
		annotationStatusPort, annIncludeOutbound, annExcludeOutbound, annExcludeInterfaces, annKubevirt, annReroute, annAgentLogLevel, annProxyImage,
		annProxyCPU, annProxyMemory, annProxyCPULimit, annProxyMemoryLimit}
	proxyAnnotations = []string{annInterceptionMode, annAgentLogLevel, annLogLevel, annComponentLogLevel, annProxyImage, annProxyCPU, annProxyMemory,
		annProxyCPULimit, annProxyMemoryLimit, annReadinessDelay, annReadinessPeriod, annReadinessFailures, annotationStatusPort, annUserVolumeMount}
)

func hasAny(annots map[string]string, keys []string) bool {
	for _, k := range keys {
		if _, ok := annots[k]; ok {
			return true
		}
	}
	return false
}

func ann(annots map[string]string, key, def string) string {
	if v, ok := annots[key]; ok {
		return v
	}
	return def
}

// excludeInboundPort adds the status port to the excluded inbound ports
// unless it is 0 or already there (Istio's template function).
func excludeInboundPort(port, excluded string) string {
	port = strings.TrimSpace(port)
	if port == "" || port == "0" {
		return excluded
	}
	var out []string
	for p := range strings.SplitSeq(excluded, ",") {
		if p == port {
			return excluded
		}
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(append(out, port), ",")
}

// iptablesArgs are istio-init's arguments for the pod's annotations.
func iptablesArgs(a map[string]string) []string {
	d := "15090,15021"
	if ex := excludeInboundPort(ann(a, annotationStatusPort, "15020"), ann(a, annExcludeInbound, "")); ex != "" {
		d += "," + ex
	}
	args := []string{"istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", ann(a, annInterceptionMode, "REDIRECT"),
		"-i", ann(a, annIncludeIPRanges, "*"), "-x", ann(a, annExcludeIPRanges, ""), "-b", ann(a, annIncludeInbound, "*"), "-d", d}
	if v, ok := a[annIncludeOutbound]; ok {
		args = append(args, "-q", v)
	}
	if v, ok := a[annExcludeOutbound]; ok {
		args = append(args, "-o", v)
	}
	if v, ok := a[annReroute]; ok {
		args = append(args, "-k", v)
	} else if v, ok := a[annKubevirt]; ok {
		args = append(args, "-k", v)
	}
	if v, ok := a[annExcludeInterfaces]; ok {
		args = append(args, "-c", v)
	}
	return append(args, "--log_output_level="+ann(a, annAgentLogLevel, "default:info"))
}
