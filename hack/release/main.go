// Command release builds meshrev's release artefacts without a container
// daemon and without network (unless told to push):
//
//	go run ./hack/release image   # the multi-platform manager image, an OCI layout
//	go run ./hack/release chart   # the chart packaged with version and appVersion stamped
//	go run ./hack/release cli     # kubectl-meshrev archives for linux/darwin × amd64/arm64
//	go run ./hack/release krew    # checksums.txt, the krew manifest and the release notes
//	go run ./hack/release push    # push the built image index to a registry (CI only)
//
// The Makefile (hack/release.mk: make image, make release) passes the one
// version, the git revision and SOURCE_DATE_EPOCH to every step.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"
)

// buildInfo is what every artefact of one release is stamped with.
type buildInfo struct {
	// Version is the release version, SemVer without a leading v.
	Version string
	// Revision is the full git commit.
	Revision string
	// Created is the commit time (SOURCE_DATE_EPOCH): every timestamp in
	// an artefact, so two builds of one commit are byte-identical.
	Created time.Time
	// Source is the repository URL.
	Source string
}

// addBuildFlags binds the flags of buildInfo.
func addBuildFlags(fs *flag.FlagSet, b *buildInfo, epoch *int64) {
	fs.StringVar(&b.Version, "version", "", "release version, SemVer without a leading v (required)")
	fs.StringVar(&b.Revision, "revision", "", "git commit the artefacts are built from (required)")
	fs.StringVar(&b.Source, "source", defaultSource, "source repository URL (org.opencontainers.image.source)")
	def := int64(-1)
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			def = v
		}
	}
	fs.Int64Var(epoch, "source-date-epoch", def, "the commit time in Unix seconds, every timestamp of the artefacts (default $SOURCE_DATE_EPOCH)")
}

// check completes buildInfo after parsing.
func (b *buildInfo) check(epoch int64) error {
	if err := checkVersion(b.Version); err != nil {
		return err
	}
	if b.Revision == "" {
		return errors.New("--revision is required")
	}
	if epoch < 0 {
		return errors.New("--source-date-epoch (or $SOURCE_DATE_EPOCH) is required: the commit time, git log -1 --format=%ct")
	}
	b.Created = time.Unix(epoch, 0).UTC()
	return nil
}

const defaultSource = "https://github.com/meshrev/meshrev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: release image|chart|cli|krew|push [flags]")
	}
	fs := flag.NewFlagSet("release "+args[0], flag.ContinueOnError)
	var b buildInfo
	var epoch int64
	switch args[0] {
	case "image":
		var o imageOptions
		addBuildFlags(fs, &b, &epoch)
		fs.StringVar(&o.Repository, "repository", defaultRepository, "image repository; the tag is the version")
		fs.StringVar(&o.Layout, "out", "dist/image", "OCI layout directory to write (replaced)")
		fs.StringVar(&o.RefFile, "ref-file", "dist/image.ref", "file to write repository:tag@digest to")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := b.check(epoch); err != nil {
			return err
		}
		o.Build = b
		res, err := buildImage(ctx, o)
		if err != nil {
			return err
		}
		fmt.Println(res.Ref())
		return nil
	case "chart":
		var o chartOptions
		addBuildFlags(fs, &b, &epoch)
		fs.StringVar(&o.Chart, "chart", "charts/meshrev", "chart directory")
		fs.StringVar(&o.Out, "out", "dist", "directory to write meshrev-<version>.tgz to")
		fs.StringVar(&o.ImageRefFile, "image-ref-file", "dist/image.ref", "the image the chart must default to (written by release image)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := b.check(epoch); err != nil {
			return err
		}
		o.Build = b
		path, err := packageChart(o)
		if err != nil {
			return err
		}
		fmt.Println(path)
		return nil
	case "cli":
		var o cliOptions
		addBuildFlags(fs, &b, &epoch)
		fs.StringVar(&o.Out, "out", "dist", "directory to write the archives to")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := b.check(epoch); err != nil {
			return err
		}
		o.Build = b
		archives, err := buildCLIArchives(ctx, o)
		if err != nil {
			return err
		}
		for _, a := range archives {
			fmt.Println(a.Path)
		}
		return nil
	case "krew":
		var o krewOptions
		addBuildFlags(fs, &b, &epoch)
		fs.StringVar(&o.Dist, "dist", "dist", "directory holding the archives, the chart and image.ref; the outputs go there too")
		fs.StringVar(&o.DownloadBase, "download-base", defaultDownloadBase, "URL the archives are published under; /v<version>/<archive> is appended")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := b.check(epoch); err != nil {
			return err
		}
		o.Build = b
		return writeReleaseMetadata(o)
	case "push":
		var o pushOptions
		fs.StringVar(&o.Layout, "layout", "dist/image", "OCI layout written by release image")
		fs.StringVar(&o.Ref, "ref", "", "repository:tag to push the image index to (required); credentials from $REGISTRY_USERNAME and $REGISTRY_PASSWORD")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return push(ctx, o)
	}
	return fmt.Errorf("unknown step %q: image, chart, cli, krew or push", args[0])
}
