package controller

import (
	"bytes"
	"encoding/json"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Labels of the control-plane objects meshrev runs.
const (
	// LabelApp is app: istiod on every control-plane Deployment, Service and pod.
	LabelApp = "app"
	// AppIstiod is the value of LabelApp.
	AppIstiod = "istiod"
	// LabelManagedBy marks the objects meshrev created.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "meshrev"
	// FieldOwner is the server-side-apply field manager of the controller.
	FieldOwner = "meshrev-controller"
)

// controlPlanePort is one istiod port.
type controlPlanePort struct {
	name   string
	port   int32
	target int32
}

// controlPlanePorts are the istiod ports: xDS (plain and mTLS), the
// injection/validation webhook behind 443, and monitoring.
var controlPlanePorts = []controlPlanePort{
	{name: "grpc-xds", port: revisions.PortXDS, target: revisions.PortXDS},
	{name: "https-dns", port: revisions.PortXDSTLS, target: revisions.PortXDSTLS},
	{name: "https-webhook", port: 443, target: revisions.PortWebhook},
	{name: "http-monitoring", port: revisions.PortMonitoring, target: revisions.PortMonitoring},
}

// objectLabels are the labels of a revision's control-plane Deployment and Service.
func objectLabels(rev string) map[string]string {
	return map[string]string{
		LabelApp:                AppIstiod,
		revisions.LabelRevision: rev,
		revisions.LabelRev:      rev,
		LabelManagedBy:          ManagedBy,
	}
}

// selectorLabels select a revision's control-plane pods.
func selectorLabels(rev string) map[string]string {
	return map[string]string{LabelApp: AppIstiod, revisions.LabelRev: rev}
}

// meshOwner makes the Mesh the controlling owner, so that the garbage
// collector removes the control planes with the Mesh (a cluster-scoped owner
// of namespaced objects is allowed).
func meshOwner(mesh *v1alpha1.Mesh) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1alpha1.GroupVersion.String()).
		WithKind("Mesh").
		WithName(mesh.Name).
		WithUID(mesh.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// desiredDeployment is the control-plane Deployment of a revision with a controlPlane.
func desiredDeployment(mesh *v1alpha1.Mesh, rev v1alpha1.Revision, namespace string) *appsv1ac.DeploymentApplyConfiguration {
	cp := rev.ControlPlane
	replicas := int32(1)
	if cp.Replicas != nil {
		replicas = *cp.Replicas
	}
	// The pods carry sidecar.istio.io/inject=false (as Istio's own istiod
	// does) and no meshrev.io/revision label: a control plane is not part of
	// the data plane and must never be injected or counted as one.
	podLabels := selectorLabels(rev.Name)
	podLabels[revisions.LabelSidecarInject] = "false"

	container := corev1ac.Container().
		WithName("discovery").
		WithImage(cp.Image).
		WithArgs("discovery", "--monitoringAddr=:"+strconv.Itoa(revisions.PortMonitoring), "--log_output_level=default:info", "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m").
		// fieldRef's apiVersion is spelled out: the API server defaults it,
		// and what meshrev owns must equal what it applies (no write then).
		WithEnv(
			corev1ac.EnvVar().WithName("REVISION").WithValue(rev.Name),
			corev1ac.EnvVar().WithName("POD_NAME").WithValueFrom(corev1ac.EnvVarSource().WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.name"))),
			corev1ac.EnvVar().WithName("POD_NAMESPACE").WithValueFrom(corev1ac.EnvVarSource().WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.namespace"))),
		).
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/ready").WithPort(intstr.FromInt32(8080))).
			WithInitialDelaySeconds(1).WithPeriodSeconds(3)).
		WithResources(corev1ac.ResourceRequirements().WithRequests(corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		}))
	container.WithPorts(corev1ac.ContainerPort().WithName("http-debug").WithContainerPort(8080).WithProtocol(corev1.ProtocolTCP))
	for _, p := range controlPlanePorts {
		container.WithPorts(corev1ac.ContainerPort().WithContainerPort(p.target).WithProtocol(corev1.ProtocolTCP))
	}

	return appsv1ac.Deployment(revisions.ControlPlaneName(rev.Name), namespace).
		WithLabels(objectLabels(rev.Name)).
		WithOwnerReferences(meshOwner(mesh)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(replicas).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(rev.Name))).
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromString("100%")))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(podLabels).
				WithSpec(corev1ac.PodSpec().WithContainers(container))))
}

// desiredService is the control-plane Service of a revision with a controlPlane.
func desiredService(mesh *v1alpha1.Mesh, rev v1alpha1.Revision, namespace string) *corev1ac.ServiceApplyConfiguration {
	typ := rev.ControlPlane.ServiceType
	if typ == "" {
		typ = corev1.ServiceTypeClusterIP
	}
	spec := corev1ac.ServiceSpec().WithType(typ).WithSelector(selectorLabels(rev.Name))
	for _, p := range controlPlanePorts {
		spec.WithPorts(corev1ac.ServicePort().WithName(p.name).WithPort(p.port).WithTargetPort(intstr.FromInt32(p.target)).WithProtocol(corev1.ProtocolTCP))
	}
	return corev1ac.Service(revisions.ControlPlaneName(rev.Name), namespace).
		WithLabels(objectLabels(rev.Name)).
		WithOwnerReferences(meshOwner(mesh)).
		WithSpec(spec)
}

// deploymentUpToDate says whether the fields FieldOwner owns in live (read
// with its managedFields) are exactly the desired apply configuration: then
// applying it again would change nothing. A field someone else took over
// (kubectl edit, another applier) is missing from what FieldOwner owns, so
// the Deployment is applied again and the drift corrected.
func deploymentUpToDate(live *appsv1.Deployment, desired *appsv1ac.DeploymentApplyConfiguration) bool {
	owned, err := appsv1ac.ExtractDeployment(live, FieldOwner)
	return err == nil && sameJSON(owned, desired)
}

// serviceUpToDate is deploymentUpToDate for the Service.
func serviceUpToDate(live *corev1.Service, desired *corev1ac.ServiceApplyConfiguration) bool {
	owned, err := corev1ac.ExtractService(live, FieldOwner)
	return err == nil && sameJSON(owned, desired)
}

// sameJSON compares two apply configurations by their JSON (quantities,
// int-or-strings and maps in canonical form).
func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
