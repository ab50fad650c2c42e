package charts

import (
	"slices"
	"strings"
	"testing"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// TestLint runs Helm's linter (as helm lint --strict) for every golden case.
func TestLint(t *testing.T) {
	cases := map[string]string{
		"the default values lint clean":    "",
		"cert-manager mode lints clean":    "cert-manager",
		"a customised install lints clean": "custom",
		"an external manager lints clean":  "external-manager",
	}
	kv, err := chartutil.ParseKubeVersion("v1.36.3")
	require.NoError(t, err)
	for name, valuesFile := range cases {
		t.Run(name, func(t *testing.T) {
			values := map[string]any{}
			if valuesFile != "" {
				values = readValues(t, valuesFile)
			}
			linter := lint.AllWithKubeVersion(chartDir, values, releaseNamespace, kv)
			for _, m := range linter.Messages {
				// INFO is only the missing icon; warnings and errors fail, as --strict does.
				assert.Less(t, m.Severity, support.WarningSev, "%s", m)
			}
		})
	}
}

// TestValuesSchemaRefusesMistakes checks that values.schema.json catches the
// mistakes a person makes, with Helm's own validation at install.
func TestValuesSchemaRefusesMistakes(t *testing.T) {
	cases := map[string]struct {
		values map[string]any
		want   string
	}{
		"a misspelt top-level key is refused": {
			values: map[string]any{"certmanager": map[string]any{"enabled": true}},
			want:   "certmanager",
		},
		"a misspelt nested key is refused": {
			values: map[string]any{"manager": map[string]any{"replica": 3}},
			want:   "replica",
		},
		"an unknown failure policy is refused": {
			values: map[string]any{"webhook": map[string]any{"failurePolicy": "Retry"}},
			want:   "failurePolicy",
		},
		"a webhook timeout above the API's 30 seconds is refused": {
			values: map[string]any{"webhook": map[string]any{"timeoutSeconds": 31}},
			want:   "timeoutSeconds",
		},
		"a webhook url with a path is refused (the paths are appended)": {
			values: map[string]any{"webhook": map[string]any{"url": "https://127.0.0.1:9443/inject"}},
			want:   "url",
		},
		"a plain-http webhook url is refused": {
			values: map[string]any{"webhook": map[string]any{"url": "http://127.0.0.1:9443"}},
			want:   "url",
		},
		"a stable version that is not MAJOR.MINOR.PATCH is refused": {
			values: map[string]any{"mesh": map[string]any{"stable": map[string]any{"version": "1.22"}}},
			want:   "version",
		},
		"a stable version with leading zeros is refused (its revision name would not be canonical)": {
			values: map[string]any{"mesh": map[string]any{"stable": map[string]any{"version": "1.022.6"}}},
			want:   "version",
		},
		"an unknown revision policy is refused": {
			values: map[string]any{"mesh": map[string]any{"unknownRevisionPolicy": "Warn"}},
			want:   "unknownRevisionPolicy",
		},
		"an unknown control-plane service type is refused": {
			values: map[string]any{"mesh": map[string]any{"controlPlane": map[string]any{"serviceType": "ExternalName"}}},
			want:   "serviceType",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := renderChart(t, tc.values)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestImpossibleCombinationsFail checks the render-time checks of validate.yaml.
func TestImpossibleCombinationsFail(t *testing.T) {
	cases := map[string]struct {
		values map[string]any
		want   string
	}{
		"no in-cluster manager and no url leaves the webhooks pointing nowhere": {
			values: map[string]any{"manager": map[string]any{"enabled": false}},
			want:   "manager.enabled=false needs webhook.url",
		},
		"several replicas without leader election would run several controllers": {
			values: map[string]any{"manager": map[string]any{"leaderElection": false}},
			want:   "enable leader election or set manager.replicas=1",
		},
		"a disruption budget as large as the replica count would block node drains": {
			values: map[string]any{"manager": map[string]any{"replicas": 2, "podDisruptionBudget": map[string]any{"minAvailable": 2}}},
			want:   "would block every node drain",
		},
		"the mesh namespace cannot be meshrev's own namespace": {
			values: map[string]any{"mesh": map[string]any{"namespace": releaseNamespace}},
			want:   "mesh.namespace must differ",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := renderChart(t, tc.values)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := renderChart(t, map[string]any{"manager": map[string]any{"leaderElection": false, "replicas": 1, "podDisruptionBudget": map[string]any{"enabled": false}}})
	require.NoError(t, err, "one replica without leader election or disruption budget is allowed")
	_, err = renderChart(t, map[string]any{"manager": map[string]any{"replicas": 4, "podDisruptionBudget": map[string]any{"minAvailable": "50%"}}})
	require.NoError(t, err, "a percentage is left to the disruption controller")
}

// TestObjects checks which objects each mode renders, by kind and name.
func TestObjects(t *testing.T) {
	common := []string{
		"ClusterRole/meshrev-manager", "ClusterRoleBinding/meshrev-manager",
		"ConfigMap/meshrev-templates", "Mesh/default",
		"MutatingWebhookConfiguration/meshrev", "Namespace/istio-system",
		"Role/meshrev-manager", "Role/meshrev-manager", "RoleBinding/meshrev-manager", "RoleBinding/meshrev-manager",
		"ServiceAccount/meshrev-manager", "ValidatingWebhookConfiguration/meshrev",
	}
	inCluster := []string{"Deployment/meshrev-manager", "PodDisruptionBudget/meshrev-manager", "Service/meshrev-webhook"}
	certManager := []string{"Certificate/meshrev-ca", "Certificate/meshrev-webhook", "Issuer/meshrev-ca", "Issuer/meshrev-selfsigned"}
	cases := map[string]struct {
		values map[string]any
		want   []string
	}{
		"the default install runs the manager with self-managed certificates": {
			want: slices.Concat(common, inCluster),
		},
		"cert-manager mode adds the CA chain and the serving certificate": {
			values: map[string]any{"certManager": map[string]any{"enabled": true}},
			want:   slices.Concat(common, inCluster, certManager),
		},
		"an external manager needs no Deployment, Service or PodDisruptionBudget": {
			values: map[string]any{"manager": map[string]any{"enabled": false}, "webhook": map[string]any{"url": "https://127.0.0.1:9443"}},
			want:   common,
		},
		"an empty stable version creates no Mesh": {
			values: map[string]any{"mesh": map[string]any{"stable": map[string]any{"version": ""}}},
			want:   slices.DeleteFunc(slices.Concat(common, inCluster), func(s string) bool { return s == "Mesh/default" }),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			want := slices.Clone(tc.want)
			slices.Sort(want)
			assert.Equal(t, want, mustRender(t, tc.values).kinds())
		})
	}
}

// TestManagerDeployment checks the production shape of the manager.
func TestManagerDeployment(t *testing.T) {
	r := mustRender(t, nil)
	d := find[*appsv1.Deployment](r, "meshrev-manager")
	require.NotNil(t, d)
	assert.Equal(t, int32(2), *d.Spec.Replicas)
	pod := d.Spec.Template.Spec
	assert.Equal(t, "meshrev-manager", pod.ServiceAccountName)
	require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
	assert.True(t, *pod.SecurityContext.RunAsNonRoot)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, pod.SecurityContext.SeccompProfile.Type)
	require.NotNil(t, pod.Affinity.PodAntiAffinity)
	require.Len(t, pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution, 1)
	assert.Equal(t, "kubernetes.io/hostname", pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey)
	assert.Equal(t, d.Spec.Selector.MatchLabels, pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector.MatchLabels)

	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	sc := c.SecurityContext
	assert.False(t, *sc.AllowPrivilegeEscalation)
	assert.True(t, *sc.ReadOnlyRootFilesystem)
	assert.True(t, *sc.RunAsNonRoot)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)
	assert.NotEmpty(t, c.Resources.Requests)
	assert.NotEmpty(t, c.Resources.Limits)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "probes", c.ReadinessProbe.HTTPGet.Port.String())
	assert.Contains(t, c.Ports, corev1.ContainerPort{Name: "probes", ContainerPort: 8081, Protocol: corev1.ProtocolTCP})
	assert.Equal(t, "metadata.namespace", c.Env[0].ValueFrom.FieldRef.FieldPath)
	assert.Equal(t, "POD_NAMESPACE", c.Env[0].Name)
	assert.Subset(t, c.Args, []string{
		"--namespace=$(POD_NAMESPACE)", "--mesh-namespace=istio-system", "--proxy-image-repo=docker.io/istio/proxyv2",
		"--webhook-port=9443", "--cert-dir=/var/run/meshrev/certs", "--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081", "--leader-elect=true", "--templates-configmap=meshrev-templates",
		"--manage-certs", "--cert-secret=meshrev-webhook-tls", "--webhook-service=meshrev-webhook",
		"--mutating-webhook-config=meshrev", "--validating-webhook-config=meshrev",
	})
	// Self-managed: the manager writes the cert dir, so it is a writable emptyDir.
	assert.NotNil(t, volume(t, pod, "certs").EmptyDir)

	pdb := find[*policyv1.PodDisruptionBudget](r, "meshrev-manager")
	require.NotNil(t, pdb)
	assert.Equal(t, 1, pdb.Spec.MinAvailable.IntValue())
	assert.Equal(t, d.Spec.Selector, pdb.Spec.Selector)

	svc := find[*corev1.Service](r, "meshrev-webhook")
	require.NotNil(t, svc)
	assert.Equal(t, d.Spec.Selector.MatchLabels, svc.Spec.Selector)
	require.Len(t, svc.Spec.Ports, 2)
	assert.Equal(t, int32(443), svc.Spec.Ports[0].Port)
	assert.Equal(t, "webhook", svc.Spec.Ports[0].TargetPort.String())
	assert.Contains(t, c.Ports, corev1.ContainerPort{Name: "webhook", ContainerPort: 9443, Protocol: corev1.ProtocolTCP})
	assert.Equal(t, "metrics", svc.Spec.Ports[1].TargetPort.String())
}

func volume(t *testing.T, pod corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == name })
	require.GreaterOrEqual(t, i, 0, "volume %s", name)
	return pod.Volumes[i]
}

// TestCertificateModes checks that the two certificate modes do not fight:
// the chart never renders caBundle, and each mode wires exactly its own parts.
func TestCertificateModes(t *testing.T) {
	t.Run("self-managed certificates leave caBundle to the manager", func(t *testing.T) {
		r := mustRender(t, nil)
		for _, cfg := range webhookClientConfigs(r) {
			assert.Empty(t, cfg.CABundle, "Helm must not own caBundle, or helm upgrade would reset it")
		}
		assert.Empty(t, find[*admissionregistrationv1.MutatingWebhookConfiguration](r, "meshrev").Annotations)
		assert.Empty(t, find[*admissionregistrationv1.ValidatingWebhookConfiguration](r, "meshrev").Annotations)
		assert.Contains(t, secretRule(t, r).ResourceNames, "meshrev-webhook-tls")
	})
	t.Run("cert-manager issues the serving certificate and injects caBundle", func(t *testing.T) {
		r := mustRender(t, map[string]any{"certManager": map[string]any{"enabled": true}})
		for _, cfg := range webhookClientConfigs(r) {
			assert.Empty(t, cfg.CABundle)
		}
		for _, o := range []map[string]string{
			find[*admissionregistrationv1.MutatingWebhookConfiguration](r, "meshrev").Annotations,
			find[*admissionregistrationv1.ValidatingWebhookConfiguration](r, "meshrev").Annotations,
		} {
			assert.Equal(t, releaseNamespace+"/meshrev-webhook", o["cert-manager.io/inject-ca-from"])
		}
		cert := find[*cmv1.Certificate](r, "meshrev-webhook")
		require.NotNil(t, cert)
		assert.Equal(t, "meshrev-webhook-tls", cert.Spec.SecretName)
		assert.Equal(t, []string{"meshrev-webhook.meshrev-system.svc", "meshrev-webhook.meshrev-system.svc.cluster.local"}, cert.Spec.DNSNames)
		assert.Equal(t, "meshrev-ca", cert.Spec.IssuerRef.Name)
		ca := find[*cmv1.Certificate](r, "meshrev-ca")
		require.NotNil(t, ca)
		assert.True(t, ca.Spec.IsCA)
		assert.Equal(t, "meshrev-ca", find[*cmv1.Issuer](r, "meshrev-ca").Spec.CA.SecretName)
		assert.NotNil(t, find[*cmv1.Issuer](r, "meshrev-selfsigned").Spec.SelfSigned)

		d := find[*appsv1.Deployment](r, "meshrev-manager")
		args := d.Spec.Template.Spec.Containers[0].Args
		assert.NotContains(t, args, "--manage-certs")
		assert.Equal(t, "meshrev-webhook-tls", volume(t, d.Spec.Template.Spec, "certs").Secret.SecretName)
		// The manager needs no access to Secrets nor to the webhook configurations.
		role := find[*rbacv1.Role](r, "meshrev-manager")
		for _, rl := range append(rolesRules(r), find[*rbacv1.ClusterRole](r, "meshrev-manager").Rules...) {
			assert.NotContains(t, rl.Resources, "secrets", "%v", role)
			assert.NotContains(t, rl.Resources, "mutatingwebhookconfigurations")
		}
	})
	t.Run("an external manager's certificate also covers the url's address", func(t *testing.T) {
		r := mustRender(t, map[string]any{"certManager": map[string]any{"enabled": true}, "webhook": map[string]any{"url": "https://127.0.0.1:9443"}})
		assert.Equal(t, []string{"127.0.0.1"}, find[*cmv1.Certificate](r, "meshrev-webhook").Spec.IPAddresses)
		r = mustRender(t, map[string]any{"certManager": map[string]any{"enabled": true}, "webhook": map[string]any{"url": "https://meshrev.dev.example.com:9443"}})
		assert.Contains(t, find[*cmv1.Certificate](r, "meshrev-webhook").Spec.DNSNames, "meshrev.dev.example.com")
	})
}

func webhookClientConfigs(r *rendered) []admissionregistrationv1.WebhookClientConfig {
	var out []admissionregistrationv1.WebhookClientConfig
	for _, w := range find[*admissionregistrationv1.MutatingWebhookConfiguration](r, "meshrev").Webhooks {
		out = append(out, w.ClientConfig)
	}
	for _, w := range find[*admissionregistrationv1.ValidatingWebhookConfiguration](r, "meshrev").Webhooks {
		out = append(out, w.ClientConfig)
	}
	return out
}

func rolesRules(r *rendered) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, o := range r.Objects {
		if role, ok := o.(*rbacv1.Role); ok {
			out = append(out, role.Rules...)
		}
	}
	return out
}

func secretRule(t *testing.T, r *rendered) rbacv1.PolicyRule {
	t.Helper()
	for _, rl := range rolesRules(r) {
		if slices.Contains(rl.Resources, "secrets") && len(rl.ResourceNames) > 0 {
			return rl
		}
	}
	require.Fail(t, "no Role rule for the certificate Secret")
	return rbacv1.PolicyRule{}
}

// TestWebhookConfigurations checks the admission settings of every webhook.
func TestWebhookConfigurations(t *testing.T) {
	cases := map[string]struct {
		values   map[string]any
		url      string
		failure  admissionregistrationv1.FailurePolicyType
		nsHookOn bool
	}{
		"the default install calls the Service and fails closed": {
			failure: admissionregistrationv1.Fail, nsHookOn: true,
		},
		"an external manager is called by url": {
			values:  map[string]any{"manager": map[string]any{"enabled": false}, "webhook": map[string]any{"url": "https://127.0.0.1:9443/"}},
			url:     "https://127.0.0.1:9443",
			failure: admissionregistrationv1.Fail, nsHookOn: true,
		},
		"failurePolicy Ignore and no namespace warnings when asked": {
			values:  map[string]any{"webhook": map[string]any{"failurePolicy": "Ignore", "namespaceWarnings": false}},
			failure: admissionregistrationv1.Ignore,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, tc.values)
			target := func(cfg admissionregistrationv1.WebhookClientConfig, path string) {
				if tc.url != "" {
					assert.Nil(t, cfg.Service)
					require.NotNil(t, cfg.URL)
					assert.Equal(t, tc.url+path, *cfg.URL)
					return
				}
				assert.Nil(t, cfg.URL)
				require.NotNil(t, cfg.Service)
				assert.Equal(t, admissionregistrationv1.ServiceReference{Namespace: releaseNamespace, Name: "meshrev-webhook", Path: &path, Port: ptr(int32(443))}, *cfg.Service)
			}

			mwc := find[*admissionregistrationv1.MutatingWebhookConfiguration](r, "meshrev")
			require.NotNil(t, mwc)
			require.Len(t, mwc.Webhooks, 4)
			assert.Equal(t, "inject.meshrev.io", mwc.Webhooks[0].Name)
			for _, w := range mwc.Webhooks {
				target(w.ClientConfig, "/inject")
				assert.Equal(t, tc.failure, *w.FailurePolicy)
				assert.Equal(t, admissionregistrationv1.SideEffectClassNone, *w.SideEffects)
				assert.Equal(t, []string{"v1"}, w.AdmissionReviewVersions)
				assert.Equal(t, admissionregistrationv1.NeverReinvocationPolicy, *w.ReinvocationPolicy)
				assert.Equal(t, int32(10), *w.TimeoutSeconds)
				require.Len(t, w.Rules, 1)
				assert.Equal(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, w.Rules[0].Operations)
				assert.Equal(t, []string{"pods"}, w.Rules[0].Resources)
			}

			vwc := find[*admissionregistrationv1.ValidatingWebhookConfiguration](r, "meshrev")
			require.NotNil(t, vwc)
			names := []string{}
			for _, w := range vwc.Webhooks {
				names = append(names, w.Name)
				assert.Equal(t, admissionregistrationv1.SideEffectClassNone, *w.SideEffects)
				switch w.Name {
				case "mesh.meshrev.io":
					target(w.ClientConfig, "/validate-mesh")
					assert.Equal(t, admissionregistrationv1.Fail, *w.FailurePolicy)
					assert.Equal(t, []string{"meshes"}, w.Rules[0].Resources)
					assert.Equal(t, []string{"meshrev.io"}, w.Rules[0].APIGroups)
					assert.ElementsMatch(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete}, w.Rules[0].Operations,
						"deleting the Mesh is checked: refused while anything depends on it")
					continue
				case "namespace.meshrev.io":
					target(w.ClientConfig, "/validate-namespace")
					assert.Equal(t, admissionregistrationv1.Ignore, *w.FailurePolicy, "namespace warnings must never block a namespace change")
					assert.Equal(t, []string{"namespaces"}, w.Rules[0].Resources)
				case "templates.meshrev.io":
					target(w.ClientConfig, "/validate-templates")
					assert.Equal(t, admissionregistrationv1.Fail, *w.FailurePolicy)
					assert.Equal(t, []string{"configmaps"}, w.Rules[0].Resources)
					assert.Equal(t, map[string]string{"kubernetes.io/metadata.name": "meshrev-system"}, w.NamespaceSelector.MatchLabels)
					assert.ElementsMatch(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete}, w.Rules[0].Operations)
					continue
				}
				assert.ElementsMatch(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}, w.Rules[0].Operations)
			}
			want := []string{"mesh.meshrev.io"}
			if tc.nsHookOn {
				want = append(want, "namespace.meshrev.io")
			}
			want = append(want, "templates.meshrev.io")
			assert.Equal(t, want, names)
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestRBACIsLeastPrivilege checks the shape of the manager's permissions: no
// wildcards, no writes outside what the code does, the Secret and the webhook
// configurations only by name, control planes only in the mesh namespace.
func TestRBACIsLeastPrivilege(t *testing.T) {
	r := mustRender(t, nil)
	cr := find[*rbacv1.ClusterRole](r, "meshrev-manager")
	require.NotNil(t, cr)
	writes := sets.New("create", "update", "patch", "delete", "deletecollection")
	for _, rl := range append(slices.Clone(cr.Rules), rolesRules(r)...) {
		for _, f := range [][]string{rl.APIGroups, rl.Resources, rl.Verbs, rl.ResourceNames} {
			assert.NotContains(t, f, "*", "no wildcards: %v", rl)
		}
		assert.NotContains(t, rl.Verbs, "escalate")
		assert.NotContains(t, rl.Verbs, "bind")
		assert.NotContains(t, rl.Verbs, "impersonate")
	}
	for _, rl := range cr.Rules {
		w := writes.Intersection(sets.New(rl.Verbs...))
		if w.Len() == 0 {
			continue
		}
		for _, res := range rl.Resources {
			switch res {
			case "meshes/status", "meshes/finalizers", "events":
			case "namespaces":
				assert.Equal(t, []string{"patch"}, w.UnsortedList(), "namespaces are relabelled by patch, never created or deleted")
			case "mutatingwebhookconfigurations", "validatingwebhookconfigurations":
				assert.Equal(t, []string{"meshrev"}, rl.ResourceNames, "only meshrev's own webhook configurations")
			default:
				assert.Failf(t, "cluster-wide write", "the ClusterRole writes %s: %v", res, rl)
			}
		}
		assert.NotContains(t, rl.Resources, "secrets", "no cluster-wide Secret access")
		assert.NotContains(t, rl.Resources, "pods/eviction")
	}
	for _, o := range r.Objects {
		role, ok := o.(*rbacv1.Role)
		if !ok {
			continue
		}
		switch role.Namespace {
		case "istio-system":
			for _, rl := range role.Rules {
				assert.Subset(t, []string{"deployments", "services", "configmaps"}, rl.Resources)
				if slices.Contains(rl.Resources, "configmaps") {
					assert.Equal(t, []string{"get", "list", "watch"}, rl.Verbs, "the releases' injection values are only read")
				}
			}
		case releaseNamespace:
			for _, rl := range role.Rules {
				if slices.Contains(rl.Resources, "secrets") && !slices.Equal(rl.Verbs, []string{"create"}) {
					assert.Equal(t, []string{"meshrev-webhook-tls"}, rl.ResourceNames, "the certificate Secret only")
				}
			}
		default:
			assert.Failf(t, "unexpected Role", "Role in %s", role.Namespace)
		}
	}
}

// TestTemplatesConfigMap checks that the ConfigMap carries the templates the
// injector embeds, byte for byte, and that values override them.
func TestTemplatesConfigMap(t *testing.T) {
	sidecar, gateway := DefaultTemplates()
	cm := find[*corev1.ConfigMap](mustRender(t, nil), "meshrev-templates")
	require.NotNil(t, cm)
	assert.Equal(t, sidecar, cm.Data["sidecar"])
	assert.Equal(t, gateway, cm.Data["gateway"])

	own := "  # starts with spaces, ends without a newline\ncontainers: []"
	cm = find[*corev1.ConfigMap](mustRender(t, map[string]any{"templates": map[string]any{"gateway": own}}), "meshrev-templates")
	assert.Equal(t, sidecar, cm.Data["sidecar"])
	assert.Equal(t, own+"\n", cm.Data["gateway"])
}

// TestInitialMesh checks the Mesh the chart creates against the revision
// core: the revision name helper agrees with revisions.RevisionName and the
// Mesh is one the validating webhook accepts as an install.
func TestInitialMesh(t *testing.T) {
	cases := map[string]struct {
		values       map[string]any
		version      string
		controlPlane *v1alpha1.ControlPlane
		policy       v1alpha1.UnknownRevisionPolicy
	}{
		"the default publishes 1.22.6 with its control plane": {
			version:      "1.22.6",
			controlPlane: &v1alpha1.ControlPlane{Image: "docker.io/istio/pilot:1.22.6", Replicas: ptr(int32(1)), ServiceType: corev1.ServiceTypeClusterIP},
			policy:       v1alpha1.UnknownRevisionAllow,
		},
		"a two-digit minor keeps every digit in the revision name": {
			values: map[string]any{"mesh": map[string]any{
				"stable":                map[string]any{"version": "1.110.10"},
				"controlPlane":          map[string]any{"enabled": false},
				"unknownRevisionPolicy": "Deny",
			}},
			version: "1.110.10",
			policy:  v1alpha1.UnknownRevisionDeny,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, tc.values)
			mesh := find[*v1alpha1.Mesh](r, v1alpha1.MeshName)
			require.NotNil(t, mesh)
			rev, err := revisions.RevisionName(tc.version)
			require.NoError(t, err)
			assert.Equal(t, v1alpha1.MeshSpec{
				Revisions:             []v1alpha1.Revision{{Name: rev, Version: tc.version, ControlPlane: tc.controlPlane}},
				Stable:                rev,
				UnknownRevisionPolicy: tc.policy,
			}, mesh.Spec)
			assert.Equal(t, "pre-install,pre-upgrade", mesh.Annotations["helm.sh/hook"])
			_, errs := revisions.ValidateTransition(nil, mesh, revisions.Facts{})
			assert.Empty(t, errs)
		})
	}
}

// TestNotes checks that NOTES.txt tells the next step.
func TestNotes(t *testing.T) {
	notes := mustRender(t, nil).Release.Info.Notes
	for _, want := range []string{"meshrev status", "meshrev canary deploy", "rollout status deployment/meshrev-manager", "revision 1-22-6"} {
		assert.Contains(t, notes, want)
	}
	notes = mustRender(t, map[string]any{"manager": map[string]any{"enabled": false}, "webhook": map[string]any{"url": "https://127.0.0.1:9443"}}).Release.Info.Notes
	assert.Contains(t, notes, "--webhook-url=https://127.0.0.1:9443")
	assert.False(t, strings.Contains(notes, "rollout status"), "no Deployment to wait for")
}
