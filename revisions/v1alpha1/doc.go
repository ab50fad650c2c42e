// Package v1alpha1 holds the meshrev.io/v1alpha1 API: the Mesh resource, the
// cluster's revision table.
//
// +kubebuilder:object:generate=true
// +groupName=meshrev.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of the Mesh resource.
	GroupVersion = schema.GroupVersion{Group: "meshrev.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
