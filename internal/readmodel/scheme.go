package readmodel

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

// Scheme returns the types meshrev reads and writes: client-go's built-in
// Kubernetes types and meshrev.io/v1alpha1. The manager, the validators and
// the CLI all use it.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("register Kubernetes types: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("register meshrev.io/v1alpha1: %w", err)
	}
	return s, nil
}
