package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pushOptions configure push.
type pushOptions struct {
	// Layout is the OCI layout release image wrote.
	Layout string
	// Ref is repository:tag to push to.
	Ref string
}

// push uploads the image index of the layout, exactly as built (same
// digest), to a registry. Credentials come from $REGISTRY_USERNAME and
// $REGISTRY_PASSWORD (anonymous without them). The only step that uses the
// network.
func push(ctx context.Context, o pushOptions) error {
	if o.Ref == "" {
		return errors.New("--ref is required")
	}
	tag, err := name.NewTag(o.Ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("--ref %s: %w", o.Ref, err)
	}
	idx, err := builtIndex(o.Layout)
	if err != nil {
		return err
	}
	auth := authn.Anonymous
	if u := os.Getenv("REGISTRY_USERNAME"); u != "" {
		auth = &authn.Basic{Username: u, Password: os.Getenv("REGISTRY_PASSWORD")}
	}
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuth(auth)); err != nil {
		return fmt.Errorf("push %s: %w", tag, err)
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", tag, digest)
	return nil
}

// builtIndex is the one image index of a layout written by buildImage.
func builtIndex(dir string) (v1.ImageIndex, error) {
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w", dir, err)
	}
	m, err := root.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("OCI layout %s holds %d entries, want the one image index of release image", dir, len(m.Manifests))
	}
	return root.ImageIndex(m.Manifests[0].Digest)
}
