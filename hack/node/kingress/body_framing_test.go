package main

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"knative.dev/networking/pkg/apis/networking/v1alpha1"
)

// lateRead is the outgoing request body of a Go reverse proxy whose transport is slow to come
// back for its next read once it has sent the body: what a loaded node does to the activator's
// (and queue-proxy's) write loop. A read after data waits until the proxy has flushed the
// answer to its own client (or a while, when no answer can come before that read).
type lateRead struct {
	io.ReadCloser
	flushed <-chan struct{}
	sent    bool
}

func (b *lateRead) Read(p []byte) (int, error) {
	if b.sent {
		select {
		case <-b.flushed:
		case <-time.After(2 * time.Second):
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.sent = b.sent || n > 0
	return n, err
}

// flushWatch tells when the proxy first flushed its answer to its client: the moment Go's
// HTTP/1 server drains and closes the request body the proxy is still sending upstream.
type flushWatch struct {
	http.ResponseWriter
	once    sync.Once
	flushed chan struct{}
}

func (w *flushWatch) Flush() {
	w.ResponseWriter.(http.Flusher).Flush()
	w.once.Do(func() { close(w.flushed) })
}

// activatorLike is a stdlib reverse proxy, as Knative's activator and queue-proxy are, in
// front of target, with the slow write loop above.
func activatorLike(t *testing.T, target string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fw := &flushWatch{ResponseWriter: w, flushed: make(chan struct{})}
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				if pr.Out.Body != nil {
					pr.Out.Body = &lateRead{ReadCloser: pr.Out.Body, flushed: fw.flushed}
				}
			},
			Transport:     &http.Transport{},
			FlushInterval: -1,
		}
		rp.ServeHTTP(fw, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestStreamSurvivesAProxyBehindIt: a POST with a body, answered by a stream, through kingress
// and an activator-like proxy to a backend that reads the body and then streams. With the
// client's Content-Length kept, the backend has the whole body (and answers) while the
// activator's transport still means to read its request body once more to check its length;
// the answer makes the activator's server close that body, the read fails, and the transport
// tears the connection down mid-stream ("use of closed network connection" in the activator's
// log, seen on the node). Sent chunked, the body ends only when the transport has read its end,
// so no answer can come before that read.
func TestStreamSurvivesAProxyBehindIt(t *testing.T) {
	c := newCluster(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 5 {
			_, _ = io.WriteString(w, "event: chunk\ndata: "+string(body)+"\n\n")
			w.(http.Flusher).Flush()
			time.Sleep(time.Duration(i) * 20 * time.Millisecond)
		}
		_, _ = io.WriteString(w, "event: done\ndata: {}\n\n")
	}))
	t.Cleanup(backend.Close)
	c.addService("ns", "rev", activatorLike(t, backend.URL).Listener.Addr(), false)
	g := newGateway(t, c, ingressOf("rev", time.Now(), rule(v1alpha1.IngressVisibilityExternalIP,
		[]string{"rev.ns.example.com"},
		v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", "rev", c.portOf("ns", "rev"), 100, nil)}})))

	req, _ := http.NewRequest(http.MethodPost, g.public.URL, strings.NewReader(`{"question":"?"}`))
	req.Host = "rev.ns.example.com"
	resp, err := g.public.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []string
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if name, ok := strings.CutPrefix(lines.Text(), "event: "); ok {
			events = append(events, name)
		}
	}
	if err := lines.Err(); err != nil || len(events) != 6 || events[5] != "done" {
		t.Fatalf("stream cut: events %v, then %v", events, err)
	}
}
