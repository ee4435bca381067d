// A minimal CoreDNS for the real-node tier: only the plugins cluster DNS needs.
// Upstream's core/plugin/zplugin.go registers ~60 plugins; linking them all costs
// minutes of build time on two cores for nothing this cluster uses.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins the Corefile in hack/node/cluster.yaml uses; each registers itself.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order plugins run in, as in upstream's plugin.cfg (only those linked here).
var directives = []string{"ready", "health", "errors", "loadbalance", "cache", "kubernetes"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
