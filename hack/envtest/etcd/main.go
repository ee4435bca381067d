// Command etcd is upstream etcd's server main (go.etcd.io/etcd/server/v3/etcdmain),
// built from the pinned module for the envtest control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
