package webhook

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/meshrev/meshrev/revisions"
)

// TrimNode is the cache transform for Nodes: the injector reads only a
// node's name and kubelet version, and a Node (images, conditions, labels)
// is kilobytes, so the cache keeps this much of each.
func TrimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		// Tombstones and anything else pass unchanged.
		return obj, nil
	}
	return &corev1.Node{
		TypeMeta: n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion,
			DeletionTimestamp: n.DeletionTimestamp,
		},
		Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: n.Status.NodeInfo.KubeletVersion}},
	}, nil
}

// nodeKubelets keeps, from Node events, whether every node's kubelet runs
// native sidecars (revisions.KubeletRunsNativeSidecars): a node event costs
// a version check and a map write, and an admission request one atomic
// load, however many nodes there are.
type nodeKubelets struct {
	mu sync.Mutex
	// old holds the nodes whose kubelet does not run native sidecars, with
	// their versions (for the log); it is empty on an up-to-date cluster.
	old map[string]string
	// all is len(old) == 0, read without the lock.
	all atomic.Bool
	// synced is the handler's HasSynced; listed remembers that it said yes.
	synced func() bool
	listed atomic.Bool
}

// watchNodes registers the handler on c's Node informer.
func watchNodes(ctx context.Context, c cache.Cache) (*nodeKubelets, error) {
	inf, err := c.GetInformer(ctx, &corev1.Node{})
	if err != nil {
		return nil, fmt.Errorf("informer for nodes: %w", err)
	}
	k := &nodeKubelets{old: map[string]string{}}
	k.all.Store(true)
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.set(obj, false) },
		UpdateFunc: func(_, obj any) { k.set(obj, false) },
		DeleteFunc: func(obj any) { k.set(obj, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	k.synced = reg.HasSynced
	return k, nil
}

// set records a node's kubelet (or its removal).
func (k *nodeKubelets) set(obj any, deleted bool) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	v := n.Status.NodeInfo.KubeletVersion
	k.mu.Lock()
	defer k.mu.Unlock()
	if deleted || revisions.KubeletRunsNativeSidecars(v) {
		delete(k.old, n.Name)
	} else {
		k.old[n.Name] = v
	}
	k.all.Store(len(k.old) == 0)
}

// allNative reports whether every node runs native sidecars, waiting (until
// ctx ends) for the informer's first list so that an empty cache is not
// mistaken for a cluster without old nodes. Not synced in time means false:
// a classic sidecar runs everywhere.
func (k *nodeKubelets) allNative(ctx context.Context) bool {
	if !k.listed.Load() {
		if !k.synced() && !toolscache.WaitForCacheSync(ctx.Done(), k.synced) {
			return false
		}
		k.listed.Store(true)
	}
	return k.all.Load()
}
