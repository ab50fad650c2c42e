// Command meshrev is meshrev's CLI; installed as kubectl-meshrev it is the
// kubectl plugin "kubectl meshrev".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshrev/meshrev/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args)
	stop()
	os.Exit(code)
}
