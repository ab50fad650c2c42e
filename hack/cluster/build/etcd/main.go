// Command etcd is the pinned etcd server of meshrev's local cluster: a thin
// wrapper around the upstream etcdmain entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
