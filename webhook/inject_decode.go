package webhook

import (
	"errors"

	"k8s.io/apimachinery/pkg/types"

	"github.com/meshrev/meshrev/internal/jsonscan"
)

// The hot path reads the AdmissionReview and the pod with jsonscan: every
// byte is validated once, only the fields the injector reads are decoded,
// and the pod object, env and volumeMounts stay spans of the request body.

// decodeReview reads the AdmissionReview fields the injector needs; the
// object is returned as a span of body, not copied.
func decodeReview(body []byte) (*reviewIn, error) {
	w := jsonscan.New(body)
	var in reviewIn
	isNull, err := w.Object(func(key []byte) error {
		switch string(key) {
		case "apiVersion":
			return w.String(&in.APIVersion)
		case "kind":
			return w.String(&in.Kind)
		case "request":
			req := &requestIn{}
			isNull, err := w.Object(func(key []byte) error {
				switch string(key) {
				case "uid":
					var s string
					err := w.String(&s)
					req.UID = types.UID(s)
					return err
				case "kind":
					return w.Decode(&req.Kind)
				case "resource":
					return w.Decode(&req.Resource)
				case "subResource":
					return w.String(&req.SubResource)
				case "name":
					return w.String(&req.Name)
				case "namespace":
					return w.String(&req.Namespace)
				case "operation":
					return w.String(&req.Operation)
				case "object":
					s, err := w.Span()
					req.Object = s
					return err
				}
				return w.Skip()
			})
			if !isNull {
				in.Request = req
			}
			return err
		}
		return w.Skip()
	})
	if err != nil {
		return nil, err
	}
	if isNull {
		return nil, errors.New("AdmissionReview is null")
	}
	return &in, w.End()
}

// decodePod reads the pod fields the injector needs (podIn). Env and
// volumeMounts stay spans of b.
func decodePod(b []byte) (*podIn, error) {
	w := jsonscan.New(b)
	var p podIn
	isNull, err := w.Object(func(key []byte) error {
		switch string(key) {
		case "metadata":
			if w.Peek() == 'n' {
				p.Metadata = nil
				return w.Null()
			}
			p.Metadata = &podMeta{}
			return readMeta(w, p.Metadata)
		case "spec":
			spec := &podSpec{}
			isNull, err := w.Object(func(key []byte) error {
				switch string(key) {
				case "hostNetwork":
					return w.Decode(&spec.HostNetwork)
				case "nodeName":
					return w.String(&spec.NodeName)
				case "initContainers":
					err := readContainers(w, &spec.InitFull)
					spec.InitContainers = nil
					if spec.InitFull != nil {
						spec.InitContainers = make([]namedIn, len(spec.InitFull))
						for j, c := range spec.InitFull {
							spec.InitContainers[j] = namedIn{c.Name}
						}
					}
					return err
				case "volumes":
					return readNames(w, &spec.Volumes)
				case "containers":
					return readContainers(w, &spec.Containers)
				case "securityContext":
					s, err := w.Span()
					spec.SecurityContext = s
					return err
				}
				return w.Skip()
			})
			p.Spec = spec
			if isNull {
				p.Spec = nil
			}
			return err
		}
		return w.Skip()
	})
	if err != nil {
		return nil, err
	}
	if isNull {
		return &p, nil
	}
	return &p, w.End()
}

// readNames reads an array of objects keeping their names.
func readNames(w *jsonscan.Scanner, dst *[]namedIn) error {
	return jsonscan.Objects(w, dst, func(n *namedIn, key []byte) error {
		if string(key) == "name" {
			return w.String(&n.Name)
		}
		return w.Skip()
	})
}

// readContainers reads the containers' names, ports, probes and lifecycle
// hooks, each with its raw bytes (a container the injector changes is
// re-marshalled from them); env and volumeMounts stay spans of the body,
// decoded only when a patch needs them.
func readContainers(w *jsonscan.Scanner, dst *[]containerIn) error {
	out := []containerIn{}
	isNull, err := w.Array(func() error {
		raw, err := w.Span()
		if err != nil {
			return err
		}
		c, err := readContainer(raw)
		out = append(out, c)
		return err
	})
	if isNull {
		out = nil
	}
	*dst = out
	return err
}

// readContainer reads one container object, raw.
func readContainer(raw []byte) (containerIn, error) {
	c := containerIn{Raw: raw}
	w := jsonscan.New(raw)
	_, err := w.Object(func(key []byte) error {
		switch string(key) {
		case "name":
			return w.String(&c.Name)
		case "ports":
			c.Ports = nil
			return w.Decode(&c.Ports)
		case "env":
			s, err := w.Span()
			c.Env = s
			return err
		case "volumeMounts":
			s, err := w.Span()
			c.VolumeMounts = s
			return err
		case "livenessProbe":
			return w.Decode(&c.LivenessProbe)
		case "readinessProbe":
			return w.Decode(&c.ReadinessProbe)
		case "startupProbe":
			return w.Decode(&c.StartupProbe)
		case "lifecycle":
			return w.Decode(&c.Lifecycle)
		}
		return w.Skip()
	})
	if err != nil {
		return c, err
	}
	return c, w.End()
}

// readMeta reads the metadata fields of podMeta with exact keys: a patch path is
// only right if the key it names is the one the API server reads.
func readMeta(w *jsonscan.Scanner, m *podMeta) error {
	_, err := w.Object(func(key []byte) error {
		switch string(key) {
		case "name":
			return w.String(&m.Name)
		case "generateName":
			return w.String(&m.GenerateName)
		case "namespace":
			return w.String(&m.Namespace)
		case "labels":
			return w.StringMap(&m.Labels)
		case "annotations":
			return w.StringMap(&m.Annotations)
		case "ownerReferences":
			return jsonscan.Objects(w, &m.OwnerReferences, func(o *ownerIn, key []byte) error {
				switch string(key) {
				case "apiVersion":
					return w.String(&o.APIVersion)
				case "kind":
					return w.String(&o.Kind)
				case "name":
					return w.String(&o.Name)
				case "controller":
					return w.Decode(&o.Controller)
				}
				return w.Skip()
			})
		}
		return w.Skip()
	})
	return err
}
