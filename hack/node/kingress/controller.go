package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrs "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"knative.dev/networking/pkg/apis/networking"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	netclientset "knative.dev/networking/pkg/client/clientset/versioned"
	netlisters "knative.dev/networking/pkg/client/listers/networking/v1alpha1"
)

// Controller keeps the proxy's table equal to the Ingresses of its class and reports each
// one Ready once the table that serves its current generation is in place. The proxy runs
// in this very process, so swapping the table is the moment the new routes are live: no
// probing of remote gateways is needed, unlike Envoy-based implementations.
type Controller struct {
	client    netclientset.Interface
	ingresses netlisters.IngressLister
	class     string
	public    []v1alpha1.LoadBalancerIngressStatus
	private   []v1alpha1.LoadBalancerIngressStatus
	proxy     *Proxy
	queue     workqueue.TypedRateLimitingInterface[types.NamespacedName]
	compiled  map[types.NamespacedName]*compiled // only touched by the single worker
	ready     atomic.Bool
	log       *slog.Logger
}

// ownedBy says whether an Ingress carries this controller's class annotation.
func ownedBy(ing *v1alpha1.Ingress, class string) bool {
	return ing.Annotations[networking.IngressClassAnnotationKey] == class
}

// handlers enqueues every Ingress event; process decides whether the Ingress is ours, so an
// Ingress whose class changes away from ours is dropped from the table too.
func (c *Controller) handlers() cache.ResourceEventHandler {
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if m, err := metaOf(obj); err == nil {
			c.queue.Add(types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()})
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}
}

func metaOf(obj any) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("unexpected object %T", obj)
	}
	return m, nil
}

// prime compiles every Ingress of the class before serving, so that a restarted proxy
// serves the full table from its first request; then it reports ready.
func (c *Controller) prime() error {
	all, err := c.ingresses.List(labels.Everything())
	if err != nil {
		return err
	}
	for _, ing := range all {
		if !ownedBy(ing, c.class) {
			continue
		}
		if cp, err := compile(ing); err == nil {
			c.compiled[types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}] = cp
		}
	}
	c.publish()
	c.ready.Store(true)
	c.log.Info("routing table primed", "ingresses", len(c.compiled))
	return nil
}

// run processes the queue with a single worker until ctx ends.
func (c *Controller) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	for c.next(ctx) {
	}
}

func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.process(ctx, key); err != nil {
		c.log.Error("reconcile failed, retrying", "ingress", key.String(), "error", err.Error(),
			"retries", c.queue.NumRequeues(key))
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// process brings one Ingress into the table (or out of it) and then writes its status.
func (c *Controller) process(ctx context.Context, key types.NamespacedName) error {
	ing, err := c.ingresses.Ingresses(key.Namespace).Get(key.Name)
	if apierrs.IsNotFound(err) || (err == nil && !ownedBy(ing, c.class)) {
		if _, had := c.compiled[key]; had {
			delete(c.compiled, key)
			c.publish()
			c.log.Info("ingress removed from the table", "ingress", key.String())
		}
		return nil
	}
	if err != nil {
		return err
	}
	desired := ing.DeepCopy()
	desired.Status.InitializeConditions()
	cp, cerr := compile(ing)
	if cerr != nil {
		delete(c.compiled, key)
		c.publish()
		c.log.Error("ingress not servable", "ingress", key.String(), "generation", ing.Generation, "error", cerr.Error())
		desired.Status.MarkLoadBalancerFailed("InvalidIngress", cerr.Error())
	} else {
		c.compiled[key] = cp
		c.publish()
		desired.Status.MarkNetworkConfigured()
		desired.Status.MarkLoadBalancerReady(c.public, c.private)
	}
	desired.Status.ObservedGeneration = ing.Generation
	if equality.Semantic.DeepEqual(ing.Status, desired.Status) {
		return nil
	}
	if _, err := c.client.NetworkingV1alpha1().Ingresses(key.Namespace).UpdateStatus(ctx, desired, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating status: %w", err)
	}
	if cerr == nil {
		c.log.Info("ingress ready", "ingress", key.String(), "generation", ing.Generation,
			"hosts", len(cp.hosts), "hash", cp.shortHash())
	}
	return nil
}

// publish rebuilds the table from every compiled Ingress, oldest first, and swaps it in.
func (c *Controller) publish() {
	ordered := make([]*compiled, 0, len(c.compiled))
	for _, cp := range c.compiled {
		ordered = append(ordered, cp)
	}
	slices.SortFunc(ordered, func(a, b *compiled) int {
		return cmp.Or(a.created.Compare(b.created),
			strings.Compare(a.name.Namespace, b.name.Namespace), strings.Compare(a.name.Name, b.name.Name))
	})
	t, conflicts := buildTable(ordered)
	for _, cf := range conflicts {
		c.log.Warn("host claimed by two ingresses; the older keeps it", "host", cf.host,
			"kept", cf.winner.String(), "ignored", cf.loser.String())
	}
	c.proxy.setTable(t)
}
