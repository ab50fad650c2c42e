package webhook

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Per-pod metadata, computed as Istio's injection template and injector
// compute it (the template's metadata block, kube.GetDeployMetaFromPod,
// applyPrometheusMerge), but in Go on the decoded pod.

const (
	labelCanonicalName     = "service.istio.io/canonical-name"
	labelCanonicalRevision = "service.istio.io/canonical-revision"
	labelWorkloadName      = "service.istio.io/workload-name"
	// annotationDefaultLogs tells kubectl logs which container to read.
	annotationDefaultLogs = "kubectl.kubernetes.io/default-logs-container"
	// annotationProxyConfig is the pod's ProxyConfig overrides (YAML).
	annotationProxyConfig = "proxy.istio.io/config"
	// annotationNativeSidecar overrides the revision's sidecar mode.
	annotationNativeSidecar = "sidecar.istio.io/nativeSidecar"
	// annotationMergeMetrics turns the Prometheus merge off or on.
	annotationMergeMetrics   = "prometheus.istio.io/merge-metrics"
	envPrometheusAnnotations = "ISTIO_PROMETHEUS_ANNOTATIONS"
)

// deployMeta is the pod's workload as Istio names it: the controller, with a
// Deployment's ReplicaSet, a CronJob's Job and a DeploymentConfig's
// ReplicationController walked up by name; the pod itself otherwise.
type deployMeta struct {
	name, kind, apiVersion string
}

// cronJobName matches a Job a CronJob created (<cronjob>-<scheduled minute>).
var cronJobName = regexp.MustCompile(`(.+)-\d{8,10}$`)

func podDeployMeta(m *podMeta) deployMeta {
	d := deployMeta{name: m.Name, kind: "Pod", apiVersion: "v1"}
	if m.GenerateName != "" {
		for _, o := range m.OwnerReferences {
			if o.Controller == nil || !*o.Controller {
				continue
			}
			d = deployMeta{name: o.Name, kind: o.Kind, apiVersion: o.APIVersion}
			switch h := m.Labels["pod-template-hash"]; {
			case o.Kind == "ReplicaSet" && h != "" && strings.HasSuffix(o.Name, h):
				d.name, d.kind = strings.TrimSuffix(o.Name, "-"+h), "Deployment"
			case o.Kind == "ReplicaSet" && m.Labels["rollouts-pod-template-hash"] != "" && strings.HasSuffix(o.Name, m.Labels["rollouts-pod-template-hash"]):
				d.name, d.kind, d.apiVersion = strings.TrimSuffix(o.Name, "-"+m.Labels["rollouts-pod-template-hash"]), "Rollout", "v1alpha1"
			case o.Kind == "ReplicationController" && m.Labels["deploymentconfig"] != "":
				d.name, d.kind = m.Labels["deploymentconfig"], "DeploymentConfig"
			case o.Kind == "Job":
				if jn := cronJobName.FindStringSubmatch(o.Name); len(jn) == 2 {
					d.name, d.kind, d.apiVersion = jn[1], "CronJob", "batch/v1"
				}
			}
			break
		}
	}
	if d.name == "" {
		d.name = m.Name
	}
	return d
}

// ownerEnv is ISTIO_META_OWNER, or nil when Istio's template leaves it out.
func ownerEnv(d deployMeta, namespace string) []byte {
	if d.apiVersion == "" || d.name == "" {
		return nil
	}
	if namespace == "" {
		namespace = "default"
	}
	return envVar("ISTIO_META_OWNER", "kubernetes://apis/"+d.apiVersion+"/namespaces/"+namespace+"/"+strings.ToLower(d.kind)+"s/"+d.name)
}

// canonicalLabels are the canonical service labels of Istio's template: the
// pod's own, else derived from its app labels, else its workload and
// "latest". They are set only where the pod lacks them.
func canonicalLabels(labels map[string]string, d deployMeta) []kvJSON {
	name := firstNonEmpty(labels[labelCanonicalName], labels["app.kubernetes.io/name"], labels["app"], d.name)
	if len(name) > 63 {
		name = name[:63]
	}
	name = strings.Trim(name, "-_.")
	rev := firstNonEmpty(labels[labelCanonicalRevision], labels["app.kubernetes.io/version"], labels["version"], "latest")
	return []kvJSON{kv(labelsPrefix, labelCanonicalName, name), kv(labelsPrefix, labelCanonicalRevision, rev)}
}

const labelsPrefix = "/metadata/labels/"

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// sanitizeKey maps an annotation key to a Prometheus label name, as Istio
// matches the prometheus.io annotations (prometheus.io/port, prometheus_io_port
// and prometheus.io.port are one key).
func sanitizeKey(k string) string {
	b := []byte(k)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

var prometheusKeys = map[string]string{
	"prometheus_io_scrape":               "scrape",
	"prometheus_io_port":                 "port",
	"prometheus_io_path":                 "path",
	"prometheus_istio_io_scrape_targets": "targets",
}

// istioReservedPorts may not be scraped through the merge.
var istioReservedPorts = map[string]string{
	"15000": "Envoy admin", "15001": "outbound traffic capture", "15004": "pilot debug",
	"15006": "inbound traffic capture", "15008": "HBONE tunnel",
	"15020": "pilot-agent status / merged Prometheus", "15021": "Envoy health",
	"15053": "DNS proxy", "15090": "Envoy Prometheus (already merged)",
}

// prometheusMerge is Istio's metrics merge: the agent serves the app's
// metrics and Envoy's together on the status port, so the pod's own scrape
// settings move into ISTIO_PROMETHEUS_ANNOTATIONS and the prometheus.io
// annotations point at the agent. annots are the pod's annotations as they
// will be after the template's; it returns the keys to remove, those to set
// and the env entry (nil when the pod had no scrape settings).
func prometheusMerge(annots map[string]string, statusPort int) (remove []string, set []kvJSON, env []byte, err error) {
	if v, ok := annots[annotationMergeMetrics]; ok {
		if b, perr := strconv.ParseBool(v); perr == nil && !b {
			return nil, nil, nil, nil
		}
	}
	type scrapeTarget struct {
		Port string `json:"port"`
		Path string `json:"path"`
	}
	var cfg struct {
		Scrape  string         `json:"scrape"`
		Path    string         `json:"path"`
		Port    string         `json:"port"`
		Targets []scrapeTarget `json:"targets,omitempty"`
	}
	target := strconv.Itoa(statusPort)
	for k, v := range annots {
		switch prometheusKeys[sanitizeKey(k)] {
		case "scrape":
			if b, perr := strconv.ParseBool(v); perr == nil && !b {
				return nil, nil, nil, nil
			}
			cfg.Scrape = v
		case "port":
			if v == target {
				return nil, nil, nil, nil // already merged (re-invocation) or the user's choice
			}
			cfg.Port = v
		case "path":
			cfg.Path = v
		default:
			continue
		}
		remove = append(remove, k)
	}
	for k, v := range annots {
		if prometheusKeys[sanitizeKey(k)] != "targets" {
			continue
		}
		remove = append(remove, k)
		// prometheus.istio.io/scrape-targets: "port:path,port:path"; one
		// that does not parse is ignored, as Istio logs and ignores it.
		var ts []scrapeTarget
		ok := true
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e == "" {
				continue
			}
			port, path, _ := strings.Cut(e, ":")
			if port = strings.TrimSpace(port); port == "" {
				ok = false
				break
			}
			if path = strings.TrimSpace(path); path == "" {
				path = "/metrics"
			}
			ts = append(ts, scrapeTarget{port, path})
		}
		if ok {
			cfg.Targets = ts
		}
	}
	if len(cfg.Targets) > 0 {
		// The first target is what agents that know no targets scrape.
		cfg.Port, cfg.Path = cfg.Targets[0].Port, cfg.Targets[0].Path
		for _, t := range cfg.Targets {
			n, perr := strconv.Atoi(t.Port)
			if perr != nil || n < 1 || n > 65535 {
				return nil, nil, nil, &conflictError{fmt.Sprintf("invalid prometheus scrape targets: invalid target port %q", t.Port)}
			}
			canon := strconv.Itoa(n)
			if canon == target {
				return nil, nil, nil, &conflictError{fmt.Sprintf("invalid prometheus scrape targets: target port %s conflicts with agent port", t.Port)}
			}
			if reason, ok := istioReservedPorts[canon]; ok {
				return nil, nil, nil, &conflictError{fmt.Sprintf("invalid prometheus scrape targets: target port %s is reserved for Istio (%s) and cannot be scraped", t.Port, reason)}
			}
		}
	} else if cfg.Port != "" {
		n, perr := strconv.Atoi(cfg.Port)
		if perr != nil || n < 1 || n > 65535 {
			return nil, nil, nil, &conflictError{fmt.Sprintf("invalid prometheus scrape configuration: invalid port %q", cfg.Port)}
		}
		canon := strconv.Itoa(n)
		if canon == target {
			return nil, nil, nil, &conflictError{fmt.Sprintf("invalid prometheus scrape configuration: port %s conflicts with agent port", cfg.Port)}
		}
		if reason, ok := istioReservedPorts[canon]; ok {
			return nil, nil, nil, &conflictError{fmt.Sprintf("invalid prometheus scrape configuration: port %s is reserved for Istio (%s) and cannot be scraped", cfg.Port, reason)}
		}
	}
	if cfg.Scrape != "" || cfg.Path != "" || cfg.Port != "" || len(cfg.Targets) > 0 {
		b, _ := json.Marshal(cfg)
		env = envVar(envPrometheusAnnotations, string(b))
	}
	set = []kvJSON{
		kv(annotationsPrefix, "prometheus.io/port", target),
		kv(annotationsPrefix, "prometheus.io/path", "/stats/prometheus"),
		kv(annotationsPrefix, "prometheus.io/scrape", "true"),
	}
	return remove, set, env, nil
}

// envVar marshals an env var with a literal value.
func envVar(name, value string) []byte {
	b := make([]byte, 0, len(name)+len(value)+24)
	b = append(b, `{"name":`...)
	b = appendJSONString(b, name)
	if value != "" { // omitted when empty, as corev1.EnvVar marshals
		b = append(b, `,"value":`...)
		b = appendJSONString(b, value)
	}
	return append(b, '}')
}
