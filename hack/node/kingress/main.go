// Command kingress is a small Knative KIngress implementation for Rouse's one-node test
// cluster, where no Envoy-based ingress (Kourier, Contour, Istio) can be built. It watches
// networking.internal.knative.dev Ingresses of its class, routes HTTP/1.1 and h2c by host,
// path prefix and headers to weighted splits (appending headers) with an in-process
// reverse proxy, and marks each Ingress Ready once its routes are live.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	netclientset "knative.dev/networking/pkg/client/clientset/versioned"
	netinformers "knative.dev/networking/pkg/client/informers/externalversions"
	"knative.dev/pkg/network"
)

// DefaultClass is the value of networking.knative.dev/ingress.class this controller serves;
// config-network's ingress-class names it.
const DefaultClass = "rouse.ingress.networking.knative.dev"

type options struct {
	kubeconfig     string
	class          string
	namespace      string
	publicService  string
	privateService string
	publicAddr     string
	privateAddr    string
	healthAddr     string
	resync         time.Duration
}

func parseFlags(args []string) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("kingress", flag.ContinueOnError)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means in-cluster config")
	fs.StringVar(&o.class, "ingress-class", DefaultClass, "the networking.knative.dev/ingress.class annotation value to serve")
	fs.StringVar(&o.namespace, "namespace", envOr("SYSTEM_NAMESPACE", "knative-serving"), "namespace of the proxy's Services")
	fs.StringVar(&o.publicService, "public-service", "kingress", "Service in front of the public listener (ExternalIP rules)")
	fs.StringVar(&o.privateService, "private-service", "kingress-private", "Service in front of the private listener (all rules)")
	fs.StringVar(&o.publicAddr, "public-addr", ":8080", "listen address of the public listener")
	fs.StringVar(&o.privateAddr, "private-addr", ":8081", "listen address of the private listener")
	fs.StringVar(&o.healthAddr, "health-addr", ":8090", "listen address of /healthz and /readyz")
	fs.DurationVar(&o.resync, "resync", 10*time.Hour, "informer resync period")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.class == "" || o.namespace == "" || o.publicService == "" || o.privateService == "" {
		return o, errors.New("--ingress-class, --namespace, --public-service and --private-service must not be empty")
	}
	return o, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// loadBalancers is what each Ingress's status names as the address serving it: the DNS
// names of the proxy's Services. Knative's route reconciler points the placeholder
// (ExternalName) Service of a route at the private one.
func loadBalancers(o options) (public, private []v1alpha1.LoadBalancerIngressStatus) {
	public = []v1alpha1.LoadBalancerIngressStatus{{DomainInternal: network.GetServiceHostname(o.publicService, o.namespace)}}
	private = []v1alpha1.LoadBalancerIngressStatus{{DomainInternal: network.GetServiceHostname(o.privateService, o.namespace)}}
	return public, private
}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		log.Error("bad arguments", "error", err.Error())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("kingress stopped", "error", err.Error())
		os.Exit(1)
	}
}

// restConfig is the in-cluster config, or the kubeconfig file when one is given.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading --kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no in-cluster config (%w); outside a pod pass --kubeconfig", err)
	}
	return cfg, nil
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "kingress"
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	netc, err := netclientset.NewForConfig(cfg)
	if err != nil {
		return err
	}

	kubeInf := informers.NewSharedInformerFactory(kube, o.resync)
	netInf := netinformers.NewSharedInformerFactory(netc, o.resync)
	services := kubeInf.Core().V1().Services()
	ingresses := netInf.Networking().V1alpha1().Ingresses()

	proxy := newProxy(resolver{services: services.Lister()}.resolve, nil, log)
	public, private := loadBalancers(o)
	c := &Controller{
		client:    netc,
		ingresses: ingresses.Lister(),
		class:     o.class,
		public:    public,
		private:   private,
		proxy:     proxy,
		queue: workqueue.NewTypedRateLimitingQueue(
			workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName]()),
		compiled: map[types.NamespacedName]*compiled{},
		log:      log,
	}
	if _, err := ingresses.Informer().AddEventHandler(c.handlers()); err != nil {
		return err
	}

	health := http.NewServeMux()
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	health.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !c.ready.Load() {
			http.Error(w, "routing table not primed yet (waiting for the Ingress and Service caches)", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	servers := []*http.Server{
		newServer(o.publicAddr, proxy.handler(Public)),
		newServer(o.privateAddr, proxy.handler(Private)),
		{Addr: o.healthAddr, Handler: health, ReadHeaderTimeout: 10 * time.Second},
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if err := s.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("listener %s: %w", s.Addr, err)
			}
		}()
	}
	log.Info("kingress starting", "class", o.class, "public", o.publicAddr, "private", o.privateAddr,
		"health", o.healthAddr, "publicLB", public[0].DomainInternal, "privateLB", private[0].DomainInternal)

	kubeInf.Start(ctx.Done())
	netInf.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), services.Informer().HasSynced, ingresses.Informer().HasSynced) {
		return errors.New("caches did not sync (can the ServiceAccount list/watch services and ingresses.networking.internal.knative.dev?)")
	}
	if err := c.prime(); err != nil {
		return err
	}
	go c.run(ctx)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
	return err
}
