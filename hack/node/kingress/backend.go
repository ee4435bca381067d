package main

import (
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrs "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"knative.dev/networking/pkg/apis/networking"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/pkg/network"
)

// target is where one request goes: an address to dial and whether it speaks h2c.
type target struct {
	addr string
	h2c  bool
}

// resolver maps a split's Kubernetes Service to an address at request time, from the
// informer's cache, so a Service created or changed after its Ingress is used at once.
type resolver struct {
	services corev1listers.ServiceLister
}

// resolve picks the dial address the way Kourier picks its cluster: a ClusterIP Service
// through its virtual IP (kube-proxy balances), an ExternalName Service through its DNS
// name, a headless Service through its DNS name and target port. The upstream speaks h2c
// when the port is named http2/h2c or has appProtocol kubernetes.io/h2c (Knative's revision
// Services for gRPC), otherwise HTTP/1.1.
func (r resolver) resolve(b v1alpha1.IngressBackend) (target, error) {
	svc, err := r.services.Services(b.ServiceNamespace).Get(b.ServiceName)
	if apierrs.IsNotFound(err) {
		return target{}, fmt.Errorf("service %s/%s does not exist", b.ServiceNamespace, b.ServiceName)
	}
	if err != nil {
		return target{}, fmt.Errorf("service %s/%s: %w", b.ServiceNamespace, b.ServiceName, err)
	}
	port, ok := findPort(svc, b)
	if !ok {
		return target{}, fmt.Errorf("service %s/%s has no port %s", b.ServiceNamespace, b.ServiceName, b.ServicePort.String())
	}
	t := target{h2c: isH2C(port)}
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		t.addr = net.JoinHostPort(svc.Spec.ExternalName, strconv.Itoa(int(port.Port)))
	case svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone:
		p := port.Port
		if port.TargetPort.IntVal != 0 {
			p = port.TargetPort.IntVal
		}
		t.addr = net.JoinHostPort(network.GetServiceHostname(svc.Name, svc.Namespace), strconv.Itoa(int(p)))
	default:
		t.addr = net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(port.Port)))
	}
	return t, nil
}

func findPort(svc *corev1.Service, b v1alpha1.IngressBackend) (corev1.ServicePort, bool) {
	for _, p := range svc.Spec.Ports {
		if (b.ServicePort.Type == intstr.Int && p.Port == b.ServicePort.IntVal) ||
			(b.ServicePort.Type == intstr.String && p.Name == b.ServicePort.StrVal) {
			return p, true
		}
	}
	// An ExternalName Service may list no ports; the Ingress's numeric port is then the one.
	if svc.Spec.Type == corev1.ServiceTypeExternalName && len(svc.Spec.Ports) == 0 && b.ServicePort.Type == intstr.Int {
		return corev1.ServicePort{Port: b.ServicePort.IntVal}, true
	}
	return corev1.ServicePort{}, false
}

func isH2C(p corev1.ServicePort) bool {
	if p.AppProtocol != nil && *p.AppProtocol == networking.AppProtocolH2C {
		return true
	}
	return p.Name == networking.ServicePortNameH2C || p.Name == "h2c"
}
