package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Names and marks of the Helm releases meshrev installs.
const (
	// BaseRelease is the release of Istio's base chart (CRDs and the default
	// validating webhook), one per mesh namespace.
	BaseRelease = "istio-base"
	// AnnotationReleaseHash, on the Deployment of an istiod release and on
	// the CRDs of the base release, is the hash of what meshrev installed
	// (chart, version, values, owner): equal means nothing to do, read from
	// the cache.
	AnnotationReleaseHash = "meshrev.io/release-hash"
	// LabelRelease, on the Deployment of an istiod release, names the release.
	LabelRelease = "meshrev.io/release"
	// ReleaseLabelManaged marks (as a Helm release label) the releases meshrev
	// installed: only those are ever uninstalled.
	ReleaseLabelManaged = "meshrev.io-managed"
)

// helmReleases installs, upgrades and uninstalls the Helm releases of the
// helm control planes with Helm's Go SDK, in-process.
type helmReleases struct {
	getter    *restGetter
	charts    *chartCache
	namespace string

	mu sync.Mutex
	// results is the outcome of the last install or upgrade per revision.
	results map[string]releaseResult
	// listedGeneration is the Mesh generation whose releases were last
	// listed from Helm's storage (to find the ones to uninstall).
	listedGeneration int64
}

// releaseResult is the outcome of meshrev's last action on a release.
type releaseResult struct {
	status       string
	chartVersion string
	err          string
}

func newHelmReleases(cfg *rest.Config, cacheDir, namespace string) *helmReleases {
	return &helmReleases{
		getter:    &restGetter{cfg: cfg, namespace: namespace},
		charts:    &chartCache{dir: cacheDir},
		namespace: namespace,
		results:   map[string]releaseResult{},
	}
}

// desiredRelease is one release as meshrev wants it.
type desiredRelease struct {
	name      string
	chart     string
	version   string
	repo      string
	values    map[string]any
	owner     *ownerRef
	stampKind string // the kind of the objects stamped with the hash
	stampName string // their name ("" for every object of stampKind)
	hash      string
}

// ownerRef is the Mesh as owner of a release's objects (deletion policy Uninstall).
type ownerRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
}

// istiodRelease is the release of a helm revision: Istio's istiod chart with
// the user's values under meshrev's own.
func istiodRelease(mesh *v1alpha1.Mesh, rev *v1alpha1.Revision, namespace string) (desiredRelease, error) {
	h := rev.ControlPlane.Helm
	user := map[string]any{}
	if h.Values != nil && len(h.Values.Raw) > 0 {
		if err := json.Unmarshal(h.Values.Raw, &user); err != nil {
			return desiredRelease{}, fmt.Errorf("values of revision %s: %w", rev.Name, err)
		}
	}
	own := map[string]any{
		"revision": rev.Name,
		"global": map[string]any{
			"istioNamespace": namespace,
			// The chart's own switch for its sidecar-injector (and revision
			// tag) MutatingWebhookConfigurations: only meshrev injects.
			"operatorManageWebhooks": true,
		},
	}
	d := desiredRelease{
		name:      revisions.ControlPlaneName(rev.Name),
		chart:     ChartIstiod,
		version:   revisions.ChartVersion(rev),
		repo:      revisions.ChartRepository(h),
		values:    chartutil.CoalesceTables(own, user),
		stampKind: "Deployment",
		stampName: revisions.ControlPlaneName(rev.Name),
	}
	if mesh.Spec.ControlPlaneDeletionPolicy != v1alpha1.ControlPlaneOrphan {
		d.owner = &ownerRef{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Mesh", Name: mesh.Name, UID: string(mesh.UID)}
	}
	d.hash = d.computeHash()
	return d, nil
}

// baseRelease is the release of Istio's base chart: the CRDs of version, and
// Istio's default validating webhook pointing at the stable revision
// (defaultRevision, as istioctl tag set default does). It never carries the
// Mesh as owner: Istio's CRDs, and every Istio resource with them, outlive
// the Mesh.
func baseRelease(repo, version, stable string, mesh *v1alpha1.Mesh, namespace string) desiredRelease {
	d := desiredRelease{
		name:    BaseRelease,
		chart:   ChartBase,
		version: version,
		repo:    repo,
		values: map[string]any{
			"defaultRevision": stable,
			"global":          map[string]any{"istioNamespace": namespace},
		},
		stampKind: "CustomResourceDefinition",
	}
	d.hash = d.computeHash()
	return d
}

func (d *desiredRelease) computeHash() string {
	// encoding/json writes map keys sorted: the same values hash the same.
	b, _ := json.Marshal(struct {
		Chart, Version, Repo string
		Values               map[string]any
		Owner                *ownerRef
	}{d.chart, d.version, d.repo, d.values, d.owner})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// apply installs the release, or upgrades it to d. It fetches the chart
// first, so a chart that cannot be fetched leaves the cluster untouched.
func (h *helmReleases) apply(ctx context.Context, d desiredRelease) error {
	ch, err := h.charts.load(d.repo, d.chart, d.version)
	if err != nil {
		return err
	}
	cfg, err := h.config(ctx)
	if err != nil {
		return err
	}
	post := &postRenderer{d: d}
	last, err := cfg.Releases.Last(d.name)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		return h.install(ctx, cfg, ch, d, post, false)
	case err != nil:
		return fmt.Errorf("read release %s: %w", d.name, err)
	case last.Info.Status == release.StatusFailed && !h.everDeployed(cfg, d.name):
		// A first install that failed: install again in its place.
		return h.install(ctx, cfg, ch, d, post, true)
	}
	up := action.NewUpgrade(cfg)
	up.Namespace = h.namespace
	up.PostRenderer = post
	up.Labels = map[string]string{ReleaseLabelManaged: "true"}
	up.MaxHistory = 3
	// Istio's base chart templates its CRDs; its crds/ directory is empty.
	up.SkipCRDs = true
	if _, err := up.RunWithContext(ctx, d.name, ch, d.values); err != nil {
		return fmt.Errorf("upgrade release %s to %s %s: %w", d.name, d.chart, d.version, err)
	}
	log.FromContext(ctx).Info("helm release upgraded", "release", d.name, "chart", d.chart, "version", d.version)
	return nil
}

func (h *helmReleases) everDeployed(cfg *action.Configuration, name string) bool {
	hist, err := cfg.Releases.History(name)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(hist, func(r *release.Release) bool {
		return r.Info.Status == release.StatusDeployed || r.Info.Status == release.StatusSuperseded
	})
}

func (h *helmReleases) install(ctx context.Context, cfg *action.Configuration, ch *chart.Chart, d desiredRelease, post *postRenderer, replace bool) error {
	in := action.NewInstall(cfg)
	in.ReleaseName = d.name
	in.Namespace = h.namespace
	in.PostRenderer = post
	in.Replace = replace
	in.Labels = map[string]string{ReleaseLabelManaged: "true"}
	in.SkipCRDs = true
	if _, err := in.RunWithContext(ctx, ch, d.values); err != nil {
		return fmt.Errorf("install release %s from %s %s: %w", d.name, d.chart, d.version, err)
	}
	log.FromContext(ctx).Info("helm release installed", "release", d.name, "chart", d.chart, "version", d.version)
	return nil
}

// managedReleases lists the names of the releases meshrev installed in the
// mesh namespace (from Helm's storage).
func (h *helmReleases) managedReleases(ctx context.Context) ([]string, error) {
	cfg, err := h.config(ctx)
	if err != nil {
		return nil, err
	}
	l := action.NewList(cfg)
	l.All = true
	l.StateMask = action.ListAll
	l.Selector = ReleaseLabelManaged + "=true"
	rels, err := l.Run()
	if err != nil {
		return nil, fmt.Errorf("list helm releases in %s: %w", h.namespace, err)
	}
	var out []string
	for _, r := range rels {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// lastResult reads the outcome of the last install or upgrade of release
// name from Helm's storage: what a restarted manager reports until it acts
// on the release itself. False when the release has no record.
func (h *helmReleases) lastResult(ctx context.Context, name string) (releaseResult, bool, error) {
	cfg, err := h.config(ctx)
	if err != nil {
		return releaseResult{}, false, err
	}
	last, err := cfg.Releases.Last(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return releaseResult{}, false, nil
	}
	if err != nil {
		return releaseResult{}, false, fmt.Errorf("read release %s: %w", name, err)
	}
	return resultOf(last), true, nil
}

// resultOf is what meshrev reports of a release record of Helm's storage:
// its status and chart version, and Helm's description of a failure.
func resultOf(rel *release.Release) releaseResult {
	var res releaseResult
	if rel.Info != nil {
		res.status = rel.Info.Status.String()
		if rel.Info.Status == release.StatusFailed {
			res.err = rel.Info.Description
		}
	}
	if rel.Chart != nil && rel.Chart.Metadata != nil {
		res.chartVersion = rel.Chart.Metadata.Version
	}
	return res
}

// releaseSecretName is the Secret Helm's storage keeps version v of release name in.
func releaseSecretName(name string, v int) string {
	return fmt.Sprintf("sh.helm.release.v1.%s.v%d", name, v)
}

// ownRecords gives the Secrets that record release d in Helm's storage the
// owner d's objects have (the Mesh, deletion policy Uninstall), or none
// (Orphan): deleting the Mesh then removes the release's records with its
// objects, even when meshrev is gone. Helm rewrites a record's metadata when
// it supersedes it, so every record of the release is patched after each
// install or upgrade (rare: only when the release's hash changes).
func (h *helmReleases) ownRecords(ctx context.Context, c client.Client, d desiredRelease) error {
	cfg, err := h.config(ctx)
	if err != nil {
		return err
	}
	hist, err := cfg.Releases.History(d.name)
	if err != nil {
		return fmt.Errorf("read the records of release %s: %w", d.name, err)
	}
	owners := []byte(`null`)
	if d.owner != nil {
		owners, err = json.Marshal([]metav1.OwnerReference{{APIVersion: d.owner.APIVersion, Kind: d.owner.Kind, Name: d.owner.Name, UID: types.UID(d.owner.UID)}})
		if err != nil {
			return err
		}
	}
	patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"ownerReferences":`+string(owners)+`}}`))
	for _, rel := range hist {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.namespace, Name: releaseSecretName(d.name, rel.Version)}}
		if err := c.Patch(ctx, s, patch); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("set the owner of release record %s/%s: %w", h.namespace, s.Name, err)
		}
	}
	return nil
}

// uninstall removes release name and its objects.
func (h *helmReleases) uninstall(ctx context.Context, name string) error {
	cfg, err := h.config(ctx)
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	if _, err := un.Run(name); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("uninstall release %s: %w", name, err)
	}
	log.FromContext(ctx).Info("helm release uninstalled", "release", name)
	return nil
}

// config is a Helm action configuration over the manager's rest config,
// storing releases as Secrets in the mesh namespace (Helm's default).
func (h *helmReleases) config(ctx context.Context) (*action.Configuration, error) {
	logger := log.FromContext(ctx).V(2)
	cfg := &action.Configuration{}
	if err := cfg.Init(h.getter, h.namespace, "secret", func(format string, v ...any) {
		logger.Info(fmt.Sprintf(format, v...))
	}); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	return cfg, nil
}

// postRenderer is the last word on what a release applies: it drops any
// MutatingWebhookConfiguration (only meshrev injects, whatever the values
// say), makes the Mesh the owner of every object when the deletion policy
// is Uninstall, and stamps the release's hash where the controller reads it
// from its cache.
type postRenderer struct {
	d desiredRelease
}

// Run implements postrender.PostRenderer.
func (p *postRenderer) Run(in *bytes.Buffer) (*bytes.Buffer, error) {
	docs := releaseutil.SplitManifests(in.String())
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	// SplitManifests keys are "manifest-<n>": keep the chart's order.
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	var out bytes.Buffer
	for _, k := range keys {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(docs[k]), &obj); err != nil {
			return nil, fmt.Errorf("post-render %s: %w", p.d.name, err)
		}
		if len(obj) == 0 {
			continue
		}
		kind, _ := obj["kind"].(string)
		if kind == "MutatingWebhookConfiguration" {
			continue
		}
		md, _ := obj["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
			obj["metadata"] = md
		}
		if p.d.owner != nil {
			md["ownerReferences"] = []any{map[string]any{
				"apiVersion": p.d.owner.APIVersion, "kind": p.d.owner.Kind, "name": p.d.owner.Name, "uid": p.d.owner.UID,
			}}
		}
		if name, _ := md["name"].(string); kind == p.d.stampKind && (p.d.stampName == "" || name == p.d.stampName) {
			setString(md, "annotations", AnnotationReleaseHash, p.d.hash)
			setString(md, "labels", LabelRelease, p.d.name)
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("post-render %s: %w", p.d.name, err)
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return &out, nil
}

func setString(md map[string]any, field, key, value string) {
	m, _ := md[field].(map[string]any)
	if m == nil {
		m = map[string]any{}
		md[field] = m
	}
	m[key] = value
}

// restGetter gives Helm the manager's rest config.
type restGetter struct {
	cfg       *rest.Config
	namespace string

	once   sync.Once
	disc   discovery.CachedDiscoveryInterface
	mapper meta.RESTMapper
	err    error
}

func (g *restGetter) init() {
	g.once.Do(func() {
		dc, err := discovery.NewDiscoveryClientForConfig(g.cfg)
		if err != nil {
			g.err = err
			return
		}
		g.disc = memory.NewMemCacheClient(dc)
		g.mapper = restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(g.disc), g.disc, nil)
	})
}

// ToRESTConfig implements genericclioptions.RESTClientGetter.
func (g *restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.cfg), nil }

// ToDiscoveryClient implements genericclioptions.RESTClientGetter.
func (g *restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	g.init()
	return g.disc, g.err
}

// ToRESTMapper implements genericclioptions.RESTClientGetter.
func (g *restGetter) ToRESTMapper() (meta.RESTMapper, error) {
	g.init()
	return g.mapper, g.err
}

// ToRawKubeConfigLoader implements genericclioptions.RESTClientGetter: only
// the namespace is read from it.
func (g *restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return clientcmd.NewDefaultClientConfig(clientcmdapi.Config{}, &clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: g.namespace}})
}

// releaseRevision is the revision of release istiod-<rev>.
func releaseRevision(name string) (string, bool) {
	return strings.CutPrefix(name, "istiod-")
}
