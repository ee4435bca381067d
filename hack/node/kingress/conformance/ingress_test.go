//go:build e2e

// Package conformance runs knative.dev/networking's KIngress conformance suite against the
// cluster in --kubeconfig, the way downstream implementations (net-kourier, net-istio) do.
// conformance.sh builds this with `go test -c -tags e2e` and passes the flags.
package conformance

import (
	"testing"

	"knative.dev/networking/test/conformance/ingress"
)

func TestIngressConformance(t *testing.T) {
	ingress.RunConformance(t)
}
