package rpc

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/fsm"
)

// A draining server says so on /health at once; Shutdown then ends a gRPC
// watch stream with etcd's "server stopped" (Unavailable: clientv3 moves
// to another endpoint), a lease keepalive stream likewise, and an HTTP
// gateway watch with the clean end of its
// body (APISIX reopens at once, with no error to count against the
// endpoint), without waiting for its shutdown timeout.
func TestShutdownEndsWatchStreams(t *testing.T) {
	s, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv, l := storeServer(t, s)
	go srv.Serve(l)
	t.Cleanup(srv.Close)
	addr := l.Addr().String()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gw, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("a")}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := gw.Recv(); err != nil || !r.Created {
		t.Fatalf("gRPC watch: %v %v", r, err)
	}
	ka, err := pb.NewLeaseClient(conn).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v3/watch", strings.NewReader(`{"create_request":{"key":"YQ=="}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := bufio.NewReader(resp.Body)
	if line, err := body.ReadString('\n'); err != nil || !strings.Contains(line, `"created":true`) {
		t.Fatalf("HTTP watch: %q %v", line, err)
	}

	srv.StartDrain()
	h, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]string
	err = json.NewDecoder(h.Body).Decode(&health)
	h.Body.Close()
	if err != nil || h.StatusCode != http.StatusServiceUnavailable || health["reason"] != reasonDraining {
		t.Fatalf("/health while draining: %d %v %v", h.StatusCode, health, err)
	}

	start := time.Now()
	shut := make(chan struct{})
	go func() {
		defer close(shut)
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	}()
	_, err = gw.Recv()
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != status.Convert(rpctypes.ErrGRPCStopped).Message() {
		t.Errorf("gRPC watch ended with %v, want %v", err, rpctypes.ErrGRPCStopped)
	}
	if _, err := ka.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("lease keepalive stream ended with %v, want Unavailable", err)
	}
	rest, err := io.ReadAll(body)
	if err != nil || len(rest) != 0 {
		t.Errorf("HTTP watch ended with %q, %v; want the end of the body and nothing else", rest, err)
	}
	<-shut
	if took := time.Since(start); took > time.Second {
		t.Errorf("Shutdown took %v with nothing in flight", took)
	}
	if _, err := http.Get("http://" + addr + "/health"); err == nil {
		t.Error("the port still accepts connections after Shutdown")
	}
}
