package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"knative.dev/networking/pkg/apis/networking"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	netclientset "knative.dev/networking/pkg/client/clientset/versioned"
	"knative.dev/networking/pkg/http/probe"
	"knative.dev/pkg/apis"
)

// TestController runs kingress against a real kube-apiserver with Knative's Ingress CRD,
// as a user holding only config.yaml's ClusterRole: Ingresses of its class become Ready with
// both load balancers and route; others are left alone; a spec change is served and
// observed; a broken spec gets a False condition that says why; a deleted one stops routing.
func TestController(t *testing.T) {
	a := startAPIServer(t)
	admin := a.config(t, "admin", "system:masters")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	applyYAML(t, admin, filepath.Join(moduleDir(t, "knative.dev/networking"), "config", "ingress.yaml"))
	kube := kubernetes.NewForConfigOrDie(admin)
	nc := netclientset.NewForConfigOrDie(admin)
	// All of config.yaml goes in, into a namespace enforcing Pod Security "restricted":
	// the API server accepts every object and warns about none.
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "knative-serving", Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	warned := &warnings{}
	strict := rest.CopyConfig(admin)
	strict.WarningHandler = warned
	applyYAML(t, strict, "config.yaml")
	if len(warned.texts) > 0 {
		t.Errorf("the API server warned about config.yaml: %q", warned.texts)
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kingress-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "rouse-kingress"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "kingress-test"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the Ingress CRD to be served", func() bool {
		_, err := nc.NetworkingV1alpha1().Ingresses("ns").List(ctx, metav1.ListOptions{})
		return err == nil
	})

	// Two real backends behind ExternalName Services to localhost.
	backend := func(name string) {
		srv := httptest.NewServer(probe.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(seen{Backend: name, Host: r.Host, Header: r.Header})
		})))
		t.Cleanup(srv.Close)
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		if _, err := kube.CoreV1().Services("ns").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
				Ports: []corev1.ServicePort{{Name: "http", Port: int32(port)}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	backend("blue")
	backend("green")
	portOf := func(name string) intstr.IntOrString {
		svc, err := kube.CoreV1().Services("ns").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return intstr.FromInt32(svc.Spec.Ports[0].Port)
	}
	spec := func(host, svc string) v1alpha1.IngressSpec {
		return v1alpha1.IngressSpec{Rules: []v1alpha1.IngressRule{rule(v1alpha1.IngressVisibilityExternalIP, []string{host},
			v1alpha1.HTTPIngressPath{Splits: []v1alpha1.IngressBackendSplit{to("ns", svc, portOf(svc), 100, nil)}})}}
	}
	create := func(name, class string, s v1alpha1.IngressSpec) {
		ing := &v1alpha1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
			Annotations: map[string]string{networking.IngressClassAnnotationKey: class}}, Spec: s}
		if _, err := nc.NetworkingV1alpha1().Ingresses("ns").Create(ctx, ing, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating ingress %s: %v", name, err)
		}
	}
	get := func(name string) *v1alpha1.Ingress {
		ing, err := nc.NetworkingV1alpha1().Ingresses("ns").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ing
	}

	// An Ingress of another class exists before kingress starts and one of ours is there too.
	create("foreign", "kourier.ingress.networking.knative.dev", spec("foreign.ns.example.com", "blue"))
	create("app", DefaultClass, spec("app.ns.example.com", "blue"))

	o, err := parseFlags([]string{
		"--kubeconfig=" + a.kubeconfig(t, a.config(t, "kingress-test", "")),
		"--public-addr=127.0.0.1:" + strconv.Itoa(freePort(t)),
		"--private-addr=127.0.0.1:" + strconv.Itoa(freePort(t)),
		"--health-addr=127.0.0.1:" + strconv.Itoa(freePort(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v", err)
		}
	}()

	status := func(path string) int {
		resp, err := http.Get("http://" + o.healthAddr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, 30*time.Second, "/readyz", func() bool { return status("/readyz") == http.StatusOK })
	route := func(host string) (int, string) {
		code, s, _ := get200(t, "http://"+o.publicAddr, host)
		return code, s
	}

	ready := func(name string, generation int64) bool {
		ing := get(name)
		return ing.Status.ObservedGeneration == generation && ing.IsReady()
	}
	waitFor(t, 30*time.Second, "ingress app Ready", func() bool { return ready("app", 1) })
	app := get("app")
	if lb := app.Status.PublicLoadBalancer; lb == nil || len(lb.Ingress) != 1 || lb.Ingress[0].DomainInternal != "kingress.knative-serving.svc.cluster.local" {
		t.Errorf("publicLoadBalancer = %+v", lb)
	}
	if lb := app.Status.PrivateLoadBalancer; lb == nil || len(lb.Ingress) != 1 || lb.Ingress[0].DomainInternal != "kingress-private.knative-serving.svc.cluster.local" {
		t.Errorf("privateLoadBalancer = %+v", lb)
	}
	for _, c := range []apis.ConditionType{v1alpha1.IngressConditionNetworkConfigured, v1alpha1.IngressConditionLoadBalancerReady} {
		if !app.Status.GetCondition(c).IsTrue() {
			t.Errorf("condition %s = %+v, want True", c, app.Status.GetCondition(c))
		}
	}
	if code, b := route("app.ns.example.com"); code != 200 || b != "blue" {
		t.Errorf("app routes to %d %q, want 200 blue", code, b)
	}
	// The foreign Ingress was queued before ours: by now it has been seen and left alone.
	if f := get("foreign"); len(f.Status.Conditions) != 0 || f.Status.ObservedGeneration != 0 {
		t.Errorf("ingress of another class got status %+v", f.Status)
	}
	if code, _ := route("foreign.ns.example.com"); code != http.StatusNotFound {
		t.Errorf("another class's host answered %d, want 404", code)
	}

	// A spec change: generation 2 is observed only once it is served.
	app.Spec = spec("app.ns.example.com", "green")
	if _, err := nc.NetworkingV1alpha1().Ingresses("ns").Update(ctx, app, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "ingress app generation 2 Ready", func() bool { return ready("app", 2) })
	if code, b := route("app.ns.example.com"); code != 200 || b != "green" {
		t.Errorf("after the update app routes to %d %q, want 200 green", code, b)
	}

	// A broken spec (a rule without http) is reported, not served.
	create("broken", DefaultClass, v1alpha1.IngressSpec{Rules: []v1alpha1.IngressRule{{Hosts: []string{"broken.ns.example.com"}}}})
	waitFor(t, 30*time.Second, "ingress broken to report its error", func() bool {
		c := get("broken").Status.GetCondition(v1alpha1.IngressConditionLoadBalancerReady)
		return c != nil && c.IsFalse()
	})
	if c := get("broken").Status.GetCondition(v1alpha1.IngressConditionLoadBalancerReady); c.Reason != "InvalidIngress" || c.Message == "" {
		t.Errorf("broken ingress condition = %+v, want reason InvalidIngress with a message", c)
	}

	// Deleting stops the routing.
	if err := nc.NetworkingV1alpha1().Ingresses("ns").Delete(ctx, "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the deleted ingress's host to stop routing", func() bool {
		code, _ := route("app.ns.example.com")
		return code == http.StatusNotFound
	})
}

// warnings records the API server's warnings (Pod Security admission reports through them).
type warnings struct{ texts []string }

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) { w.texts = append(w.texts, text) }

// get200 asks a listener for host and says which backend answered.
func get200(t *testing.T, url, host string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var s seen
	if resp.StatusCode == http.StatusOK {
		_ = json.Unmarshal(body, &s)
	}
	return resp.StatusCode, s.Backend, string(body)
}
