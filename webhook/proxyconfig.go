package webhook

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"

	"sigs.k8s.io/yaml"
)

// PROXY_CONFIG, as Istio's injector computes it: the revision's mesh
// defaultConfig, with the pod's proxy.istio.io/config over it, and then
// every field that equals Istio's built-in ProxyConfig default removed
// (cleanProxyConfig in Istio's pkg/kube/inject), so a pod of Istio's default
// install carries "{}". The discovery address is the revision's, the one
// CA_ADDR names: Istio's template takes both from the same field, and its
// chart sets it to the revision's istiod.

// proxyConfigDefaults are the ProxyConfig fields Istio drops from
// PROXY_CONFIG when they equal its defaults (mesh.DefaultProxyConfig), with
// those defaults as JSON decodes them.
var proxyConfigDefaults = map[string]any{
	"configPath":               "./etc/istio/proxy",
	"binaryPath":               "/usr/local/bin/envoy",
	"controlPlaneAuthPolicy":   "MUTUAL_TLS",
	"serviceCluster":           "istio-proxy",
	"drainDuration":            "45s",
	"terminationDrainDuration": "5s",
	"discoveryAddress":         "istiod.istio-system.svc:15012",
	"proxyAdminPort":           float64(15000),
	"statNameLength":           float64(189),
	"statusPort":               float64(15020),
}

// proxyConfigBase is a revision's PROXY_CONFIG before the pod's annotation:
// computed once per render, with its env entry pre-encoded for the pods
// that carry no annotation.
type proxyConfigBase struct {
	fields map[string]any
	env    []byte
	hold   bool
	// valuesHold is global.proxy.holdApplicationUntilProxyStarts of the
	// release: it holds every pod, whatever the pod's annotation says.
	valuesHold bool
}

// newProxyConfigBase builds the base from the release's mesh defaultConfig
// (nil without a release), the revision's discovery address and the
// release's global.proxy.holdApplicationUntilProxyStarts.
func newProxyConfigBase(defaultConfig map[string]any, discoveryAddress string, valuesHold bool) (*proxyConfigBase, error) {
	fields := deepCopyJSON(defaultConfig)
	if fields == nil {
		fields = map[string]any{}
	}
	if discoveryAddress != "" {
		fields["discoveryAddress"] = discoveryAddress
	}
	b, err := json.Marshal(cleanProxyConfig(fields))
	if err != nil {
		return nil, fmt.Errorf("mesh defaultConfig: %w", err)
	}
	hold, _ := fields["holdApplicationUntilProxyStarts"].(bool)
	return &proxyConfigBase{fields: fields, env: envVar("PROXY_CONFIG", string(b)), hold: hold || valuesHold, valuesHold: valuesHold}, nil
}

// emptyProxyConfig is the base of a template rendered outside a revision's
// injection (a template check): Istio's defaults only.
var emptyProxyConfig = &proxyConfigBase{fields: map[string]any{}, env: envVar("PROXY_CONFIG", "{}")}

// proxyConfig is the pod's PROXY_CONFIG env entry over base, and whether it
// asks the application to wait for the proxy. A proxy.istio.io/config that
// is not a YAML mapping refuses the pod, as Istio's injector does.
func proxyConfig(base *proxyConfigBase, annots map[string]string) (env []byte, hold bool, err error) {
	if base == nil {
		base = emptyProxyConfig
	}
	v, ok := annots[annotationProxyConfig]
	if !ok || strings.TrimSpace(v) == "" {
		return base.env, base.hold, nil
	}
	var pod map[string]any
	if err := yaml.Unmarshal([]byte(v), &pod); err != nil {
		return nil, false, &conflictError{fmt.Sprintf("annotation %s is not a ProxyConfig: %v", annotationProxyConfig, err)}
	}
	merged := mergeJSON(deepCopyJSON(base.fields), pod)
	hold, _ = merged["holdApplicationUntilProxyStarts"].(bool)
	hold = hold || base.valuesHold
	b, err := json.Marshal(cleanProxyConfig(merged))
	if err != nil {
		return nil, false, &conflictError{fmt.Sprintf("annotation %s is not a ProxyConfig: %v", annotationProxyConfig, err)}
	}
	return envVar("PROXY_CONFIG", string(b)), hold, nil
}

// cleanProxyConfig drops, in place, the fields equal to Istio's defaults
// and an empty proxyMetadata.
func cleanProxyConfig(m map[string]any) map[string]any {
	for k, def := range proxyConfigDefaults {
		if v, ok := m[k]; ok && reflect.DeepEqual(v, def) {
			delete(m, k)
		}
	}
	if pm, ok := m["proxyMetadata"].(map[string]any); ok && len(pm) == 0 {
		delete(m, "proxyMetadata")
	}
	return m
}

// mergeJSON merges src over dst as a message merge does: mappings merge key
// by key, anything else is replaced.
func mergeJSON(dst, src map[string]any) map[string]any {
	for k, sv := range src {
		if sm, ok := sv.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = mergeJSON(dm, sm)
				continue
			}
		}
		dst[k] = sv
	}
	return dst
}

// deepCopyJSON copies a decoded JSON mapping, nested mappings included
// (lists and scalars are never modified in place, so they are shared).
func deepCopyJSON(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := maps.Clone(m)
	for k, v := range out {
		if vm, ok := v.(map[string]any); ok {
			out[k] = deepCopyJSON(vm)
		}
	}
	return out
}
