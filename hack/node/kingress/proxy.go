package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"knative.dev/networking/pkg/apis/networking/v1alpha1"
)

// Proxy routes requests by the current Table. It sets no overall request or response
// timeout: a Knative revision may answer as late as its timeoutSeconds (up to
// max-revision-timeout-seconds) and may stream, so responses are flushed as they come.
type Proxy struct {
	table   atomic.Pointer[Table]
	resolve func(v1alpha1.IngressBackend) (target, error)
	h1, h2c *httputil.ReverseProxy
	log     *slog.Logger
}

type decisionKey struct{}

// decision is what the handler chose for one request, handed to the ReverseProxy's Rewrite.
type decision struct {
	route  *route
	split  *split
	target target
}

// dialFunc opens a connection to a resolved address; nil means a plain net.Dialer.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func newProxy(resolve func(v1alpha1.IngressBackend) (target, error), dial dialFunc, log *slog.Logger) *Proxy {
	p := &Proxy{resolve: resolve, log: log}
	p.table.Store(&Table{hosts: map[string]*vhost{}, public: map[string]*vhost{}})
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	h1 := &http.Transport{
		DialContext:         retryConnectFailures(dial, connectRetryWindow),
		MaxIdleConns:        1000,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // pass bodies through as they are
	}
	h2c := h1.Clone()
	h2c.Protocols = new(http.Protocols)
	h2c.Protocols.SetUnencryptedHTTP2(true) // prior knowledge, as Knative's queue-proxy and activator expect
	p.h1 = p.reverseProxy(h1)
	p.h2c = p.reverseProxy(h2c)
	return p
}

// connectRetryWindow bounds how long a refused or unroutable connection is retried.
const connectRetryWindow = 5 * time.Second

// retryConnectFailures retries a dial that failed before anything was sent (refused, no route):
// a Service or Endpoint the route table already names may not be programmed by kube-proxy yet,
// which on a loaded node takes seconds. Envoy's "connect-failure" retry is the same idea; a
// request is never sent twice, since no connection ever carried it.
func retryConnectFailures(dial dialFunc, window time.Duration) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		deadline := time.Now().Add(window)
		wait := 50 * time.Millisecond
		for {
			conn, err := dial(ctx, network, addr)
			if err == nil || !isConnectFailure(err) || time.Now().Add(wait).After(deadline) {
				return conn, err
			}
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(wait):
			}
			wait = min(wait*2, 500*time.Millisecond)
		}
	}
}

func isConnectFailure(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}

func (p *Proxy) reverseProxy(t http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:       rewrite,
		Transport:     t,
		FlushInterval: -1,
		ErrorHandler:  p.upstreamError,
		// Body-copy errors are mostly clients or upstreams closing mid-stream (gRPC cancels).
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelInfo),
	}
}

// setTable swaps in a new routing table; requests already matched keep their old route.
func (p *Proxy) setTable(t *Table) { p.table.Store(t) }

// handler serves one listener.
func (p *Proxy) handler(l Listener) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := p.table.Load().lookup(l, r)
		if rt == nil {
			http.Error(w, fmt.Sprintf("kingress: no route for host %q and path %q on the %s listener",
				r.Host, r.URL.Path, l), http.StatusNotFound)
			return
		}
		sp := rt.pick(rand.Float64())
		t, err := p.resolve(sp.backend)
		if err != nil {
			p.log.Warn("backend not resolvable", "listener", l.String(), "host", r.Host, "path", r.URL.Path,
				"ingress", rt.ingress.String(), "error", err.Error())
			http.Error(w, "kingress: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), decisionKey{}, &decision{route: rt, split: sp, target: t}))
		if t.h2c && !isUpgrade(r) {
			p.h2c.ServeHTTP(w, r)
			return
		}
		p.h1.ServeHTTP(w, r)
	})
}

// rewrite points the outgoing request at the chosen backend. The Host header is kept
// (Knative's activator and queue-proxy route by it) unless the path rewrites it; appended
// headers replace what the client sent, split-level first, then path-level (Envoy's order).
//
// chunkedUpstream: a request body goes to an HTTP/1.1 upstream chunked, never with the
// client's Content-Length. Go's transport, having sent Content-Length bytes, reads its
// request body once more to check its length; a Go server (Knative's activator and
// queue-proxy, kingress itself) closes a request's body when it starts to answer. With a
// Content-Length the upstream has the whole body, and may answer, before that last read, which
// then fails and makes the transport close the upstream connection mid-answer: a stream cut
// ("use of closed network connection" in the activator's log; on a loaded node, right after a
// cold start). Chunked, the body ends with its last chunk, which the transport writes only
// after reading the end of its own body, on every Go hop after this one.
func rewrite(pr *httputil.ProxyRequest) {
	d := pr.In.Context().Value(decisionKey{}).(*decision)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = d.target.addr
	if d.route.rewriteHost != "" {
		pr.Out.Host = d.route.rewriteHost
	}
	if pr.Out.Body != nil && pr.Out.ContentLength > 0 && !d.target.h2c {
		pr.Out.ContentLength = -1 // HTTP/1.1 upstream: chunked, see chunkedUpstream
	}
	if xff := pr.In.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		pr.Out.Header["X-Forwarded-For"] = slices.Clone(xff)
	}
	pr.SetXForwarded()
	for k, v := range d.split.headers {
		pr.Out.Header.Set(k, v)
	}
	for k, v := range d.route.appendHeaders {
		pr.Out.Header.Set(k, v)
	}
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	d := r.Context().Value(decisionKey{}).(*decision)
	svc := d.split.backend.ServiceNamespace + "/" + d.split.backend.ServiceName
	if errors.Is(err, context.Canceled) {
		p.log.Info("client went away", "host", r.Host, "path", r.URL.Path, "service", svc)
		return
	}
	p.log.Warn("upstream request failed", "host", r.Host, "path", r.URL.Path, "service", svc,
		"addr", d.target.addr, "h2c", d.target.h2c, "error", err.Error())
	http.Error(w, fmt.Sprintf("kingress: upstream %s (%s): %v", svc, d.target.addr, err), http.StatusBadGateway)
}

func isUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// newServer serves a handler over HTTP/1.1 and h2c (prior knowledge, as gRPC clients and
// Knative's components use). Only reading the request head is bounded in time.
func newServer(addr string, h http.Handler) *http.Server {
	s := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       5 * time.Minute,
		Protocols:         new(http.Protocols),
	}
	s.Protocols.SetHTTP1(true)
	s.Protocols.SetUnencryptedHTTP2(true)
	return s
}
