package compat

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// generatorSeed makes the generated pods the same on every run.
const generatorSeed = 20261129

// annotationChoices are the pod annotations the generator draws from, each
// with valid and invalid values (Istio refuses some invalid ones).
var annotationChoices = map[string][]string{
	"traffic.sidecar.istio.io/includeOutboundIPRanges":      {"*", "10.0.0.0/8,172.16.0.0/12", "", "10.0.0.0/33", "not-a-cidr"},
	"traffic.sidecar.istio.io/excludeOutboundIPRanges":      {"10.96.0.0/12", "1.1.1.1/32,2.2.2.2/32", "", "300.0.0.0/8"},
	"traffic.sidecar.istio.io/includeInboundPorts":          {"*", "8080,9090", "", "80,abc", "70000"},
	"traffic.sidecar.istio.io/excludeInboundPorts":          {"8081", "15020,9000", "", "-1"},
	"traffic.sidecar.istio.io/includeOutboundPorts":         {"443", "80,443", "bad"},
	"traffic.sidecar.istio.io/excludeOutboundPorts":         {"5432", "3306,6379", "99999"},
	"traffic.sidecar.istio.io/excludeInterfaces":            {"eth1", "eth1,eth2"},
	"traffic.sidecar.istio.io/kubevirtInterfaces":           {"net1"},
	"sidecar.istio.io/proxyCPU":                             {"50m", "1", "200m"},
	"sidecar.istio.io/proxyMemory":                          {"64Mi", "1Gi"},
	"sidecar.istio.io/proxyCPULimit":                        {"500m", "2"},
	"sidecar.istio.io/proxyMemoryLimit":                     {"512Mi", "2Gi"},
	"sidecar.istio.io/proxyImage":                           {"docker.io/istio/proxyv2:1.30.0", "proxyv2"},
	"sidecar.istio.io/logLevel":                             {"debug", "info", "warning"},
	"sidecar.istio.io/componentLogLevel":                    {"misc:error", "upstream:debug,connection:trace"},
	"sidecar.istio.io/interceptionMode":                     {"REDIRECT", "TPROXY", "NONE"},
	"sidecar.istio.io/userVolume":                           {`{"cache":{"emptyDir":{}}}`},
	"sidecar.istio.io/userVolumeMount":                      {`{"cache":{"mountPath":"/var/cache"}}`},
	"status.sidecar.istio.io/port":                          {"15020", "15021", "0", "abc"},
	"readiness.status.sidecar.istio.io/initialDelaySeconds": {"5", "0"},
	"readiness.status.sidecar.istio.io/periodSeconds":       {"10"},
	"readiness.status.sidecar.istio.io/failureThreshold":    {"3"},
	"readiness.status.sidecar.istio.io/applicationPorts":    {"8080", ""},
	"sidecar.istio.io/rewriteAppHTTPProbers":                {"true", "false"},
	"sidecar.istio.io/nativeSidecar":                        {"true", "false"},
	"proxy.istio.io/config":                                 {"holdApplicationUntilProxyStarts: true", "concurrency: 2", "terminationDrainDuration: 10s"},
	"prometheus.io/scrape":                                  {"true", "false"},
	"prometheus.io/port":                                    {"9090", "8080"},
	"prometheus.io/path":                                    {"/metrics", "/custom"},
}

// Feature names the generator reports for each pod.
const (
	featProbes      = "probes"
	featLifecycle   = "lifecycle hooks"
	featInit        = "user init containers"
	featSecurity    = "security contexts"
	featOwnProxy    = "pod's own istio-proxy"
	featAnnotations = "annotations"
	featUDP         = "UDP / named ports"
	featLabels      = "app / version labels"
)

// generate returns n pods from a seeded generator that combines
// containers, ports, probes and lifecycle hooks of each kind, init
// containers, security contexts, owners, the pod's own istio-proxy and the
// annotations above.
func generate(n int) []input {
	r := rand.New(rand.NewPCG(generatorSeed, 1))
	keys := make([]string, 0, len(annotationChoices))
	for k := range annotationChoices {
		keys = append(keys, k)
	}
	sortStrings(keys)
	out := make([]input, 0, n)
	for i := range n {
		p, feats := genPod(r, i, keys)
		b, err := json.Marshal(p)
		if err != nil {
			panic(err)
		}
		out = append(out, input{Name: fmt.Sprintf("gen-%04d", i), Pod: b, Features: feats})
	}
	return out
}

func genPod(r *rand.Rand, i int, keys []string) (*corev1.Pod, []string) {
	feats := map[string]bool{}
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}
	p.Namespace = testNamespace
	app := []string{"reviews", "ratings", "web", "api", "worker"}[r.IntN(5)]
	p.Labels = map[string]string{}
	if r.IntN(3) > 0 {
		p.Labels["app"] = app
		feats[featLabels] = true
	}
	if r.IntN(2) == 0 {
		p.Labels["version"] = "v" + strconv.Itoa(1+r.IntN(3))
		feats[featLabels] = true
	}
	switch r.IntN(6) {
	case 0: // ReplicaSet of a Deployment
		hash := fmt.Sprintf("%x", r.Uint32())
		p.GenerateName = app + "-" + hash + "-"
		p.Labels["pod-template-hash"] = hash
		p.OwnerReferences = owner("apps/v1", "ReplicaSet", app+"-"+hash)
	case 1:
		p.GenerateName = app + "-"
		p.OwnerReferences = owner("apps/v1", "StatefulSet", app)
		p.Name = app + "-0"
	case 2:
		p.GenerateName = app + "-job-"
		p.OwnerReferences = owner("batch/v1", "Job", app+"-job")
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
	case 3:
		p.GenerateName = app + "-cron-28765-"
		p.OwnerReferences = owner("batch/v1", "Job", app+"-cron-28765")
		p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	case 4:
		p.GenerateName = app + "-ds-"
		p.OwnerReferences = owner("apps/v1", "DaemonSet", app+"-ds")
	default:
		p.Name = app + "-" + strconv.Itoa(i)
	}

	nc := 1 + r.IntN(3)
	for c := range nc {
		ctr := corev1.Container{Name: fmt.Sprintf("%s-%d", app, c), Image: "docker.io/example/" + app + ":1.0"}
		if c == 0 {
			ctr.Name = app
		}
		for pi := range r.IntN(3) {
			port := corev1.ContainerPort{ContainerPort: int32(8080 + 10*c + pi)}
			if r.IntN(2) == 0 {
				port.Name = fmt.Sprintf("http-%d", pi)
				feats[featUDP] = true
			}
			if r.IntN(5) == 0 {
				port.Protocol = corev1.ProtocolUDP
				feats[featUDP] = true
			} else {
				port.Protocol = corev1.ProtocolTCP
			}
			ctr.Ports = append(ctr.Ports, port)
		}
		if r.IntN(2) == 0 {
			ctr.LivenessProbe = genProbe(r, ctr.Ports)
			feats[featProbes] = true
		}
		if r.IntN(2) == 0 {
			ctr.ReadinessProbe = genProbe(r, ctr.Ports)
			feats[featProbes] = true
		}
		if r.IntN(4) == 0 {
			ctr.StartupProbe = genProbe(r, ctr.Ports)
			feats[featProbes] = true
		}
		if r.IntN(4) == 0 {
			ctr.Lifecycle = &corev1.Lifecycle{}
			if r.IntN(2) == 0 {
				ctr.Lifecycle.PostStart = genHandler(r, ctr.Ports)
			} else {
				ctr.Lifecycle.PreStop = genHandler(r, ctr.Ports)
			}
			feats[featLifecycle] = true
		}
		if r.IntN(4) == 0 {
			ctr.SecurityContext = &corev1.SecurityContext{RunAsUser: new(int64(1000 + r.IntN(3))), RunAsNonRoot: new(true)}
			feats[featSecurity] = true
		}
		p.Spec.Containers = append(p.Spec.Containers, ctr)
	}
	for k := range r.IntN(3) {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{
			Name: fmt.Sprintf("init-%d", k), Image: "docker.io/library/busybox:1.36", Command: []string{"sh", "-c", "true"},
		})
		feats[featInit] = true
	}
	if r.IntN(6) == 0 {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: new(int64(1000)), FSGroup: new(int64(2000))}
		feats[featSecurity] = true
	}
	if r.IntN(12) == 0 {
		own := corev1.Container{Name: "istio-proxy", Image: "auto"}
		switch r.IntN(3) {
		case 0:
			own.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("300m")}}
		case 1:
			own.Env = []corev1.EnvVar{{Name: "EXTRA", Value: "1"}}
		default:
			own.SecurityContext = &corev1.SecurityContext{RunAsUser: new(int64(1500))}
		}
		p.Spec.Containers = append(p.Spec.Containers, own)
		feats[featOwnProxy] = true
	}
	na := r.IntN(4)
	if r.IntN(3) == 0 {
		na = 0
	}
	for range na {
		k := keys[r.IntN(len(keys))]
		vals := annotationChoices[k]
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = vals[r.IntN(len(vals))]
		feats[featAnnotations] = true
	}
	list := make([]string, 0, len(feats))
	for f := range feats {
		list = append(list, f)
	}
	sortStrings(list)
	return p, list
}

func owner(apiVersion, kind, name string) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: "b7d3c1a0-0000-4000-8000-000000000001", Controller: new(true)}}
}

func genPort(r *rand.Rand, ports []corev1.ContainerPort) intstr.IntOrString {
	if len(ports) > 0 && r.IntN(2) == 0 {
		pt := ports[r.IntN(len(ports))]
		if pt.Name != "" && r.IntN(2) == 0 {
			return intstr.FromString(pt.Name)
		}
		return intstr.FromInt32(pt.ContainerPort)
	}
	return intstr.FromInt32(int32(8000 + r.IntN(100)))
}

func genHandler(r *rand.Rand, ports []corev1.ContainerPort) *corev1.LifecycleHandler {
	switch r.IntN(3) {
	case 0:
		return &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/hook", Port: genPort(r, ports)}}
	case 1:
		return &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: genPort(r, ports)}}
	}
	return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "sleep 1"}}}
}

func genProbe(r *rand.Rand, ports []corev1.ContainerPort) *corev1.Probe {
	pr := &corev1.Probe{PeriodSeconds: int32(5 + r.IntN(10)), TimeoutSeconds: 1, FailureThreshold: 3, SuccessThreshold: 1}
	switch r.IntN(5) {
	case 0, 1:
		h := &corev1.HTTPGetAction{Path: "/healthz", Port: genPort(r, ports)}
		if r.IntN(4) == 0 {
			h.Scheme = corev1.URISchemeHTTPS
		}
		if r.IntN(4) == 0 {
			h.HTTPHeaders = []corev1.HTTPHeader{{Name: "X-Probe", Value: "1"}}
		}
		pr.HTTPGet = h
	case 2:
		pr.TCPSocket = &corev1.TCPSocketAction{Port: genPort(r, ports)}
	case 3:
		pr.GRPC = &corev1.GRPCAction{Port: int32(9000 + r.IntN(10))}
	default:
		pr.Exec = &corev1.ExecAction{Command: []string{"cat", "/tmp/ready"}}
	}
	return pr
}
