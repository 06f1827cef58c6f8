package node_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
)

// TestClusterAuthEnforced: authentication enabled through a follower; a
// token one member issues works on every member, over gRPC and HTTP; a
// user with READ on /apisix/ only is refused every write, delete, lease
// revoke and outside read, through a follower and directly at the
// leader's peer port, and nothing changes; a password change invalidates
// the old token everywhere.
func TestClusterAuthEnforced(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader := c.Leader(10 * time.Second)
	rest := others(c, leader)
	f, g := rest[0], rest[1]
	fc, gc, lc := c.Client(f), c.Client(g), c.Client(leader)
	ctx := testCtx(t)
	leaseID := authzSetup(t, ctx, lc)
	if _, err := fc.AuthEnable(ctx); err != nil {
		t.Fatalf("auth enable via follower: %v", err)
	}
	root := authzLogin(t, ctx, fc, "root", "rootpw")
	reader := authzLogin(t, ctx, fc, "reader", "rpw")
	before := keySpace(t, ctx, gc, root)

	for name, cl := range map[string]*clientv3.Client{"issuing follower": fc, "other follower": gc, "leader": lc} {
		if _, err := pb.NewKVClient(cl.ActiveConnection()).Range(withToken(ctx, reader), &pb.RangeRequest{Key: []byte("/apisix/a")}); err != nil {
			t.Errorf("reader's token on the %s: %v", name, err)
		}
	}
	if st, body := httpRange(t, ctx, c.Members[g].URL, reader, "/apisix/a"); st != http.StatusOK {
		t.Errorf("reader's token over HTTP on another member: %d %s", st, body)
	}
	if st, body := httpRange(t, ctx, c.Members[g].URL, reader, "/other/x"); st != http.StatusForbidden || !strings.Contains(body, "etcdserver: permission denied") {
		t.Errorf("reader's outside read over HTTP: %d %s", st, body)
	}
	for path, body := range map[string]string{
		"/v3/kv/put":          `{"key":"` + b64("/apisix/a") + `","value":"eA=="}`,
		"/v3/kv/deleterange":  `{"key":"` + b64("/other/x") + `"}`,
		"/v3/kv/lease/revoke": `{"ID":"` + strconv.FormatInt(int64(leaseID), 10) + `"}`,
	} {
		if st, out := httpPost(t, ctx, c.Members[f].URL+path, reader, body); st != http.StatusForbidden || !strings.Contains(out, "permission denied") {
			t.Errorf("reader's %s over HTTP through a follower: %d %s", path, st, out)
		}
	}
	readerRefused(t, withToken(ctx, reader), fc, leaseID)
	peerRefused(t, ctx, c.Members[leader].PeerAddr, leaseID, authRevision(t, ctx, gc, root))
	if after := keySpace(t, ctx, gc, root); !reflect.DeepEqual(before, after) {
		t.Errorf("the refused calls changed the key space:\n%v\n%v", before, after)
	}

	// As etcdctl --user does: clientv3 authenticates by itself.
	uc, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Members[g].URL}, Username: "reader", Password: "rpw",
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if r, err := uc.Get(ctx, "/apisix/a"); err != nil || len(r.Kvs) != 1 {
		t.Errorf("clientv3 with a user: %v, %v", r, err)
	}
	if _, err := uc.Put(ctx, "/apisix/a", "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("clientv3 with a user, put: %v", err)
	}

	etcdctlUser(t, c.Members[f].URL)

	if _, err := pb.NewAuthClient(fc.ActiveConnection()).UserChangePassword(withToken(ctx, root),
		&pb.AuthUserChangePasswordRequest{Name: "reader", Password: "new"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "old token refused on every member", func() error {
		for _, cl := range []*clientv3.Client{fc, gc, lc} {
			_, err := pb.NewKVClient(cl.ActiveConnection()).Range(withToken(ctx, reader), &pb.RangeRequest{Key: []byte("/apisix/a")})
			if !errors.Is(rpctypes.Error(err), rpctypes.ErrInvalidAuthToken) {
				return errors.New("old token: " + errString(err))
			}
		}
		return nil
	})
}

func errString(err error) string {
	if err == nil {
		return "accepted"
	}
	return err.Error()
}

// authzSetup makes root, reader (READ on /apisix/), keys inside and
// outside, and a lease holding an outside key; it returns the lease.
func authzSetup(t *testing.T, ctx context.Context, lc *clientv3.Client) clientv3.LeaseID {
	steps := []func() error{
		func() error { _, err := lc.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := lc.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := lc.UserAdd(ctx, "reader", "rpw"); return err },
		func() error { _, err := lc.RoleAdd(ctx, "apx"); return err },
		func() error {
			_, err := lc.RoleGrantPermission(ctx, "apx", "/apisix/", "/apisix0", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := lc.UserGrantRole(ctx, "reader", "apx"); return err },
		func() error { _, err := lc.Put(ctx, "/apisix/a", "1"); return err },
		func() error { _, err := lc.Put(ctx, "/other/x", "2"); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("setup step %d: %v", i, err)
		}
	}
	l, err := lc.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Put(ctx, "/other/leased", "3", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	return l.ID
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "token", tok)
}

func authzLogin(t *testing.T, ctx context.Context, cl *clientv3.Client, user, pw string) string {
	r, err := pb.NewAuthClient(cl.ActiveConnection()).Authenticate(ctx, &pb.AuthenticateRequest{Name: user, Password: pw})
	if err != nil {
		t.Fatalf("authenticate %s: %v", user, err)
	}
	return r.Token
}

func authRevision(t *testing.T, ctx context.Context, cl *clientv3.Client, root string) uint64 {
	r, err := pb.NewAuthClient(cl.ActiveConnection()).AuthStatus(withToken(ctx, root), &pb.AuthStatusRequest{})
	if err != nil || !r.Enabled {
		t.Fatalf("auth status: %v, %v", r, err)
	}
	return r.AuthRevision
}

// keySpace is every key and value, as root reads them.
func keySpace(t *testing.T, ctx context.Context, cl *clientv3.Client, root string) map[string]string {
	r, err := pb.NewKVClient(cl.ActiveConnection()).Range(withToken(ctx, root), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range r.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

func httpRange(t *testing.T, ctx context.Context, url, tok, key string) (int, string) {
	return httpPost(t, ctx, url+"/v3/kv/range", tok, `{"key":"`+b64(key)+`"}`)
}

// httpPost posts body to url with tok raw in Authorization, as APISIX does.
func httpPost(t *testing.T, ctx context.Context, url, tok, body string) (int, string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readerRefused sends the reader's refused calls through a follower.
func readerRefused(t *testing.T, ctx context.Context, fc *clientv3.Client, lease clientv3.LeaseID) {
	kv, ls := pb.NewKVClient(fc.ActiveConnection()), pb.NewLeaseClient(fc.ActiveConnection())
	calls := map[string]func() error{
		"put inside": func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("/apisix/a"), Value: []byte("x")})
			return err
		},
		"delete": func() error {
			_, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("/other/x")})
			return err
		},
		"read outside": func() error { _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("/other/x")}); return err },
		"lease revoke": func() error { _, err := ls.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: int64(lease)}); return err },
		"compact":      func() error { _, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: 2}); return err },
		"lease keys": func() error {
			_, err := ls.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: int64(lease), Keys: true})
			return err
		},
		"member remove": func() error {
			_, err := pb.NewClusterClient(fc.ActiveConnection()).MemberRemove(ctx, &pb.MemberRemoveRequest{ID: 1})
			return err
		},
		"txn": func() error {
			_, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp("/other/y")}})
			return err
		},
		"user list": func() error {
			_, err := pb.NewAuthClient(fc.ActiveConnection()).UserList(ctx, &pb.AuthUserListRequest{})
			return err
		},
		"role add": func() error {
			_, err := pb.NewAuthClient(fc.ActiveConnection()).RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: "x"})
			return err
		},
		"auth disable": func() error {
			_, err := pb.NewAuthClient(fc.ActiveConnection()).AuthDisable(ctx, &pb.AuthDisableRequest{})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(rpctypes.Error(err), rpctypes.ErrPermissionDenied) {
			t.Errorf("reader's %s through a follower: %v", name, err)
		}
	}
	w := pb.NewWatchClient(fc.ActiveConnection())
	ws, err := w.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseSend()
	ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("/other/")}}})
	if r, err := ws.Recv(); err != nil || !r.Canceled || !strings.Contains(r.CancelReason, "permission denied") {
		t.Errorf("reader's watch outside: %v, %v", r, err)
	}
}

func putOp(key string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: []byte("x")}}}
}

// peerRefused calls the leader's peer port as a member would, without an
// identity and with the reader's: every write is refused.
func peerRefused(t *testing.T, ctx context.Context, addr string, lease clientv3.LeaseID, authRev uint64) {
	tc, err := node.ClusterKeyTLS([]byte(testcluster.ClusterKey))
	if err != nil {
		t.Fatal(err)
	}
	tc = tc.Clone()
	tc.ServerName = "etcdsql-peer"
	// TLS under gRPC, not negotiated by it, as members dial.
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(c, tc)
		if err := conn.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return conn, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, append(rpc.PeerDialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	p := rpc.NewPeerClient(cc)
	as := map[string]context.Context{
		"no identity": ctx,
		"reader":      metadata.AppendToOutgoingContext(ctx, "etcdsql-auth-user", "reader", "etcdsql-auth-revision", itoa(authRev)),
	}
	// Root checked at an older auth revision than the leader's: refused as
	// etcd refuses an entry whose header is older than its auth store.
	old := metadata.AppendToOutgoingContext(ctx, "etcdsql-auth-user", "root", "etcdsql-auth-revision", itoa(authRev-1))
	if _, err := p.Put(old, &pb.PutRequest{Key: []byte("/apisix/a"), Value: []byte("x")}); err == nil ||
		!strings.Contains(err.Error(), "revision of auth store is old") {
		t.Errorf("peer port put as root at an old auth revision: %v", err)
	}
	for who, cctx := range as {
		calls := map[string]func() error{
			"put": func() error {
				_, err := p.Put(cctx, &pb.PutRequest{Key: []byte("/apisix/a"), Value: []byte("x")})
				return err
			},
			"delete": func() error {
				_, err := p.DeleteRange(cctx, &pb.DeleteRangeRequest{Key: []byte("/other/x")})
				return err
			},
			"txn": func() error {
				_, err := p.Txn(cctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp("/other/y")}})
				return err
			},
			"revoke":  func() error { _, err := p.LeaseRevoke(cctx, &pb.LeaseRevokeRequest{ID: int64(lease)}); return err },
			"compact": func() error { _, err := p.Compact(cctx, &pb.CompactionRequest{Revision: 2}); return err },
			"user add": func() error {
				_, err := p.AuthWrite(cctx, &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "x"}})
				return err
			},
		}
		for name, call := range calls {
			err := call()
			if err == nil || !(strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "user name is empty")) {
				t.Errorf("peer port %s as %s: %v", name, who, err)
			}
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// etcdctlUser runs etcd's etcdctl with --user against a follower: a read
// inside the user's prefix prints the value, a write is refused.
func etcdctlUser(t *testing.T, url string) {
	bin, err := exec.LookPath("etcdctl")
	if err != nil {
		t.Log("etcdctl not installed: skipping its check")
		return
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--endpoints=" + url, "--user=reader:rpw", "--command-timeout=5s"}, args...)...)
		cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("get", "/apisix/a", "--print-value-only"); err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("etcdctl --user get: %q, %v", out, err)
	}
	if out, err := run("put", "/apisix/a", "x"); err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("etcdctl --user put: %q, %v", out, err)
	}
}
