package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Per-pod variants of the revision's pre-marshalled containers. A pod
// without the annotations that change them gets the pre-marshalled bytes
// (the common, fast case); a pod with them gets copies of the rendered
// containers with the annotated fields set, as Istio's template sets them.

// podContainers is what one pod gets of the sidecar template.
type podContainers struct {
	initJSON             [][]byte
	initNames            []string
	proxyHead, proxyTail []byte
	volumeJSON           [][]byte
	volumeNames          []string
}

// containersFor returns the pod's variant of r's containers for its
// annotations a; own is the pod's own istio-proxy (nil if none), whose user
// istio-init must exempt and istio-validation run as.
func containersFor(r *rendered, a map[string]string, own *ownProxy) (*podContainers, error) {
	pc := &podContainers{initJSON: r.initJSON, initNames: r.initNames, proxyHead: r.proxyHead, proxyTail: r.proxyTail,
		volumeJSON: r.volumeJSON, volumeNames: r.volumeNames}
	uid := own.proxyUID()
	var ownSC *corev1.SecurityContext
	if own != nil {
		ownSC = own.container.SecurityContext
	}
	if len(a) == 0 && ownSC == nil {
		return pc, nil
	}
	if hasAny(a, initAnnotations) || ownSC != nil {
		pc.initJSON, pc.initNames = nil, nil
		for _, c := range r.frag.InitContainers {
			if c.Name == initContainerName || c.Name == validationContainerName {
				if a[annInterceptionMode] == "NONE" {
					continue // nothing to capture
				}
				c = *c.DeepCopy()
				validation := c.Name == validationContainerName
				if hasAny(a, initAnnotations) {
					c.Args = iptablesArgs(a)
					if validation {
						c.Args = append(c.Args, "--run-validation", "--skip-rule-apply")
					}
				}
				tproxy := a[annInterceptionMode] == "TPROXY"
				if uid != "" && !tproxy {
					for j := 0; j+1 < len(c.Args); j++ {
						if c.Args[j] == "-u" {
							c.Args[j+1] = uid
							break
						}
					}
				}
				if validation && !tproxy && ownSC != nil {
					// istio-validation runs as the pod's proxy user (Istio's
					// adjustInitContainerUser).
					if c.SecurityContext == nil {
						c.SecurityContext = &corev1.SecurityContext{}
					}
					if ownSC.RunAsUser != nil {
						c.SecurityContext.RunAsUser = new(*ownSC.RunAsUser)
					}
					if ownSC.RunAsGroup != nil {
						c.SecurityContext.RunAsGroup = new(*ownSC.RunAsGroup)
					}
				}
				if res, ok, err := annotatedResources(a); err != nil {
					return nil, err
				} else if ok {
					c.Resources = res // the same resources block as istio-proxy's
				}
				if img := a[annProxyImage]; strings.Contains(img, "/") {
					c.Image = img
				}
			}
			b, err := json.Marshal(c)
			if err != nil {
				return nil, err
			}
			pc.initJSON = append(pc.initJSON, b)
			pc.initNames = append(pc.initNames, c.Name)
		}
	}
	if r.proxyIndex >= 0 && hasAny(a, proxyAnnotations) {
		c := r.frag.Containers[r.proxyIndex].DeepCopy()
		if err := annotateProxy(c, a); err != nil {
			return nil, err
		}
		head, tail, err := splitAtPodEnv(*c)
		if err != nil {
			return nil, err
		}
		pc.proxyHead, pc.proxyTail = head, tail
	}
	if v, ok := a[annUserVolume]; ok {
		var vols map[string]json.RawMessage
		if err := json.Unmarshal([]byte(v), &vols); err != nil {
			return nil, &conflictError{fmt.Sprintf("annotation %s is not a JSON object of volumes: %v", annUserVolume, err)}
		}
		pc.volumeJSON, pc.volumeNames = append([][]byte(nil), r.volumeJSON...), append([]string(nil), r.volumeNames...)
		for _, name := range sortedRawKeys(vols) {
			var vol corev1.Volume
			if err := json.Unmarshal(vols[name], &vol); err != nil {
				return nil, &conflictError{fmt.Sprintf("annotation %s: volume %s: %v", annUserVolume, name, err)}
			}
			vol.Name = name
			b, err := json.Marshal(vol)
			if err != nil {
				return nil, err
			}
			pc.volumeJSON = append(pc.volumeJSON, b)
			pc.volumeNames = append(pc.volumeNames, name)
		}
	}
	return pc, nil
}

func sortedRawKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// annotateProxy sets the istio-proxy fields the pod's annotations choose.
func annotateProxy(c *corev1.Container, a map[string]string) error {
	for j, arg := range c.Args {
		for _, f := range []struct{ prefix, key string }{
			{"--proxyLogLevel=", annLogLevel}, {"--proxyComponentLogLevel=", annComponentLogLevel}, {"--log_output_level=", annAgentLogLevel},
		} {
			if v, ok := a[f.key]; ok && strings.HasPrefix(arg, f.prefix) {
				c.Args[j] = f.prefix + v
			}
		}
	}
	if img := a[annProxyImage]; strings.Contains(img, "/") {
		c.Image = img
	}
	if res, ok, err := annotatedResources(a); err != nil {
		return err
	} else if ok {
		c.Resources = res
	}
	if ann(a, annotationStatusPort, "15020") == "0" {
		c.ReadinessProbe, c.StartupProbe = nil, nil
	} else if c.ReadinessProbe != nil {
		for _, f := range []struct {
			key string
			dst *int32
		}{{annReadinessDelay, &c.ReadinessProbe.InitialDelaySeconds}, {annReadinessPeriod, &c.ReadinessProbe.PeriodSeconds}, {annReadinessFailures, &c.ReadinessProbe.FailureThreshold}} {
			if v, ok := a[f.key]; ok {
				n, err := strconv.ParseInt(v, 10, 32)
				if err != nil {
					return &conflictError{fmt.Sprintf("invalid value '%s' for annotation '%s': %v", v, f.key, err)}
				}
				*f.dst = int32(n)
			}
		}
	}
	if mode, ok := a[annInterceptionMode]; ok {
		for j := range c.Env {
			if c.Env[j].Name == "ISTIO_META_INTERCEPTION_MODE" {
				c.Env[j].Value = mode
			}
		}
		if mode == "TPROXY" && c.SecurityContext != nil {
			// TPROXY needs the proxy to bind any address: root with NET_ADMIN.
			sc := c.SecurityContext
			if sc.Capabilities == nil {
				sc.Capabilities = &corev1.Capabilities{}
			}
			sc.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
			sc.RunAsNonRoot, sc.RunAsUser, sc.RunAsGroup = new(false), new(int64(0)), new(int64(1337))
		}
	}
	if v, ok := a[annUserVolumeMount]; ok {
		var mounts map[string]json.RawMessage
		if err := json.Unmarshal([]byte(v), &mounts); err != nil {
			return &conflictError{fmt.Sprintf("annotation %s is not a JSON object of volume mounts: %v", annUserVolumeMount, err)}
		}
		for _, name := range sortedRawKeys(mounts) {
			var m corev1.VolumeMount
			if err := json.Unmarshal(mounts[name], &m); err != nil {
				return &conflictError{fmt.Sprintf("annotation %s: mount %s: %v", annUserVolumeMount, name, err)}
			}
			m.Name = name
			c.VolumeMounts = append(c.VolumeMounts, m)
		}
	}
	return nil
}

// splitAtPodEnv marshals the proxy container with a marker where the per-pod
// env entries go and returns what surrounds it.
func splitAtPodEnv(c corev1.Container) (head, tail []byte, err error) {
	c.Env = append(c.Env[:len(c.Env):len(c.Env)], corev1.EnvVar{Name: podEnvSentinel})
	b, err := json.Marshal(c)
	if err != nil {
		return nil, nil, err
	}
	marker := []byte(`{"name":"` + podEnvSentinel + `"}`)
	at := bytes.Index(b, marker)
	if at < 0 {
		return nil, nil, errors.New("internal error: per-pod env marker lost in marshalled istio-proxy container")
	}
	return b[:at], b[at+len(marker):], nil
}

// annotatedResources are the resources the sidecar.istio.io/proxy{CPU,Memory}
// [Limit] annotations choose (for istio-proxy and istio-init alike): only
// what is annotated, no defaults, as Istio's template; ok is false when
// none is.
func annotatedResources(a map[string]string) (res corev1.ResourceRequirements, ok bool, err error) {
	if !hasAny(a, resourceAnnotations) {
		return res, false, nil
	}
	for _, s := range []struct {
		l    *corev1.ResourceList
		name corev1.ResourceName
		key  string
	}{{&res.Requests, corev1.ResourceCPU, annProxyCPU}, {&res.Requests, corev1.ResourceMemory, annProxyMemory},
		{&res.Limits, corev1.ResourceCPU, annProxyCPULimit}, {&res.Limits, corev1.ResourceMemory, annProxyMemoryLimit}} {
		v, set := a[s.key]
		if !set {
			continue
		}
		q, perr := resource.ParseQuantity(v)
		if perr != nil {
			return res, false, &conflictError{fmt.Sprintf("invalid value '%s' for annotation '%s': %v", v, s.key, perr)}
		}
		if *s.l == nil {
			*s.l = corev1.ResourceList{}
		}
		(*s.l)[s.name] = q
	}
	return res, true, nil
}

var resourceAnnotations = []string{annProxyCPU, annProxyMemory, annProxyCPULimit, annProxyMemoryLimit}

// variantAnnotations are the annotations containersFor reads.
var variantAnnotations = func() []string {
	var out []string
	for _, k := range append(append(slices.Clone(initAnnotations), proxyAnnotations...), annUserVolume) {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}()

// maxVariants bounds each template's cache of per-pod variants: the pods of
// one workload share their annotations, so a few entries serve a cluster;
// when full it starts over rather than grow with the number of workloads.
const maxVariants = 256

// variantCache keeps the pod variants of one rendered template by the values
// of the annotations that make them (variantAnnotations), so that the pods
// of a Deployment with, say, proxyCPU set do not each re-marshal istio-proxy.
type variantCache struct {
	mu sync.Mutex
	m  map[string]*podContainers
}

// podContainersFor is containersFor through r's variant cache; a pod that
// brings its own istio-proxy with a security context is not cached (its
// user is part of the variant). The result may be modified by the caller.
func (r *rendered) podContainersFor(a map[string]string, own *ownProxy) (*podContainers, error) {
	if own != nil && own.container.SecurityContext != nil {
		return containersFor(r, a, own)
	}
	var key []byte
	for j, k := range variantAnnotations {
		if v, ok := a[k]; ok {
			key = append(key, byte(j))
			key = append(key, v...)
			key = append(key, 0)
		}
	}
	if key == nil {
		return containersFor(r, a, nil) // the template's own bytes: no work
	}
	r.variants.mu.Lock()
	pc, ok := r.variants.m[string(key)]
	r.variants.mu.Unlock()
	if !ok {
		var err error
		if pc, err = containersFor(r, a, nil); err != nil {
			return nil, err
		}
		r.variants.mu.Lock()
		if r.variants.m == nil || len(r.variants.m) >= maxVariants {
			r.variants.m = make(map[string]*podContainers, 8)
		}
		r.variants.m[string(key)] = pc
		r.variants.mu.Unlock()
	}
	cp := *pc
	return &cp, nil
}
