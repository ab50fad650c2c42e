// Command cluster builds, starts and stops meshrev's local Kubernetes cluster
// (see package github.com/meshrev/meshrev/internal/devcluster).
//
//	go run ./hack/cluster build   # build the pinned binaries into the cache
//	go run ./hack/cluster up      # start (or reuse, or restart on its data) the cluster in .dev/
//	go run ./hack/cluster up -wipe  # drop the cluster's data and start a fresh one
//	go run ./hack/cluster status  # is it running and healthy?
//	go run ./hack/cluster env     # shell exports: KUBECONFIG and PATH
//	go run ./hack/cluster down    # stop it
//
// Flags (after the command): -dir (default $MESHREV_CLUSTER_DIR or <repo>/.dev),
// -nodes, -timeout, -wipe.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshrev/meshrev/internal/devcluster"
)

const usage = `usage: go run ./hack/cluster <command> [flags]

commands:
  build    build the pinned binaries (etcd, kube-*, kubectl, helm, kwok) into the cache
  up       start the local cluster, or reuse it when it is already running and healthy;
           a stopped or crashed one is restarted on its data (objects kept), -wipe drops it
  down     stop the local cluster
  status   report whether the local cluster is running and healthy
  env      print shell exports (eval "$(go run ./hack/cluster env)")

flags:
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	dir := fs.String("dir", "", "cluster directory (default $"+devcluster.DirEnv+" or <repo>/.dev)")
	nodes := fs.Int("nodes", devcluster.DefaultNodes, "number of kwok nodes")
	timeout := fs.Duration("timeout", devcluster.DefaultStartTimeout, "how long `up` may wait for the cluster once built")
	wipe := fs.Bool("wipe", false, "with up: drop the data of the cluster in the directory (etcd, PKI, kubeconfig) and start a fresh one")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return nil
	}
	command := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v; see go run ./hack/cluster -h", fs.Args())
	}

	root, err := devcluster.RepoRoot()
	if err != nil {
		return err
	}
	if *dir == "" {
		if *dir, err = devcluster.DefaultDir(root); err != nil {
			return err
		}
	}
	if *dir, err = filepath.Abs(*dir); err != nil {
		return fmt.Errorf("cluster directory: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch command {
	case "build":
		start := time.Now()
		bins, err := devcluster.Build(ctx, devcluster.BuildOptions{RepoRoot: root, Log: os.Stdout, PilotDiscovery: true})
		if err != nil {
			return err
		}
		fmt.Printf("binaries ready in %s:\n", time.Since(start).Round(100*time.Millisecond))
		for _, p := range []string{bins.Etcd, bins.KubeAPIServer, bins.KubeControllerManager, bins.KubeScheduler, bins.Kubectl, bins.Helm, bins.Kwok, bins.KwokStages, bins.PilotDiscovery} {
			fmt.Println("  " + p)
		}
		return nil
	case "up":
		start := time.Now()
		c, err := devcluster.Start(ctx, devcluster.Options{
			Dir:          *dir,
			RepoRoot:     root,
			Nodes:        *nodes,
			Log:          os.Stdout,
			Reuse:        !*wipe,
			Wipe:         *wipe,
			Detach:       true,
			StartTimeout: *timeout,
		})
		switch {
		case errors.Is(err, devcluster.ErrDataUnusable):
			return fmt.Errorf("%w\nto drop the data of %s and start a fresh cluster run: %s", err, *dir, wipeCommand)
		case err != nil && !*wipe:
			return fmt.Errorf("%w\n(the binaries are cached; fix the cause and run `go run ./hack/cluster up` again — it cleans up stale processes; if the cluster's data is broken, start afresh with: %s)", err, wipeCommand)
		case err != nil:
			return fmt.Errorf("%w\n(the binaries are cached; fix the cause and run `go run ./hack/cluster up -wipe` again — it cleans up stale processes)", err)
		}
		fmt.Printf("cluster up in %s\n\n", time.Since(start).Round(100*time.Millisecond))
		printEnv(c.Layout)
		return nil
	case "down":
		n, err := devcluster.Down(*dir)
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Printf("no local cluster running in %s\n", *dir)
		} else {
			fmt.Printf("stopped %d processes of the local cluster in %s (logs kept in %s)\n", n, *dir, devcluster.Layout{Root: *dir}.LogDir())
		}
		return nil
	case "status":
		if err := devcluster.Status(ctx, *dir, *nodes); err != nil {
			return fmt.Errorf("local cluster in %s is not running: %w (start it with `go run ./hack/cluster up`)", *dir, err)
		}
		fmt.Printf("local cluster in %s is running and healthy\n", *dir)
		return nil
	case "env":
		printEnv(devcluster.Layout{Root: *dir})
		return nil
	default:
		return errors.New("unknown command " + command + "; see go run ./hack/cluster -h")
	}
}

// wipeCommand is how a person starts afresh, dropping the cluster's objects.
const wipeCommand = "go run ./hack/cluster up -wipe (make cluster-up WIPE=1)"

func printEnv(l devcluster.Layout) {
	fmt.Printf("export KUBECONFIG=%s\n", l.Kubeconfig())
	fmt.Printf("export PATH=%s:$PATH\n", l.BinDir())
}
