package main

import (
	"context"
	"net/http"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/networking/pkg/apis/networking"
	netcfg "knative.dev/networking/pkg/config"
	"knative.dev/networking/pkg/http/header"
	"knative.dev/pkg/ptr"
	apicfg "knative.dev/serving/pkg/apis/config"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"knative.dev/serving/pkg/reconciler/route/config"
	"knative.dev/serving/pkg/reconciler/route/resources"
	"knative.dev/serving/pkg/reconciler/route/traffic"
)

// TestServingIngress routes with the very Ingress that Knative Serving v0.50.0's route
// reconciler builds (resources.MakeIngress) for a Route splitting 80/20 over two HTTP/1
// revisions, with a tag "canary" on an h2c revision and tag-header routing on: the hosts,
// visibilities, ports and headers are Serving's, not a hand-written imitation.
func TestServingIngress(t *testing.T) {
	c := newCluster(t)
	c.backend("ns", "hello-00001", false)
	c.backend("ns", "hello-00002", false)
	c.backend("ns", "hello-00003", true)

	route := &servingv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "hello"}}
	target := func(rev string, percent int64, tag string, proto networking.ProtocolType) traffic.RevisionTarget {
		return traffic.RevisionTarget{TrafficTarget: servingv1.TrafficTarget{
			Tag: tag, ConfigurationName: "hello", RevisionName: rev, Percent: ptr.Int64(percent),
		}, Protocol: proto}
	}
	tc := &traffic.Config{Targets: map[string]traffic.RevisionTargets{
		traffic.DefaultTarget: {target("hello-00001", 80, "", networking.ProtocolHTTP1), target("hello-00002", 20, "", networking.ProtocolHTTP1)},
		"canary":              {target("hello-00003", 100, "canary", networking.ProtocolH2C)},
	}}
	ctx := config.ToContext(context.Background(), &config.Config{
		Domain: &config.Domain{Domains: map[string]config.DomainConfig{"example.com": {}}},
		Network: &netcfg.Config{
			DefaultIngressClass: DefaultClass, DomainTemplate: netcfg.DefaultDomainTemplate,
			TagTemplate: netcfg.DefaultTagTemplate, SystemInternalTLS: netcfg.EncryptionDisabled,
			HTTPProtocol: netcfg.HTTPEnabled,
		},
		Features: &apicfg.Features{TagHeaderBasedRouting: apicfg.Enabled},
	})
	ing, err := resources.MakeIngress(ctx, route, tc, nil, DefaultClass)
	if err != nil {
		t.Fatal("Serving's MakeIngress:", err)
	}
	g := newGateway(t, c, ing)

	tests := []struct {
		name      string
		private   bool
		host      string
		header    map[string]string
		code      int
		backends  []string // any of these
		proto     int
		wantExtra map[string]string
	}{
		{name: "external host", host: "hello.ns.example.com", code: 200, backends: []string{"hello-00001", "hello-00002"}, proto: 1,
			wantExtra: map[string]string{header.DefaultRouteKey: "true"}},
		{name: "tag host, h2c revision", host: "canary-hello.ns.example.com", code: 200, backends: []string{"hello-00003"}, proto: 2,
			wantExtra: map[string]string{header.RouteTagKey: "canary"}},
		{name: "tag header on the main host", host: "hello.ns.example.com", header: map[string]string{header.RouteTagKey: "canary"},
			code: 200, backends: []string{"hello-00003"}, proto: 2},
		{name: "cluster-local fqdn, private", private: true, host: "hello.ns.svc.cluster.local", code: 200, backends: []string{"hello-00001", "hello-00002"}},
		{name: "cluster-local name.ns.svc, private", private: true, host: "hello.ns.svc", code: 200, backends: []string{"hello-00001", "hello-00002"}},
		{name: "cluster-local name.ns, private", private: true, host: "hello.ns", code: 200, backends: []string{"hello-00001", "hello-00002"}},
		{name: "tag cluster-local, private", private: true, host: "canary-hello.ns.svc.cluster.local", code: 200, backends: []string{"hello-00003"}},
		{name: "cluster-local not public", host: "hello.ns.svc.cluster.local", code: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := g.public
			if tt.private {
				srv = g.private
			}
			code, s, body := get(t, srv, tt.host, "/", tt.header)
			if code != tt.code {
				t.Fatalf("status %d, want %d (%s)", code, tt.code, body)
			}
			if code != 200 {
				return
			}
			if !contains(tt.backends, s.Backend) {
				t.Errorf("backend %q, want one of %v", s.Backend, tt.backends)
			}
			// What the activator and queue-proxy route by.
			if got := s.Header.Get("Knative-Serving-Revision"); got != s.Backend {
				t.Errorf("Knative-Serving-Revision = %q at backend %q", got, s.Backend)
			}
			if got := s.Header.Get("Knative-Serving-Namespace"); got != "ns" {
				t.Errorf("Knative-Serving-Namespace = %q", got)
			}
			if tt.proto != 0 && s.Proto != tt.proto {
				t.Errorf("backend saw HTTP/%d, want HTTP/%d", s.Proto, tt.proto)
			}
			for k, v := range tt.wantExtra {
				if got := s.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}

	// Both revisions of the 80/20 split get traffic (missing the 20% one in 200 requests has
	// probability 0.8^200).
	seen := map[string]bool{}
	for range 200 {
		_, s, _ := get(t, g.public, "hello.ns.example.com", "/", nil)
		seen[s.Backend] = true
	}
	if !seen["hello-00001"] || !seen["hello-00002"] || len(seen) != 2 {
		t.Errorf("the 80/20 split reached %v", seen)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
