package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"knative.dev/networking/pkg/apis/networking"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/networking/pkg/http/header"
	"knative.dev/networking/pkg/http/probe"
	"knative.dev/networking/pkg/ingress"
)

// seen is what a backend reports about the request it received.
type seen struct {
	Backend string      `json:"backend"`
	Host    string      `json:"host"`
	Path    string      `json:"path"`
	Proto   int         `json:"proto"`
	Header  http.Header `json:"header"`
}

// cluster is a set of real HTTP backends registered as Kubernetes Services in a real
// client-go lister, as the informer fills it. Each Service gets a virtual ClusterIP and
// Knative's ports (80, or 81 for h2c); dial plays kube-proxy, sending a virtual address to
// the backend's real listener.
type cluster struct {
	t        *testing.T
	services cache.Indexer
	mu       sync.Mutex
	vips     map[string]string // "clusterIP:port" -> the backend's listener
}

func newCluster(t *testing.T) *cluster {
	return &cluster{t: t, vips: map[string]string{}, services: cache.NewIndexer(cache.MetaNamespaceKeyFunc,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})}
}

func (c *cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	if real, ok := c.vips[addr]; ok {
		addr = real
	}
	c.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (c *cluster) lister() corev1listers.ServiceLister {
	return corev1listers.NewServiceLister(c.services)
}

// backend starts a server answering with what it saw, wrapped in Knative's probe handler
// like queue-proxy and the conformance runtime image; h2c backends speak only HTTP/2.
func (c *cluster) backend(ns, name string, h2c bool) {
	c.t.Helper()
	h := probe.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{Backend: name, Host: r.Host, Path: r.URL.Path, Proto: r.ProtoMajor, Header: r.Header})
	}))
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	if h2c {
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
	} else {
		srv.Config.Protocols.SetHTTP1(true)
	}
	srv.Start()
	c.t.Cleanup(srv.Close)
	c.addService(ns, name, srv.Listener.Addr(), h2c)
}

func (c *cluster) addService(ns, name string, addr net.Addr, h2c bool) {
	c.t.Helper()
	sp := corev1.ServicePort{Name: networking.ServicePortNameHTTP1, Port: networking.ServiceHTTPPort}
	if h2c {
		sp = corev1.ServicePort{Name: networking.ServicePortNameH2C, Port: networking.ServiceHTTP2Port, AppProtocol: &networking.AppProtocolH2C}
	}
	c.mu.Lock()
	ip := fmt.Sprintf("10.96.%d.%d", len(c.vips)/200, 10+len(c.vips)%200)
	c.vips[net.JoinHostPort(ip, strconv.Itoa(int(sp.Port)))] = addr.String()
	c.mu.Unlock()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, Ports: []corev1.ServicePort{sp}},
	}
	if err := c.services.Add(svc); err != nil {
		c.t.Fatal(err)
	}
}

// portOf is the port the named backend's Service exposes.
func (c *cluster) portOf(ns, name string) intstr.IntOrString {
	svc, err := c.lister().Services(ns).Get(name)
	if err != nil {
		c.t.Fatalf("no service %s/%s: %v", ns, name, err)
	}
	return intstr.FromInt32(svc.Spec.Ports[0].Port)
}

// gateway is the proxy under test behind both of its listeners.
type gateway struct {
	proxy           *Proxy
	public, private *httptest.Server
}

func newGateway(t *testing.T, c *cluster, ings ...*v1alpha1.Ingress) *gateway {
	t.Helper()
	p := newProxy(resolver{services: c.lister()}.resolve, c.dial, slog.New(slog.NewTextHandler(io.Discard, nil)))
	g := &gateway{proxy: p}
	var all []*compiled
	for _, ing := range ings {
		cp, err := compile(ing)
		if err != nil {
			t.Fatalf("compile %s: %v", ing.Name, err)
		}
		all = append(all, cp)
	}
	table, _ := buildTable(all)
	p.setTable(table)
	start := func(l Listener) *httptest.Server {
		s := httptest.NewUnstartedServer(nil)
		s.Config = newServer("", p.handler(l))
		s.Start()
		t.Cleanup(s.Close)
		return s
	}
	g.public, g.private = start(Public), start(Private)
	return g
}

// get sends a request with the given Host through a listener and decodes what the backend saw.
func get(t *testing.T, srv *httptest.Server, host, path string, hdr map[string]string) (int, seen, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var s seen
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("backend answer %q: %v", body, err)
		}
	}
	for k, v := range resp.Header {
		if k == header.HashKey {
			s.Header = http.Header{k: v}
		}
	}
	return resp.StatusCode, s, string(body)
}

func to(ns, name string, port intstr.IntOrString, percent int, headers map[string]string) v1alpha1.IngressBackendSplit {
	return v1alpha1.IngressBackendSplit{
		IngressBackend: v1alpha1.IngressBackend{ServiceNamespace: ns, ServiceName: name, ServicePort: port},
		Percent:        percent,
		AppendHeaders:  headers,
	}
}

func ingressOf(name string, created time.Time, rules ...v1alpha1.IngressRule) *v1alpha1.Ingress {
	return &v1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: name, Generation: 1,
			CreationTimestamp: metav1.NewTime(created),
			Annotations:       map[string]string{networking.IngressClassAnnotationKey: DefaultClass},
		},
		Spec: v1alpha1.IngressSpec{Rules: rules},
	}
}

func rule(vis v1alpha1.IngressVisibility, hosts []string, paths ...v1alpha1.HTTPIngressPath) v1alpha1.IngressRule {
	return v1alpha1.IngressRule{Hosts: hosts, Visibility: vis, HTTP: &v1alpha1.HTTPIngressRuleValue{Paths: paths}}
}

// TestRouting covers host, path-prefix and header matching, visibility, appended headers,
// host rewriting and Knative's probe hash, through both real listeners to real backends.
func TestRouting(t *testing.T) {
	c := newCluster(t)
	for _, b := range []string{"hello-00001", "foo", "bar", "tagged", "local"} {
		c.backend("ns", b, false)
	}
	c.backend("ns", "grpc", true)
	port := func(n string) intstr.IntOrString { return c.portOf("ns", n) }
	now := time.Now()

	hello := ingressOf("hello", now,
		rule(v1alpha1.IngressVisibilityExternalIP, []string{"hello.ns.example.com"},
			v1alpha1.HTTPIngressPath{
				Headers:       map[string]v1alpha1.HeaderMatch{header.RouteTagKey: {Exact: "canary"}},
				AppendHeaders: map[string]string{"Which": "tagged"},
				Splits:        []v1alpha1.IngressBackendSplit{to("ns", "tagged", port("tagged"), 100, nil)},
			},
			v1alpha1.HTTPIngressPath{
				Path:   "/foo",
				Splits: []v1alpha1.IngressBackendSplit{to("ns", "foo", port("foo"), 100, map[string]string{"Which": "foo-split"})},
			},
			v1alpha1.HTTPIngressPath{
				Path:          "/bar",
				RewriteHost:   "bar.internal.example",
				AppendHeaders: map[string]string{"Which": "bar-path"},
				Splits:        []v1alpha1.IngressBackendSplit{to("ns", "bar", port("bar"), 100, map[string]string{"Which": "bar-split", "Split-Only": "yes"})},
			},
			v1alpha1.HTTPIngressPath{
				AppendHeaders: map[string]string{
					"Knative-Serving-Namespace": "ns", "Knative-Serving-Revision": "hello-00001",
				},
				Splits: []v1alpha1.IngressBackendSplit{to("ns", "hello-00001", port("hello-00001"), 100, nil)},
			}),
		rule(v1alpha1.IngressVisibilityClusterLocal, []string{"hello.ns.svc.cluster.local"},
			v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "local", port("local"), 100, nil)}}),
	)
	grpc := ingressOf("grpc", now, rule(v1alpha1.IngressVisibilityExternalIP, []string{"grpc.ns.example.com"},
		v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "grpc", port("grpc"), 100, nil)}}))
	missing := ingressOf("missing", now, rule(v1alpha1.IngressVisibilityExternalIP, []string{"missing.ns.example.com"},
		v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "gone", intstr.FromInt(80), 100, nil)}}))
	g := newGateway(t, c, hello, grpc, missing)
	hash, err := ingress.ComputeHash(hello)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		private    bool
		host, path string
		header     map[string]string
		code       int
		backend    string
		wantHost   string
		wantHeader map[string]string
		wantProto  int
		wantBody   string
	}{
		{name: "external host", host: "hello.ns.example.com", code: 200, backend: "hello-00001",
			wantHost: "hello.ns.example.com", wantProto: 1,
			wantHeader: map[string]string{"Knative-Serving-Revision": "hello-00001", "Knative-Serving-Namespace": "ns", "X-Forwarded-Proto": "http"}},
		{name: "host with port and upper case", host: "Hello.NS.example.com:80", code: 200, backend: "hello-00001"},
		{name: "unknown host", host: "nope.ns.example.com", code: 404, wantBody: `no route for host "nope.ns.example.com"`},
		{name: "path prefix", host: "hello.ns.example.com", path: "/foo/x", code: 200, backend: "foo",
			wantHeader: map[string]string{"Which": "foo-split"}},
		{name: "path prefix is a string prefix, as in Envoy", host: "hello.ns.example.com", path: "/foobar", code: 200, backend: "foo"},
		{name: "other path falls through to the catch-all", host: "hello.ns.example.com", path: "/baz", code: 200, backend: "hello-00001"},
		{name: "appended headers replace the client's, path level over split level", host: "hello.ns.example.com", path: "/bar",
			header: map[string]string{"Which": "client", "Split-Only": "client"}, code: 200, backend: "bar",
			wantHost: "bar.internal.example", wantHeader: map[string]string{"Which": "bar-path", "Split-Only": "yes", "X-Forwarded-Host": "hello.ns.example.com"}},
		{name: "header match", host: "hello.ns.example.com", path: "/foo", header: map[string]string{header.RouteTagKey: "canary"},
			code: 200, backend: "tagged", wantHeader: map[string]string{"Which": "tagged"}},
		{name: "header mismatch", host: "hello.ns.example.com", header: map[string]string{header.RouteTagKey: "other"}, code: 200, backend: "hello-00001"},
		{name: "cluster-local host not on the public listener", host: "hello.ns.svc.cluster.local", code: 404},
		{name: "cluster-local short name not on the public listener", host: "hello.ns", code: 404},
		{name: "cluster-local fqdn on the private listener", private: true, host: "hello.ns.svc.cluster.local", code: 200, backend: "local"},
		{name: "cluster-local name.ns.svc on the private listener", private: true, host: "hello.ns.svc", code: 200, backend: "local"},
		{name: "cluster-local name.ns on the private listener", private: true, host: "hello.ns", code: 200, backend: "local"},
		{name: "external host on the private listener too", private: true, host: "hello.ns.example.com", code: 200, backend: "hello-00001"},
		{name: "h2c backend gets HTTP/2 from an HTTP/1.1 client", host: "grpc.ns.example.com", code: 200, backend: "grpc", wantProto: 2},
		{name: "probe with override gets this spec's hash", host: "hello.ns.example.com",
			header: map[string]string{header.ProbeKey: header.ProbeValue, header.HashKey: header.HashValueOverride},
			code:   200, wantHeader: map[string]string{header.HashKey: hex.EncodeToString(hash[:])}},
		{name: "missing service is a clear 503", host: "missing.ns.example.com", code: 503, wantBody: "service ns/gone does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := g.public
			if tt.private {
				srv = g.private
			}
			code, s, body := get(t, srv, tt.host, tt.path, tt.header)
			if code != tt.code {
				t.Fatalf("status = %d, want %d (body %q)", code, tt.code, body)
			}
			if tt.backend != "" && s.Backend != tt.backend {
				t.Errorf("backend = %q, want %q", s.Backend, tt.backend)
			}
			if tt.wantHost != "" && s.Host != tt.wantHost {
				t.Errorf("backend saw Host %q, want %q", s.Host, tt.wantHost)
			}
			if tt.wantProto != 0 && s.Proto != tt.wantProto {
				t.Errorf("backend saw HTTP/%d, want HTTP/%d", s.Proto, tt.wantProto)
			}
			for k, v := range tt.wantHeader {
				if got := s.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.wantBody != "" && !strings.Contains(body, tt.wantBody) {
				t.Errorf("body %q does not say %q", body, tt.wantBody)
			}
		})
	}
}

// TestPublicRouteUnderTheClusterDomain: with no domain configured Knative names a public Route's
// ExternalIP rule and its ClusterLocal rule with the same host (name.ns.svc.cluster.local), the
// ClusterLocal rule first. The public listener serves the ExternalIP rule; a Route that is
// cluster-local (networking.knative.dev/visibility) has no ExternalIP rule and stays private.
func TestPublicRouteUnderTheClusterDomain(t *testing.T) {
	c := newCluster(t)
	c.backend("ns", "door", false)
	c.backend("ns", "skill", false)
	paths := func(n string) v1alpha1.HTTPIngressPath {
		return v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", n, c.portOf("ns", n), 100, nil)}}
	}
	door := ingressOf("door", time.Now(),
		rule(v1alpha1.IngressVisibilityClusterLocal, []string{"door.ns.svc.cluster.local"}, paths("door")),
		rule(v1alpha1.IngressVisibilityExternalIP, []string{"door.ns.svc.cluster.local"}, paths("door")))
	skill := ingressOf("skill", time.Now(),
		rule(v1alpha1.IngressVisibilityClusterLocal, []string{"skill.ns.svc.cluster.local"}, paths("skill")))
	g := newGateway(t, c, door, skill)
	for _, tt := range []struct {
		srv  *httptest.Server
		host string
		code int
	}{ // (both rules' hosts are expanded to their short names, as every rule's are)
		{g.public, "door.ns.svc.cluster.local", 200},
		{g.private, "door.ns.svc.cluster.local", 200},
		{g.public, "skill.ns.svc.cluster.local", 404},
		{g.private, "skill.ns.svc.cluster.local", 200},
	} {
		if code, _, body := get(t, tt.srv, tt.host, "/", nil); code != tt.code {
			t.Errorf("%s (public listener: %v): status = %d, want %d (%q)", tt.host, tt.srv == g.public, code, tt.code, body)
		}
	}
}

// TestRulesNamingOneHostShareIt: as Kourier does (addOrAppendVirtualHost), a host named by
// several rules of one Ingress gets all their paths, in rule order, on each listener that
// takes those rules; the first rule does not hide the paths of the later ones.
func TestRulesNamingOneHostShareIt(t *testing.T) {
	c := newCluster(t)
	c.backend("ns", "a", false)
	c.backend("ns", "b", false)
	c.backend("ns", "local", false)
	path := func(prefix, n string) v1alpha1.HTTPIngressPath {
		return v1alpha1.HTTPIngressPath{Path: prefix, Splits: []v1alpha1.IngressBackendSplit{to("ns", n, c.portOf("ns", n), 100, nil)}}
	}
	shared := ingressOf("shared", time.Now(),
		rule(v1alpha1.IngressVisibilityExternalIP, []string{"shared.ns.example.com"}, path("/a", "a")),
		rule(v1alpha1.IngressVisibilityClusterLocal, []string{"shared.ns.example.com"}, path("/local", "local")),
		rule(v1alpha1.IngressVisibilityExternalIP, []string{"shared.ns.example.com"}, path("/b", "b")))
	g := newGateway(t, c, shared)
	for _, tt := range []struct {
		srv     *httptest.Server
		path    string
		code    int
		backend string
	}{
		{g.public, "/a", 200, "a"},
		{g.public, "/b", 200, "b"},
		{g.public, "/local", 404, ""},
		{g.private, "/a", 200, "a"},
		{g.private, "/local", 200, "local"},
		{g.private, "/b", 200, "b"},
	} {
		code, s, body := get(t, tt.srv, "shared.ns.example.com", tt.path, nil)
		if code != tt.code || (code == 200 && s.Backend != tt.backend) {
			t.Errorf("%s (public listener: %v): status %d from %q, want %d from %q (%q)",
				tt.path, tt.srv == g.public, code, s.Backend, tt.code, tt.backend, body)
		}
	}
}

// TestSplitWeights checks the traffic share of weighted splits stays near the percentages
// (bounds of several standard deviations, so the test does not flake) and 0% gets nothing.
func TestSplitWeights(t *testing.T) {
	c := newCluster(t)
	weights := map[string]int{"a": 10, "b": 30, "c": 60, "zero": 0}
	var splits []v1alpha1.IngressBackendSplit
	for _, name := range []string{"a", "b", "c", "zero"} {
		c.backend("ns", name, false)
		splits = append(splits, to("ns", name, c.portOf("ns", name), weights[name], map[string]string{"Split": name}))
	}
	g := newGateway(t, c, ingressOf("split", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP,
		[]string{"split.ns.example.com"}, v1alpha1.HTTPIngressPath{Splits: splits})))

	const n = 2000
	counts := map[string]int{}
	for range n {
		code, s, body := get(t, g.public, "split.ns.example.com", "/", nil)
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		if s.Header.Get("Split") != s.Backend {
			t.Fatalf("backend %q got split header %q", s.Backend, s.Header.Get("Split"))
		}
		counts[s.Backend]++
	}
	for name, w := range weights {
		got := 100 * float64(counts[name]) / n
		p := float64(w) / 100
		bound := 100 * 6 * math.Sqrt(p*(1-p)/n) // six standard deviations
		if w == 0 && counts[name] > 0 {
			t.Errorf("split %q at 0%% got %d requests", name, counts[name])
		}
		if math.Abs(got-float64(w)) > bound+0.01 {
			t.Errorf("split %q got %.1f%%, want %d%% ± %.1f", name, got, w, bound)
		}
	}
}

// TestHostConflict: a host claimed by two Ingresses stays with the older one.
func TestHostConflict(t *testing.T) {
	c := newCluster(t)
	c.backend("ns", "old", false)
	c.backend("ns", "new", false)
	host := []string{"same.ns.example.com"}
	old := ingressOf("old", time.Now().Add(-time.Hour), rule(v1alpha1.IngressVisibilityExternalIP, host,
		v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "old", c.portOf("ns", "old"), 100, nil)}}))
	newer := ingressOf("new", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP, host,
		v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "new", c.portOf("ns", "new"), 100, nil)}}))
	for _, order := range [][]*v1alpha1.Ingress{{old, newer}, {newer, old}} {
		var all []*compiled
		for _, ing := range order {
			cp, err := compile(ing)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, cp)
		}
		// The controller sorts by age before building; do the same here.
		if all[0].created.After(all[1].created) {
			all[0], all[1] = all[1], all[0]
		}
		table, conflicts := buildTable(all)
		g := newGateway(t, c)
		g.proxy.setTable(table)
		if _, s, _ := get(t, g.public, "same.ns.example.com", "/", nil); s.Backend != "old" {
			t.Errorf("host went to %q, want the older ingress's backend", s.Backend)
		}
		if len(conflicts) != 1 || conflicts[0].loser.Name != "new" {
			t.Errorf("conflicts = %+v, want one naming the newer ingress", conflicts)
		}
	}
}

// TestStreaming: the proxy hands each chunk to the client as the backend flushes it, while
// the backend is still writing (FlushInterval -1), so streams and long polls work.
func TestStreaming(t *testing.T) {
	c := newCluster(t)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second\n")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	c.addService("ns", "stream", srv.Listener.Addr(), false)
	g := newGateway(t, c, ingressOf("stream", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP,
		[]string{"stream.ns.example.com"},
		v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "stream", c.portOf("ns", "stream"), 100, nil)}})))

	req, _ := http.NewRequest(http.MethodGet, g.public.URL, nil)
	req.Host = "stream.ns.example.com"
	resp, err := g.public.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first chunk = %q, %v (not flushed before the backend finished?)", line, err)
	}
	close(release)
	if line, err := r.ReadString('\n'); err != nil || line != "second\n" {
		t.Fatalf("second chunk = %q, %v", line, err)
	}
}

// TestUpgrade: an HTTP/1.1 Upgrade (websocket's handshake) is tunnelled both ways.
func TestUpgrade(t *testing.T) {
	c := newCluster(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = buf.Flush()
		line, _ := buf.ReadString('\n')
		_, _ = buf.WriteString("echo: " + line)
		_ = buf.Flush()
	}))
	t.Cleanup(srv.Close)
	c.addService("ns", "ws", srv.Listener.Addr(), false)
	g := newGateway(t, c, ingressOf("ws", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP,
		[]string{"ws.ns.example.com"},
		v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "ws", c.portOf("ns", "ws"), 100, nil)}})))

	req, _ := http.NewRequest(http.MethodGet, g.public.URL, nil)
	req.Host = "ws.ns.example.com"
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := g.public.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, want 101: %s", resp.StatusCode, b)
	}
	rw := resp.Body.(io.ReadWriter)
	if _, err := io.WriteString(rw, "ping\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(rw).ReadString('\n')
	if err != nil || line != "echo: ping\n" {
		t.Fatalf("tunnel answered %q, %v", line, err)
	}
}

// TestH2CInbound: a client speaking h2c with prior knowledge (gRPC's way) is served.
func TestH2CInbound(t *testing.T) {
	c := newCluster(t)
	c.backend("ns", "grpc", true)
	g := newGateway(t, c, ingressOf("grpc", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP,
		[]string{"grpc.ns.example.com"},
		v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "grpc", c.portOf("ns", "grpc"), 100, nil)}})))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	req, _ := http.NewRequest(http.MethodGet, g.public.URL, nil)
	req.Host = "grpc.ns.example.com"
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s seen
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 || s.Proto != 2 || s.Backend != "grpc" {
		t.Fatalf("client got HTTP/%d, backend %q saw HTTP/%d; want HTTP/2 end to end", resp.ProtoMajor, s.Backend, s.Proto)
	}
}

// TestCompileErrors: an Ingress that cannot be served says why.
func TestCompileErrors(t *testing.T) {
	ok := v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "a", intstr.FromInt(80), 100, nil)}}
	tests := []struct {
		name string
		ing  *v1alpha1.Ingress
		want string
	}{
		{"no http block", ingressOf("x", time.Now(), v1alpha1.IngressRule{Hosts: []string{"a.example.com"}}), "missing HTTP block"},
		{"no hosts", ingressOf("x", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP, nil, ok)), "hosts is empty"},
		{"no paths", ingressOf("x", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP, []string{"a.example.com"})), "paths is empty"},
		{"no splits", ingressOf("x", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP, []string{"a.example.com"}, v1alpha1.HTTPIngressPath{})), "no splits"},
		{"relative path", ingressOf("x", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP, []string{"a.example.com"},
			v1alpha1.HTTPIngressPath{Path: "foo", Splits: ok.Splits})), `path "foo" does not start with /`},
		{"split without service", ingressOf("x", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP, []string{"a.example.com"},
			v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{{Percent: 100}}})), "names no service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compile(tt.ing)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("compile error = %v, want one saying %q", err, tt.want)
			}
		})
	}
}

// TestResolve: Service shapes map to the address and protocol Kourier would use.
func TestResolve(t *testing.T) {
	c := newCluster(t)
	add := func(svc *corev1.Service) {
		if err := c.services.Add(svc); err != nil {
			t.Fatal(err)
		}
	}
	add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ext"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "kingress-private.knative-serving.svc.cluster.local",
			Ports: []corev1.ServicePort{{Name: networking.ServicePortNameH2C, Port: 80}}}})
	add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "rev"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{
			{Name: networking.ServicePortNameHTTP1, Port: 80}, {Name: networking.ServicePortNameH2C, Port: 81}}}})
	r := resolver{services: c.lister()}
	tests := []struct {
		name    string
		svc     string
		port    intstr.IntOrString
		addr    string
		h2c     bool
		wantErr string
	}{
		{"cluster ip http1", "rev", intstr.FromInt(80), "10.96.0.10:80", false, ""},
		{"cluster ip h2c port", "rev", intstr.FromInt(81), "10.96.0.10:81", true, ""},
		{"port by name", "rev", intstr.FromString(networking.ServicePortNameH2C), "10.96.0.10:81", true, ""},
		{"external name", "ext", intstr.FromInt(80), "kingress-private.knative-serving.svc.cluster.local:80", true, ""},
		{"unknown port", "rev", intstr.FromInt(9999), "", false, "has no port 9999"},
		{"unknown service", "nope", intstr.FromInt(80), "", false, "service ns/nope does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.resolve(v1alpha1.IngressBackend{ServiceNamespace: "ns", ServiceName: tt.svc, ServicePort: tt.port})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.addr != tt.addr || got.h2c != tt.h2c {
				t.Fatalf("resolve = %+v, %v; want addr %s h2c %v", got, err, tt.addr, tt.h2c)
			}
		})
	}
}

// A refused connection is retried until the backend listens (kube-proxy not yet programmed).
func TestDialRetriesConnectFailuresUntilTheBackendListens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: dials are refused
	var attempts atomic.Int32
	started := make(chan net.Listener, 1)
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		if attempts.Add(1) == 3 {
			l, err := net.Listen("tcp", addr) // the backend comes up before the third try
			if err != nil {
				return nil, err
			}
			started <- l
		}
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}
	conn, err := retryConnectFailures(dial, 5*time.Second)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial failed after %d attempts: %v", attempts.Load(), err)
	}
	conn.Close()
	(<-started).Close()
	if got := attempts.Load(); got != 3 {
		t.Fatalf("attempts = %d, want 3", got)
	}

	// Not a connect failure: no retry.
	attempts.Store(0)
	bad := func(ctx context.Context, network, a string) (net.Conn, error) {
		attempts.Add(1)
		return nil, errors.New("tls: handshake failure")
	}
	if _, err := retryConnectFailures(bad, 5*time.Second)(context.Background(), "tcp", addr); err == nil || attempts.Load() != 1 {
		t.Fatalf("err=%v attempts=%d, want one failed attempt", err, attempts.Load())
	}
}
