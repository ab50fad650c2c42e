package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// run executes the CLI as a person would, with captured streams and a
// kubeconfig that does not exist (so any command that reaches the API fails
// with a kubeconfig error, not a validation one).
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	kubeconfig := filepath.Join(t.TempDir(), "missing-kubeconfig")
	opts := Options{
		Streams:    IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut},
		Name:       "meshrev",
		IsTerminal: func(any) bool { return false },
	}
	code = Run(context.Background(), opts, append([]string{"--kubeconfig", kubeconfig}, args...))
	return code, out.String(), errOut.String()
}

func TestArgumentsAreValidatedBeforeTheAPIIsCalled(t *testing.T) {
	cases := map[string]struct {
		args []string
		// wantErr is part of the message on stderr.
		wantErr string
	}{
		"an unknown output format is refused":                {args: []string{"-o", "xml", "status"}, wantErr: `unknown output format "xml": use -o table, json or yaml`},
		"canary deploy needs a version":                      {args: []string{"canary", "deploy"}, wantErr: "meshrev canary deploy takes VERSION (got 0 arguments)"},
		"canary deploy takes one version":                    {args: []string{"canary", "deploy", "1.23.6", "1.24.0"}, wantErr: "takes VERSION (got 2 arguments)"},
		"canary deploy refuses a version without patch":      {args: []string{"canary", "deploy", "1.23"}, wantErr: `canary deploy: version "1.23" must be MAJOR.MINOR.PATCH`},
		"canary deploy refuses a version with letters":       {args: []string{"canary", "deploy", "1.23.x"}, wantErr: "must be MAJOR.MINOR.PATCH of plain numbers"},
		"canary deploy refuses an image with spaces":         {args: []string{"canary", "deploy", "1.23.6", "--proxy-image", "a b"}, wantErr: `--proxy-image "a b" is not an image reference`},
		"namespace switch needs --to":                        {args: []string{"namespace", "switch", "default"}, wantErr: "namespace switch: say which revision: --to stable, --to canary or --to <revision>"},
		"namespace switch needs a namespace":                 {args: []string{"namespace", "switch", "--to", "canary"}, wantErr: "takes NS (got 0 arguments)"},
		"namespace switch refuses a bad namespace name":      {args: []string{"namespace", "switch", "Default_NS", "--to", "canary"}, wantErr: `"Default_NS" is not a namespace name`},
		"namespace switch refuses a revision no label holds": {args: []string{"namespace", "switch", "default", "--to", "1.23.6/x"}, wantErr: `"1.23.6/x" cannot be a label value`},
		"namespace enable refuses a bad revision":            {args: []string{"namespace", "enable", "default", "--revision", "-canary"}, wantErr: `"-canary" cannot be a label value`},
		"namespace disable takes one namespace":              {args: []string{"namespace", "disable", "a", "b"}, wantErr: "takes NS (got 2 arguments)"},
		"redeploy needs workloads":                           {args: []string{"redeploy", "-n", "default"}, wantErr: "redeploy: name the workloads to restart"},
		"redeploy refuses an unknown kind":                   {args: []string{"redeploy", "-n", "default", "job/x"}, wantErr: `redeploy: workload "job/x": kind "job" is not deployment, statefulset or daemonset`},
		"redeploy refuses a bad name":                        {args: []string{"redeploy", "-n", "default", "deploy/Bad_Name"}, wantErr: `"Bad_Name" is not a valid name`},
		"redeploy refuses a non-positive timeout":            {args: []string{"redeploy", "-n", "default", "web", "--timeout", "0s"}, wantErr: "--timeout must be positive"},
		"dataplane upgrade needs a choice":                   {args: []string{"dataplane", "upgrade"}, wantErr: "say what to upgrade: WORKLOAD names, --all, or --gateways"},
		"dataplane upgrade refuses names with --all":         {args: []string{"dataplane", "upgrade", "web", "--all"}, wantErr: "name workloads or pass --all, not both"},
		"dataplane upgrade refuses a negative batch":         {args: []string{"dataplane", "upgrade", "--all", "--batch", "-1"}, wantErr: "--batch must be 0 (all at once) or more, got -1"},
		"dataplane upgrade refuses an unknown kind":          {args: []string{"dataplane", "upgrade", "cronjob/x"}, wantErr: `kind "cronjob" is not deployment`},
		"dataplane status takes no arguments":                {args: []string{"dataplane", "status", "web"}, wantErr: `takes no arguments (got ["web"])`},
		"check-inject refuses malformed labels":              {args: []string{"check-inject", "-n", "default", "-l", "app"}, wantErr: `-l "app" must be key=value pairs`},
		"promote takes no arguments":                         {args: []string{"promote", "1-23-6"}, wantErr: "meshrev promote takes no arguments"},
		"an unknown command is refused":                      {args: []string{"upgrade"}, wantErr: `unknown command "upgrade"`},
		"a valid command reaches the kubeconfig":             {args: []string{"status"}, wantErr: "load kubeconfig:"},
		"a valid redeploy reaches the kubeconfig":            {args: []string{"redeploy", "-n", "default", "statefulset/db", "web"}, wantErr: "load kubeconfig:"},
		"a valid switch reaches the kubeconfig":              {args: []string{"namespace", "switch", "default", "--to", "1-23-6"}, wantErr: "load kubeconfig:"},
		"a valid upgrade reaches the kubeconfig":             {args: []string{"dataplane", "upgrade", "--gateways", "--batch", "2"}, wantErr: "load kubeconfig:"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := run(t, "", tc.args...)
			assert.Equal(t, 1, code)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.wantErr)
			assert.True(t, strings.HasPrefix(stderr, "Error: "), "errors start with Error: %q", stderr)
		})
	}
}

func TestDestructiveStepsNeedConfirmation(t *testing.T) {
	cases := map[string]struct {
		terminal bool
		yes      bool
		answer   string
		// wantErr is "" when the step may go ahead.
		wantErr string
	}{
		"--yes confirms without asking":          {yes: true},
		"no terminal and no --yes refuses":       {wantErr: "promote needs confirmation and stdin is not a terminal: pass --yes to confirm"},
		"a terminal answer y confirms":           {terminal: true, answer: "y\n"},
		"a terminal answer YES confirms":         {terminal: true, answer: " YES \n"},
		"a terminal answer n declines":           {terminal: true, answer: "n\n", wantErr: "promote: not confirmed, nothing changed"},
		"an empty terminal answer declines":      {terminal: true, answer: "\n", wantErr: "not confirmed"},
		"a terminal closed without answer fails": {terminal: true, answer: "", wantErr: "not confirmed"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var prompt bytes.Buffer
			c := confirmer{in: strings.NewReader(tc.answer), errOut: &prompt, isTerminal: func(any) bool { return tc.terminal }}
			err := c.confirm(tc.yes, "promote", "Promote canary 1-23-6?")
			if tc.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.wantErr)
			}
			if tc.terminal && !tc.yes {
				assert.Equal(t, "Promote canary 1-23-6? [y/N]: ", prompt.String())
			} else {
				assert.Empty(t, prompt.String(), "nothing is asked")
			}
		})
	}
}

func TestDestructiveCommandsReadTheMeshBeforeAsking(t *testing.T) {
	for _, verb := range []string{"promote", "unpublish", "revoke"} {
		t.Run(verb+" reads the Mesh first", func(t *testing.T) {
			// The kubeconfig is missing, so the failure shows how far it got:
			// the Mesh must be read before asking (the question names revisions).
			code, _, stderr := run(t, "", verb)
			assert.Equal(t, 1, code)
			assert.Contains(t, stderr, "load kubeconfig:")
		})
	}
}

func TestWorkloadArguments(t *testing.T) {
	cases := map[string]struct {
		arg     string
		want    workloadRef
		wantErr string
	}{
		"a bare name is a Deployment":         {arg: "reviews-v2", want: workloadRef{Kind: kindDeployment, Namespace: "default", Name: "reviews-v2"}},
		"deployment/name is a Deployment":     {arg: "deployment/reviews-v2", want: workloadRef{Kind: kindDeployment, Namespace: "default", Name: "reviews-v2"}},
		"deploy/name is a Deployment":         {arg: "deploy/web", want: workloadRef{Kind: kindDeployment, Namespace: "default", Name: "web"}},
		"statefulset/name is a StatefulSet":   {arg: "statefulset/db", want: workloadRef{Kind: kindStatefulSet, Namespace: "default", Name: "db"}},
		"sts/name is a StatefulSet":           {arg: "STS/db", want: workloadRef{Kind: kindStatefulSet, Namespace: "default", Name: "db"}},
		"daemonset/name is a DaemonSet":       {arg: "daemonsets/agent", want: workloadRef{Kind: kindDaemonSet, Namespace: "default", Name: "agent"}},
		"ds/name is a DaemonSet":              {arg: "ds/agent", want: workloadRef{Kind: kindDaemonSet, Namespace: "default", Name: "agent"}},
		"another kind is refused":             {arg: "replicaset/x", wantErr: `kind "replicaset" is not deployment, statefulset or daemonset`},
		"an empty name is refused":            {arg: "deployment/", wantErr: `"" is not a valid name`},
		"an upper-case name is refused":       {arg: "Reviews", wantErr: `"Reviews" is not a valid name`},
		"a name with a second slash is wrong": {arg: "deployment/a/b", wantErr: `"a/b" is not a valid name`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parseWorkload("default", tc.arg)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestRestartPatchIsWhatKubectlRolloutRestartSends(t *testing.T) {
	at := time.Date(2026, 11, 25, 20, 15, 0, 0, time.UTC).Format(time.RFC3339)
	patch, err := restartPatch(at)
	require.NoError(t, err)
	assert.JSONEq(t, `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-25T20:15:00Z"}}}}}`, string(patch))
}

func TestCanaryRevisionFollowsStable(t *testing.T) {
	withCP := revision("1-22-6", "1.22.6", true)
	withCP.ControlPlane.Replicas = ptr.To[int32](2)
	withCP.ControlPlane.ServiceType = corev1.ServiceTypeNodePort
	mirror := revision("1-22-6", "1.22.6", true)
	mirror.ProxyImage = "registry.example.com:5000/mesh/proxyv2:1.22.6"
	mirror.ControlPlane.Image = "registry.example.com:5000/mesh/pilot@sha256:0123"
	bare := v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6"}
	helmStable := v1alpha1.Revision{Name: "1-22-6", Version: "1.22.6", ControlPlane: &v1alpha1.ControlPlane{Helm: &v1alpha1.HelmControlPlane{
		Repository: "http://127.0.0.1:18090", ChartVersion: "1.22.5", Values: &apiextensionsv1.JSON{Raw: []byte(`{"pilot":{"replicaCount":2}}`)}}}}

	cases := map[string]struct {
		stable *v1alpha1.Revision
		opts   canaryDeployOptions
		want   v1alpha1.Revision
	}{
		"the images default to istio's and the control plane mirrors stable's": {
			stable: &withCP,
			want: v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ProxyImage: "docker.io/istio/proxyv2:1.23.6",
				ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.23.6", Replicas: ptr.To[int32](2), ServiceType: corev1.ServiceTypeNodePort}},
		},
		"--load-balancer exposes the canary's control plane": {
			stable: &withCP,
			opts:   canaryDeployOptions{loadBalancer: true},
			want: v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ProxyImage: "docker.io/istio/proxyv2:1.23.6",
				ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.23.6", Replicas: ptr.To[int32](2), ServiceType: corev1.ServiceTypeLoadBalancer}},
		},
		"the images follow stable's repositories (a private mirror)": {
			stable: &mirror,
			want: v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ProxyImage: "registry.example.com:5000/mesh/proxyv2:1.23.6",
				ControlPlane: &v1alpha1.ControlPlane{Image: "registry.example.com:5000/mesh/pilot:1.23.6", Replicas: ptr.To[int32](1)}},
		},
		"the image flags win": {
			stable: &withCP,
			opts:   canaryDeployOptions{proxyImage: "my/proxy:canary", controlPlaneImage: "my/pilot:canary"},
			want: v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ProxyImage: "my/proxy:canary",
				ControlPlane: &v1alpha1.ControlPlane{Image: "my/pilot:canary", Replicas: ptr.To[int32](2), ServiceType: corev1.ServiceTypeNodePort}},
		},
		"no control plane and the manager's proxy repository when stable names neither": {
			stable: &bare,
			want:   v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6"},
		},
		"a helm stable: the canary's control plane is Istio's chart at its version, from stable's repository with stable's values": {
			stable: &helmStable,
			want: v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ControlPlane: &v1alpha1.ControlPlane{Helm: &v1alpha1.HelmControlPlane{
				Repository: "http://127.0.0.1:18090", Values: &apiextensionsv1.JSON{Raw: []byte(`{"pilot":{"replicaCount":2}}`)}}}},
		},
		"a helm stable and --control-plane-image: an image control plane, as asked": {
			stable: &helmStable,
			opts:   canaryDeployOptions{controlPlaneImage: "my/pilot:canary"},
			want:   v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6", ControlPlane: &v1alpha1.ControlPlane{Image: "my/pilot:canary"}},
		},
		"a control plane when asked for one although stable has none": {
			stable: &bare,
			opts:   canaryDeployOptions{loadBalancer: true},
			want: v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6",
				ControlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.23.6", ServiceType: corev1.ServiceTypeLoadBalancer}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := tc.opts
			require.NoError(t, o.complete([]string{"v1.23.6"}))
			require.NoError(t, o.validate())
			got := o.canaryRevision(tc.stable)
			assert.Equal(t, tc.want, got)
			if tc.stable.ControlPlane != nil && got.ControlPlane != nil && tc.stable.ControlPlane.Replicas != nil {
				assert.NotSame(t, tc.stable.ControlPlane.Replicas, got.ControlPlane.Replicas, "the canary must not share stable's fields")
			}
		})
	}
}

func TestNamespaceLabelsAfterEachCommand(t *testing.T) {
	cases := map[string]struct {
		mode     namespaceMode
		revision string
		before   map[string]string
		after    map[string]string
		changed  bool
	}{
		"switch drops istio-injection and sets istio.io/rev": {
			mode: modeRevision, revision: "canary",
			before: map[string]string{"istio-injection": "enabled", "team": "a"},
			after:  map[string]string{"istio.io/rev": "canary", "team": "a"}, changed: true,
		},
		"switch back moves istio.io/rev to stable": {
			mode: modeRevision, revision: "stable",
			before: map[string]string{"istio.io/rev": "canary"},
			after:  map[string]string{"istio.io/rev": "stable"}, changed: true,
		},
		"switch to the label already set changes nothing": {
			mode: modeRevision, revision: "1-23-6",
			before: map[string]string{"istio.io/rev": "1-23-6"},
			after:  map[string]string{"istio.io/rev": "1-23-6"},
		},
		"enable without a revision sets istio-injection=enabled and drops istio.io/rev": {
			mode:   modeEnabled,
			before: map[string]string{"istio.io/rev": "canary"},
			after:  map[string]string{"istio-injection": "enabled"}, changed: true,
		},
		"disable sets istio-injection=disabled and drops istio.io/rev": {
			mode:   modeDisabled,
			before: map[string]string{"istio-injection": "enabled", "istio.io/rev": "stable"},
			after:  map[string]string{"istio-injection": "disabled"}, changed: true,
		},
		"disable on a disabled namespace changes nothing": {
			mode:   modeDisabled,
			before: map[string]string{"istio-injection": "disabled"},
			after:  map[string]string{"istio-injection": "disabled"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := &namespaceOptions{mode: tc.mode, revision: tc.revision}
			labels := map[string]string{}
			for k, v := range tc.before {
				labels[k] = v
			}
			assert.Equal(t, tc.changed, o.apply(labels))
			assert.Equal(t, tc.after, labels)
		})
	}
}

func TestRolloutStatus(t *testing.T) {
	deploy := func(gen, observed int64, replicas, updated, total, ready, available int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, Replicas: total,
				ReadyReplicas: ready, AvailableReplicas: available, Conditions: conds},
		}
	}
	sts := func(strategy appsv1.StatefulSetUpdateStrategy, ready, updated int32, current, update string) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Generation: 2},
			Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3), UpdateStrategy: strategy},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, ReadyReplicas: ready, UpdatedReplicas: updated,
				CurrentRevision: current, UpdateRevision: update},
		}
	}
	ds := func(strategy appsv1.DaemonSetUpdateStrategyType, desired, updated, available int32) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "agent", Generation: 2},
			Spec:       appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: strategy}},
			Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: desired, UpdatedNumberScheduled: updated,
				NumberAvailable: available, NumberReady: available},
		}
	}
	rolling := appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType}
	cases := map[string]struct {
		obj        client.Object
		generation int64
		wantDone   bool
		wantLine   string
		wantErr    string
	}{
		"a deployment whose controller has not seen the patch waits": {
			obj: deploy(3, 2, 3, 3, 3, 3, 3), generation: 3, wantLine: "the deployment controller has not seen the change yet",
		},
		"a deployment creating new replicas waits": {
			obj: deploy(3, 3, 3, 1, 4, 3, 3), generation: 3, wantLine: "1/3 updated, 3/3 ready (new replicas are being created)",
		},
		"a deployment with old replicas terminating waits": {
			obj: deploy(3, 3, 3, 3, 4, 3, 3), generation: 3, wantLine: "3/3 updated, 3/3 ready (1 old replicas are pending termination)",
		},
		"a deployment with unavailable new replicas waits": {
			obj: deploy(3, 3, 3, 3, 3, 2, 2), generation: 3, wantLine: "3/3 updated, 2/3 ready (updated replicas are not available yet)",
		},
		"a rolled out deployment is done": {
			obj: deploy(3, 3, 3, 3, 3, 3, 3), generation: 3, wantDone: true, wantLine: "3/3 updated, 3/3 ready",
		},
		"a deployment past its progress deadline fails": {
			obj:        deploy(3, 3, 3, 1, 4, 3, 3, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "web-2" has timed out progressing.`}),
			generation: 3, wantErr: `deployment web exceeded its progress deadline: ReplicaSet "web-2" has timed out progressing.`,
		},
		"a statefulset updating its replicas waits": {
			obj: sts(rolling, 3, 1, "db-1", "db-2"), generation: 2, wantLine: "1/3 updated, 3/3 ready (replicas are being updated)",
		},
		"a statefulset on one revision is done": {
			obj: sts(rolling, 3, 3, "db-2", "db-2"), generation: 2, wantDone: true, wantLine: "3/3 updated, 3/3 ready",
		},
		"a partitioned statefulset is done when the partition is updated": {
			obj:        sts(appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType, RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](2)}}, 3, 1, "db-1", "db-2"),
			generation: 2, wantDone: true, wantLine: "1/3 updated, 3/3 ready",
		},
		"an OnDelete statefulset cannot be followed": {
			obj: sts(appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}, 3, 0, "db-1", "db-2"), generation: 2,
			wantErr: "statefulset db uses the OnDelete update strategy",
		},
		"a daemonset updating its pods waits": {
			obj: ds(appsv1.RollingUpdateDaemonSetStrategyType, 3, 2, 3), generation: 2, wantLine: "2/3 updated, 3/3 ready (pods are being updated)",
		},
		"a rolled out daemonset is done": {
			obj: ds(appsv1.RollingUpdateDaemonSetStrategyType, 3, 3, 3), generation: 2, wantDone: true, wantLine: "3/3 updated, 3/3 ready",
		},
		"an OnDelete daemonset cannot be followed": {
			obj: ds(appsv1.OnDeleteDaemonSetStrategyType, 3, 0, 3), generation: 2, wantErr: "daemonset agent uses the OnDelete update strategy",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := rolloutStatus(tc.obj, tc.generation)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, errRolloutFailed)
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantDone, p.Done)
			assert.Equal(t, tc.wantLine, p.String())
		})
	}
}

func TestUpgradeChoosesFromTheReport(t *testing.T) {
	report := fixtures()["dataplane-upgrading"].mesh.Status.DataPlane.OutdatedWorkloads
	cases := map[string]struct {
		opts              dataplaneUpgradeOptions
		args              []string
		wantRestart       []string
		wantSkipped       int
		wantUnrestartable int
		wantErr           string
	}{
		"--all takes every workload but gateways": {
			opts:        dataplaneUpgradeOptions{all: true},
			wantRestart: []string{"default/deployment/productpage-v1", "default/deployment/reviews-v1", "shop/statefulset/cart"}, wantUnrestartable: 1,
		},
		"--all --gateways takes everything": {
			opts:        dataplaneUpgradeOptions{all: true, gateways: true},
			wantRestart: []string{"default/deployment/productpage-v1", "default/deployment/reviews-v1", "istio-gateways/deployment/istio-ingressgateway", "shop/statefulset/cart"}, wantUnrestartable: 1,
		},
		"--gateways alone takes the gateways": {
			opts:        dataplaneUpgradeOptions{gateways: true},
			wantRestart: []string{"istio-gateways/deployment/istio-ingressgateway"},
		},
		"-n narrows --all to a namespace": {
			opts:        dataplaneUpgradeOptions{all: true, namespace: "default"},
			wantRestart: []string{"default/deployment/productpage-v1", "default/deployment/reviews-v1"},
		},
		"a name picks its workload in any namespace": {
			args:        []string{"cart"},
			wantRestart: []string{"shop/statefulset/cart"},
		},
		"kind/name must match the kind": {
			args:    []string{"deployment/cart"},
			wantErr: "deployment/cart is not in the data-plane report",
		},
		"a named gateway needs --gateways": {
			args:        []string{"istio-ingressgateway", "reviews-v1"},
			wantRestart: []string{"default/deployment/reviews-v1"}, wantSkipped: 1,
		},
		"a name with no outdated pods is an error": {
			args:    []string{"ratings-v1"},
			wantErr: "ratings-v1 is not in the data-plane report: no outdated pods",
		},
		"a name in another namespace than -n is not found": {
			opts:    dataplaneUpgradeOptions{namespace: "default"},
			args:    []string{"cart"},
			wantErr: "cart is not in the data-plane report",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := tc.opts
			o.args = tc.args
			o.timeout = time.Minute
			require.NoError(t, o.validate())
			sel, err := o.choose(report)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			var got []string
			for _, w := range sel.restart {
				got = append(got, w.Namespace+"/"+w.String())
			}
			assert.Equal(t, tc.wantRestart, got)
			assert.Len(t, sel.skipped, tc.wantSkipped)
			assert.Len(t, sel.unrestartable, tc.wantUnrestartable)
		})
	}
}

func TestVerifyComparesPodsWithTheDecisionTable(t *testing.T) {
	mesh := fixtures()["canary-deployed"].mesh
	ready := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	pod := func(labels map[string]string, conds []corev1.PodCondition) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "reviews-v2-abc", Namespace: "default", Labels: labels}, Status: corev1.PodStatus{Conditions: conds}}
	}
	cases := map[string]struct {
		nsLabels    map[string]string
		pod         *corev1.Pod
		wantRuns    string
		wantWant    string
		wantProblem string
	}{
		"a ready pod on the canary in a canary namespace is fine": {
			nsLabels: map[string]string{"istio.io/rev": "canary"},
			pod:      pod(map[string]string{"meshrev.io/revision": "1-23-6"}, ready),
			wantRuns: "1-23-6", wantWant: "1-23-6",
		},
		"a pod still on stable in a canary namespace must be redeployed": {
			nsLabels: map[string]string{"istio.io/rev": "canary"},
			pod:      pod(map[string]string{"meshrev.io/revision": "1-22-6"}, ready),
			wantRuns: "1-22-6", wantWant: "1-23-6", wantProblem: "runs 1-22-6 but should run 1-23-6; redeploy it",
		},
		"a pod without sidecar in an enabled namespace must be redeployed": {
			nsLabels: map[string]string{"istio-injection": "enabled"},
			pod:      pod(map[string]string{"app": "x"}, ready),
			wantWant: "1-22-6", wantProblem: "has no sidecar but should run 1-22-6; redeploy it",
		},
		"a pod that pins itself to the canary is judged by its own label": {
			nsLabels: map[string]string{"istio-injection": "enabled"},
			pod:      pod(map[string]string{"istio.io/rev": "1-23-6", "meshrev.io/revision": "1-23-6"}, ready),
			wantRuns: "1-23-6", wantWant: "1-23-6",
		},
		"a pod with a sidecar in a disabled namespace is reported": {
			nsLabels: map[string]string{"istio-injection": "disabled"},
			pod:      pod(map[string]string{"meshrev.io/revision": "1-22-6"}, ready),
			wantRuns: "1-22-6", wantProblem: "runs 1-22-6 but should have no sidecar (namespace default label istio-injection=disabled disables injection)",
		},
		"a pod that is not Ready fails": {
			nsLabels: map[string]string{"istio.io/rev": "canary"},
			pod:      pod(map[string]string{"meshrev.io/revision": "1-23-6"}, []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}),
			wantRuns: "1-23-6", wantWant: "1-23-6", wantProblem: "not Ready",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := checkPod(&mesh.Spec, defaultOwnNamespace, tc.nsLabels, tc.pod, "deployment/reviews-v2")
			assert.Equal(t, tc.wantRuns, got.Runs)
			assert.Equal(t, tc.wantWant, got.Want)
			assert.Equal(t, tc.wantProblem, got.Problem)
		})
	}
}

func TestImageRepository(t *testing.T) {
	cases := map[string]struct{ image, want string }{
		"a tag is stripped":                         {"docker.io/istio/proxyv2:1.22.6", "docker.io/istio/proxyv2"},
		"a registry port is kept":                   {"registry:5000/istio/proxyv2:1.22.6", "registry:5000/istio/proxyv2"},
		"a digest is stripped":                      {"registry:5000/istio/pilot@sha256:abcd", "registry:5000/istio/pilot"},
		"a repository without tag stays as it is":   {"istio/proxyv2", "istio/proxyv2"},
		"a registry port without tag stays as well": {"registry:5000/proxyv2", "registry:5000/proxyv2"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, imageRepository(tc.image))
		})
	}
}

func TestHelpNamesTheKubectlPlugin(t *testing.T) {
	cases := map[string]struct{ argv0, want string }{
		"the meshrev binary":             {"/usr/local/bin/meshrev", "meshrev"},
		"the kubectl plugin":             {"/usr/local/bin/kubectl-meshrev", "kubectl meshrev"},
		"the kubectl plugin on windows":  {`kubectl-meshrev.exe`, "kubectl meshrev"},
		"a renamed binary is meshrev":    {"./bin/mr", "meshrev"},
		"an underscore is a dash for kc": {"kubectl-mesh_rev", "kubectl mesh-rev"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, displayName(tc.argv0))
			var out bytes.Buffer
			code := Run(context.Background(), Options{Name: tc.argv0, Streams: IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out}}, []string{"promote", "--help"})
			require.Equal(t, 0, code)
			assert.Contains(t, out.String(), "Usage:\n  "+tc.want+" promote")
		})
	}
}

func TestVersionPrints(t *testing.T) {
	code, stdout, stderr := run(t, "", "version", "-o", "json")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, `"version":`)
	assert.Contains(t, stdout, `"go": "go1.`)
}
