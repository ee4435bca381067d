package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/networking/pkg/ingress"
)

// Listener says which of the two proxy listeners a request came in on.
type Listener int

const (
	// Public serves rules with visibility ExternalIP only.
	Public Listener = iota
	// Private serves every rule, the way Kourier's internal gateway does: cluster-local
	// callers reach both cluster-local and external hosts through it.
	Private
)

func (l Listener) String() string {
	if l == Public {
		return "public"
	}
	return "private"
}

// split is one weighted backend of a route.
type split struct {
	backend v1alpha1.IngressBackend
	percent int
	headers map[string]string
}

// route is one compiled HTTPIngressPath: what to match and where to send it.
type route struct {
	ingress       types.NamespacedName
	prefix        string
	match         map[string]string // canonical header name -> exact value ("" = present)
	rewriteHost   string
	appendHeaders map[string]string
	splits        []split
	total         int
}

// vhost is one compiled rule for one host name.
type vhost struct {
	ingress types.NamespacedName
	routes  []*route
}

// compiled is an Ingress turned into host -> rule, ready to merge into a Table.
//
// Each listener has its own hosts, as Kourier's two gateways do: the private listener takes
// every rule, the public one the ExternalIP rules; a host named by several rules gets all their
// paths in rule order (Kourier's addOrAppendVirtualHost), so no rule hides another's.
type compiled struct {
	name    types.NamespacedName
	created time.Time // older Ingresses keep a host that newer ones also claim
	hash    string
	hosts   map[string]*vhost // host -> every rule naming it (the private listener)
	public  map[string]*vhost // host -> every ExternalIP rule naming it (the public listener)
}

// compile turns one Ingress into routes. It adds Knative's probe routes (ingress.InsertProbe):
// a request with "K-Network-Hash: override" gets the hash of this very spec appended, which
// the backend's probe handler echoes, so a prober can see which generation is being served.
func compile(ing *v1alpha1.Ingress) (*compiled, error) {
	name := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
	probed := ing.DeepCopy()
	hash, err := ingress.InsertProbe(probed)
	if err != nil {
		return nil, err
	}
	out := &compiled{
		name: name, created: ing.CreationTimestamp.Time, hash: hash,
		hosts: map[string]*vhost{}, public: map[string]*vhost{},
	}
	for i, rule := range probed.Spec.Rules {
		if len(rule.HTTP.Paths) == 0 {
			return nil, fmt.Errorf("spec.rules[%d].http.paths is empty", i)
		}
		vh := &vhost{ingress: name}
		public := rule.Visibility != v1alpha1.IngressVisibilityClusterLocal
		for j, p := range rule.HTTP.Paths {
			r, err := compilePath(name, p)
			if err != nil {
				return nil, fmt.Errorf("spec.rules[%d].http.paths[%d]: %w", i, j, err)
			}
			vh.routes = append(vh.routes, r)
		}
		if len(rule.Hosts) == 0 {
			return nil, fmt.Errorf("spec.rules[%d].hosts is empty", i)
		}
		for _, h := range sets.List(ingress.ExpandedHosts(sets.New(rule.Hosts...))) {
			h = strings.ToLower(h)
			out.hosts[h] = out.hosts[h].with(vh)
			if public {
				out.public[h] = out.public[h].with(vh)
			}
		}
	}
	return out, nil
}

// with is a host's rule with another rule naming the same host appended: its paths come
// after the ones already there, as Kourier appends the routes of each rule to a host's
// virtual host. A new vhost, since one rule's vhost is shared by all the hosts it names.
func (vh *vhost) with(next *vhost) *vhost {
	if vh == nil {
		return next
	}
	return &vhost{ingress: vh.ingress, routes: slices.Concat(vh.routes, next.routes)}
}

func compilePath(name types.NamespacedName, p v1alpha1.HTTPIngressPath) (*route, error) {
	prefix := p.Path
	if prefix == "" {
		prefix = "/"
	}
	if !strings.HasPrefix(prefix, "/") {
		return nil, fmt.Errorf("path %q does not start with /", p.Path)
	}
	r := &route{
		ingress:       name,
		prefix:        prefix,
		match:         make(map[string]string, len(p.Headers)),
		rewriteHost:   p.RewriteHost,
		appendHeaders: p.AppendHeaders,
	}
	for k, m := range p.Headers {
		r.match[http.CanonicalHeaderKey(k)] = m.Exact
	}
	if len(p.Splits) == 0 {
		return nil, errors.New("no splits")
	}
	for k, s := range p.Splits {
		if s.ServiceName == "" || s.ServiceNamespace == "" {
			return nil, fmt.Errorf("splits[%d] names no service (serviceName and serviceNamespace are required)", k)
		}
		if s.Percent < 0 {
			return nil, fmt.Errorf("splits[%d].percent is negative (%d)", k, s.Percent)
		}
		r.splits = append(r.splits, split{backend: s.IngressBackend, percent: s.Percent, headers: s.AppendHeaders})
		r.total += s.Percent
	}
	return r, nil
}

// matches says whether a request's path and headers satisfy the route.
func (r *route) matches(req *http.Request) bool {
	if !strings.HasPrefix(req.URL.Path, r.prefix) {
		return false
	}
	for k, want := range r.match {
		got, present := req.Header[k]
		if !present || (want != "" && (len(got) == 0 || got[0] != want)) {
			return false
		}
	}
	return true
}

// pick chooses a split by weight; n is a uniform random number in [0, 1).
// Splits with percent 0 get nothing unless every split has percent 0 (then all share equally).
func (r *route) pick(n float64) *split {
	if r.total == 0 {
		return &r.splits[int(n*float64(len(r.splits)))]
	}
	x := int(n * float64(r.total))
	for i := range r.splits {
		x -= r.splits[i].percent
		if x < 0 {
			return &r.splits[i]
		}
	}
	return &r.splits[len(r.splits)-1]
}

// Table is an immutable routing table for both listeners, swapped atomically as a whole.
type Table struct {
	hosts  map[string]*vhost // the private listener's
	public map[string]*vhost // the public listener's
}

// conflict is a host claimed by two Ingresses; the older one keeps it.
type conflict struct {
	host          string
	winner, loser types.NamespacedName
}

// buildTable merges compiled Ingresses, oldest first so that a newer Ingress cannot take
// over a host that an older one already serves.
func buildTable(all []*compiled) (*Table, []conflict) {
	t := &Table{hosts: map[string]*vhost{}, public: map[string]*vhost{}}
	var conflicts []conflict
	for _, c := range all {
		hosts := make([]string, 0, len(c.hosts))
		for h := range c.hosts {
			hosts = append(hosts, h)
		}
		slices.Sort(hosts)
		for _, h := range hosts {
			if prev, taken := t.hosts[h]; taken {
				conflicts = append(conflicts, conflict{host: h, winner: prev.ingress, loser: c.name})
				continue
			}
			t.hosts[h] = c.hosts[h]
			if vh, ok := c.public[h]; ok { // a public host is a host of the same Ingress
				t.public[h] = vh
			}
		}
	}
	return t, conflicts
}

// lookup finds the route for a request on a listener, or nil.
func (t *Table) lookup(l Listener, req *http.Request) *route {
	hosts := t.hosts
	if l == Public {
		hosts = t.public
	}
	vh := hosts[hostOnly(req.Host)]
	if vh == nil {
		return nil
	}
	for _, r := range vh.routes {
		if r.matches(req) {
			return r
		}
	}
	return nil
}

// hostOnly strips an optional port and a trailing dot and lowercases the host.
func hostOnly(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// shortHash is only for logs: a short form of a compiled Ingress's probe hash.
func (c *compiled) shortHash() string {
	if len(c.hash) < 12 {
		return c.hash
	}
	return c.hash[:12]
}
