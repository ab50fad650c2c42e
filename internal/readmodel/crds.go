package readmodel

import (
	"context"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// IstioVersionCRD is the Istio CRD whose version label stands for all of
// Istio's CRDs: Istio's base chart installs them together, each labelled
// app.kubernetes.io/version with the chart's version.
const IstioVersionCRD = "virtualservices.networking.istio.io"

// LabelVersion is the label of Istio's CRDs that carries their version.
const LabelVersion = "app.kubernetes.io/version"

// CRDMeta returns an empty metadata-only CustomResourceDefinition: CRDs are
// read for their labels only, and the manager's cache watches them as metadata.
func CRDMeta() *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	return p
}

// IstioCRDVersion is the version of the Istio CRDs installed in the
// cluster, or "" when there are none or they carry no version.
func IstioCRDVersion(ctx context.Context, r client.Reader) (string, error) {
	crd := CRDMeta()
	if err := r.Get(ctx, client.ObjectKey{Name: IstioVersionCRD}, crd); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("get CRD %s: %w", IstioVersionCRD, err)
	}
	return crd.Labels[LabelVersion], nil
}
