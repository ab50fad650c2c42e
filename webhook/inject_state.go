package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// CacheState is the State the manager gives the Injector: reads from the
// manager's informer cache, without deep copies, so a request costs two
// indexer lookups and no API call. The returned Mesh and label maps are the
// cache's own objects: read-only. Measured against the local cluster
// (TestInjectorThroughTheAPIServer logs it): 1.5–2.4 µs and 6 allocations
// for the Mesh and a namespace, against 3–12 µs and 19 allocations with the
// cache's default deep copies — small beside the request, so the simple,
// always-consistent cache read was kept over event handlers maintaining a
// private snapshot.
type CacheState struct {
	reader client.Reader
	live   client.Reader
	nodes  *nodeKubelets
}

// NewCacheState returns a State backed by c. It registers the Mesh, Namespace
// and Node informers up front, so that the first admission request does not
// wait for an informer to start; c's scheme must know v1alpha1, and c should
// trim Nodes with TrimNode. live, when not nil, is read (an API call) only
// when the cache does not hold a pod's namespace yet: a pod created right
// after its namespace would otherwise be refused until the informer catches
// up.
func NewCacheState(ctx context.Context, c cache.Cache, live client.Reader) (*CacheState, error) {
	for _, obj := range []client.Object{&v1alpha1.Mesh{}, &corev1.Namespace{}} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			return nil, fmt.Errorf("cache state: informer for %T: %w", obj, err)
		}
	}
	nodes, err := watchNodes(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("cache state: %w", err)
	}
	return &CacheState{reader: c, live: live, nodes: nodes}, nil
}

// NativeSidecars implements NativeSidecarSupport as Istio decides it: a pod
// already bound to a node the cache holds (spec.nodeName) follows that
// node's kubelet; any other pod gets a native sidecar only when every node's
// kubelet runs them (one atomic load, kept up to date by Node events).
func (s *CacheState) NativeSidecars(ctx context.Context, nodeName string) bool {
	if nodeName != "" {
		var n corev1.Node
		if err := s.reader.Get(ctx, client.ObjectKey{Name: nodeName}, &n, noDeepCopy); err == nil {
			return revisions.KubeletRunsNativeSidecars(n.Status.NodeInfo.KubeletVersion)
		}
		// Istio, too, falls back to every node when the named one is unknown.
	}
	return s.nodes.allNative(ctx)
}

// Mesh returns the Mesh "default" from the cache, or nil when none exists.
// Any other error (the cache not started or not synced before ctx ends) is
// returned: the injector must not mistake it for "no Mesh".
func (s *CacheState) Mesh(ctx context.Context) (*v1alpha1.Mesh, error) {
	var m v1alpha1.Mesh
	if err := s.reader.Get(ctx, client.ObjectKey{Name: v1alpha1.MeshName}, &m, noDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read Mesh %s from the cache: %w", v1alpha1.MeshName, err)
	}
	return &m, nil
}

// NamespaceLabels returns the labels of the named namespace from the cache
// (or, on a cache miss, from the live reader), and false when neither holds
// it. Any error other than NotFound is returned.
func (s *CacheState) NamespaceLabels(ctx context.Context, name string) (map[string]string, bool, error) {
	var ns corev1.Namespace
	err := s.reader.Get(ctx, client.ObjectKey{Name: name}, &ns, noDeepCopy)
	if apierrors.IsNotFound(err) && s.live != nil {
		err = s.live.Get(ctx, client.ObjectKey{Name: name}, &ns)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("read namespace %s from the cache: %w", name, err)
	}
	return ns.Labels, true, nil
}
