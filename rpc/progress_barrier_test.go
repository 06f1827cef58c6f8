package rpc

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsql/etcdsql/fsm"
)

// storeBackend serves watches from a bare store; nothing else is needed.
type storeBackend struct {
	Backend
	s *fsm.Store
}

func (b storeBackend) NewWatchStream() *fsm.WatchStream { return b.s.NewWatchStream() }
func (b storeBackend) Rev() int64                       { return b.s.Rev() }
func (b storeBackend) ClusterID() uint64                { return 1 }
func (b storeBackend) MemberID() uint64                 { return 2 }

// ReadBarrier: the store is the only one, so there is nothing to catch up.
func (b storeBackend) ReadBarrier(context.Context) error { return nil }
func (b storeBackend) Term() uint64                      { return 3 }
func (b storeBackend) AuthStore() AuthReads              { return b.s }

// storeServer is a server of a bare store and a loopback listener for it,
// not yet served.
func storeServer(t *testing.T, s *fsm.Store) (*Server, net.Listener) {
	t.Helper()
	return backendServer(t, storeBackend{s: s}, DefaultConfig())
}

// backendServer builds a server over b and a loopback listener for it.
func backendServer(t *testing.T, b Backend, cfg Config) (*Server, net.Listener) {
	t.Helper()
	srv, err := NewServer(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return srv, l
}

func serveStore(t *testing.T, s *fsm.Store) *clientv3.Client {
	t.Helper()
	srv, l := storeServer(t, s)
	return serve(t, srv, l)
}

// serve serves srv (from backendServer, which closes it when the test
// ends) on l and returns a client of it.
func serve(t *testing.T, srv *Server, l net.Listener) *clientv3.Client {
	t.Helper()
	go srv.Serve(l)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{l.Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A progress notification is a barrier: when it arrives with header
// revision R, every event at or below R has been delivered. A watcher that
// is catching up over more than MaxBatchRevs revisions breaks that.
func TestProgressRequestIsABarrier(t *testing.T) {
	s, _ := fsm.New(fsm.DefaultConfig())
	const n = 20000
	for i := 1; i <= n; i++ {
		data, _ := fsm.Encode(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(fmt.Sprintf("k%06d", i)), Value: []byte("v")}})
		s.Apply(uint64(i), data)
	}
	c := serveStore(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wch := c.Watch(ctx, "k", clientv3.WithPrefix(), clientv3.WithRev(2))
	if err := c.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	var last int64
	for resp := range wch {
		if err := resp.Err(); err != nil {
			t.Fatal(err)
		}
		if resp.IsProgressNotify() {
			if last < resp.Header.Revision {
				t.Fatalf("progress notification at revision %d, but events were only delivered up to %d", resp.Header.Revision, last)
			}
			return
		}
		if len(resp.Events) > 0 {
			last = resp.Events[len(resp.Events)-1].Kv.ModRevision
		}
		if last == int64(n+1) {
			// Everything arrived; the barrier may still come.
			continue
		}
	}
	t.Fatal("watch ended")
}
