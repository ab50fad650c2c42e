// Command istiocharts serves Istio's own base and istiod Helm charts, from the
// istio.io/istio module pinned by test/istiocharts, as a chart repository on
// 127.0.0.1, packaged under the versions given (the demo's 1.22.6, 1.23.6 and
// 1.24.2 by default). It prints the repository's URL on its first line (and
// into -url-file) and serves until interrupted.
//
//	go run ./hack/istiocharts -listen 127.0.0.1:18090
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/meshrev/meshrev/internal/istiocharts"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve the repository on")
	versions := flag.String("versions", "1.22.6,1.23.6,1.24.2", "chart versions to package, comma-separated")
	module := flag.String("module", "test/istiocharts", "the module that pins istio.io/istio")
	dir := flag.String("dir", "", "directory for the packaged charts (default: a temporary directory)")
	urlFile := flag.String("url-file", "", "also write the repository's URL into this file, once serving")
	flag.Parse()
	if err := run(*listen, strings.Split(*versions, ","), *module, *dir, *urlFile); err != nil {
		fmt.Fprintln(os.Stderr, "istiocharts:", err)
		os.Exit(1)
	}
}

func run(listen string, versions []string, module, dir, urlFile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src, err := istiocharts.Source(ctx, module)
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "istiocharts"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	if err := istiocharts.Package(src, dir, versions...); err != nil {
		return err
	}
	r, err := istiocharts.Serve(dir, listen)
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Println(r.URL)
	if urlFile != "" {
		if err := os.WriteFile(urlFile, []byte(r.URL+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "istiocharts: serving base and istiod %s from %s at %s\n", strings.Join(versions, ", "), filepath.Base(src), r.URL)
	<-ctx.Done()
	return nil
}
