package rpc

import (
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Draining: how a member leaves the client port with its clients noticing
// no more than a reconnection. StartDrain takes it out of load balancers;
// Shutdown then stops accepting connections, sends gRPC clients elsewhere,
// ends the streams that would otherwise never end, and lets the calls in
// flight finish.

// StartDrain makes /health answer 503 (reason "draining") and the gRPC
// health service NOT_SERVING, so that load balancers open no new
// connections to this member; everything else is served as before. Safe
// for concurrent use.
func (s *Server) StartDrain() {
	if !s.draining.Swap(true) {
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	}
}

// Shutdown stops serving, within ctx:
//  1. the port stops accepting connections;
//  2. gRPC clients are told (GOAWAY) to send new calls on another
//     connection; HTTP keep-alive connections close once idle;
//  3. watch streams end: a gRPC stream with etcd's "server stopped"
//     (Unavailable, which clientv3 retries on another endpoint from its
//     last revision), an HTTP gateway stream with the end of its body
//     (APISIX reopens its watch at once from its last revision); lease
//     keepalive streams end the same way;
//  4. unary calls in flight finish.
//
// When ctx ends first, every connection still open is closed. Shutdown
// is idempotent: a second call waits for the first. Safe for concurrent
// use.
func (s *Server) Shutdown(ctx context.Context) {
	s.StartDrain()
	s.shutOnce.Do(func() {
		defer close(s.shutDone)
		s.shutdown(ctx)
	})
	<-s.shutDone
}

// Close is Shutdown bounded by ShutdownTimeout.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	s.Shutdown(ctx)
}

func (s *Server) shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	ports, gw := s.ports, s.gw
	s.mu.Unlock()
	var plain, secure []*port
	for _, p := range ports {
		p.l.Close()
		if p.mux == nil {
			secure = append(secure, p)
		} else {
			plain = append(plain, p)
		}
	}
	// A TLS port's HTTP server carries its gRPC calls (and sends their
	// GOAWAY); GracefulStop would cut those calls, so it waits for them.
	secureDone := inBackground(func() { shutdownHTTP(ctx, secure) })
	plainDone := inBackground(func() { shutdownHTTP(ctx, plain) })
	grpcDone := inBackground(func() {
		if len(secure) > 0 {
			<-secureDone
		}
		s.grpc.GracefulStop()
	})
	close(s.stopStreams)
	if !waitDone(ctx, grpcDone) {
		s.grpc.Stop()
		<-grpcDone
	}
	<-plainDone
	<-secureDone
	// The gateway's calls come from HTTP requests, all finished by now.
	gwDone := inBackground(s.gwGRPC.GracefulStop)
	if !waitDone(ctx, gwDone) {
		s.gwGRPC.Stop()
		<-gwDone
	}
	if gw != nil {
		gw.close()
	}
	for _, p := range ports {
		if p.mux != nil {
			p.mux.Close()
		}
		p.l.closeConns()
	}
}

// shutdownHTTP shuts the ports' HTTP servers down: keep-alive connections
// close once idle, requests in flight finish within ctx.
func shutdownHTTP(ctx context.Context, ports []*port) {
	var wg sync.WaitGroup
	for _, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.http.Shutdown(ctx)
			p.http.Close()
		}()
	}
	wg.Wait()
}

// inBackground runs f in a goroutine; the channel closes when f returns.
func inBackground(f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	return done
}

// waitDone waits for done or ctx; false when ctx ended first.
func waitDone(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// streamEnd is how a long-lived stream ends on drain: a gateway stream
// cleanly (its HTTP body ends; lua-resty-etcd would count an error chunk
// with a 5xx code against the endpoint, the load balancer), a gRPC stream
// with etcd's "server stopped", an Unavailable that clientv3 retries on
// another endpoint.
func streamEnd(gateway bool) error {
	if gateway {
		return nil
	}
	return rpctypes.ErrGRPCStopped
}
