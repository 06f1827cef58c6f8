package difftest

import (
	"reflect"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const errDenied = "etcdserver: permission denied"

// authEnforced: with authentication enabled, a call without a token, with
// a bad one, and a user with READ on one prefix only, over gRPC and the
// gateway; then a password change makes the old token invalid.
func authEnforced(c *Conn) {
	root, reader := authSetup(c)
	kv := c.KVStub()
	asToken(c, "", func() {
		c.WantGRPCError(c.Get("get without token", c.Key("apisix/r1")), "InvalidArgument", "etcdserver: user name is empty")
		c.WantHTTPError(c.Post("http range without token", "/v3/kv/range", M{"key": c.BKey("apisix/r1")}),
			400, 3, "etcdserver: user name is empty")
	})
	asToken(c, "garbage.token", func() {
		c.WantGRPCError(c.Get("get with a bad token", c.Key("apisix/r1")), "Unauthenticated", "etcdserver: invalid auth token")
		c.WantHTTPError(c.Post("http range with a bad token", "/v3/kv/range", M{"key": c.BKey("apisix/r1")}),
			401, 16, "etcdserver: invalid auth token")
	})
	var before *Obs
	asToken(c, root, func() { before = c.Get("key space before", c.Key(""), clientv3.WithPrefix()) })
	asToken(c, reader, func() { readerCalls(c, kv) })
	asToken(c, root, func() {
		after := c.Get("key space after", c.Key(""), clientv3.WithPrefix())
		c.Check(reflect.DeepEqual(before.Get("body.kvs"), after.Get("body.kvs")), "the refused calls changed the key space")
		p, err := c.AuthStub().UserChangePassword(c.Ctx, &pb.AuthUserChangePasswordRequest{Name: "reader", Password: "new"})
		c.WantOK(c.GRPC("change reader's password", p, err))
	})
	asToken(c, reader, func() {
		c.WantGRPCError(c.Get("old token after password change", c.Key("apisix/r1")), "Unauthenticated", "etcdserver: invalid auth token")
	})
	writer := login(c, "authenticate writer", "writer", "wpw")
	asToken(c, writer, func() { writerCalls(c) })
	fresh := login(c, "authenticate with the new password", "reader", "new")
	asToken(c, fresh, func() { c.WantOK(c.Get("new token", c.Key("apisix/r1"))) })
	authTeardown(c, root)
	c.WantOK(c.Get("get after disable", c.Key("other")))
}

// readerCalls are the reader's calls: reads inside its prefix succeed,
// everything else is refused and changes nothing.
func readerCalls(c *Conn, kv pb.KVClient) {
	c.WantOK(c.Get("read inside", c.Key("apisix/r1")))
	c.WantOK(c.Get("read prefix", c.Key("apisix/"), clientv3.WithPrefix()))
	c.WantGRPCError(c.Get("read outside", c.Key("other")), "PermissionDenied", errDenied)
	c.WantGRPCError(c.Get("read everything", c.Key(""), clientv3.WithPrefix()), "PermissionDenied", errDenied)
	c.WantGRPCError(c.Put("write inside", c.Key("apisix/r1"), "x"), "PermissionDenied", errDenied)
	c.WantGRPCError(c.Delete("delete outside", c.Key("other")), "PermissionDenied", errDenied)
	c.WantGRPCError(c.Txn("txn comparing outside", []clientv3.Cmp{clientv3.Compare(clientv3.Version(c.Key("other")), ">", 0)},
		[]clientv3.Op{clientv3.OpGet(c.Key("apisix/r1"))}, nil), "PermissionDenied", errDenied)
	c.WantGRPCError(c.Txn("txn writing inside", nil, []clientv3.Op{clientv3.OpPut(c.Key("apisix/r1"), "x")}, nil), "PermissionDenied", errDenied)
	c.WantOK(c.Txn("txn reading inside", []clientv3.Cmp{clientv3.Compare(clientv3.Version(c.Key("apisix/r1")), ">", 0)},
		[]clientv3.Op{clientv3.OpGet(c.Key("apisix/r1"))}, nil))
	// The reference, etcd 3.4.23, lets any user compact, which discards
	// every user's history; etcdsql requires the root role for it, as it
	// does for the other maintenance calls.
	cmp := c.Compact("compact", 1).Lenient("code", "error", "body")
	if c.Target.Name == "subject" {
		c.WantGRPCError(cmp, "PermissionDenied", errDenied)
	}
	lg, err := c.LeaseStub().LeaseGrant(c.Ctx, &pb.LeaseGrantRequest{ID: c.LeaseID(2), TTL: 60})
	c.WantOK(c.GRPC("lease grant", lg, err))
	// The reference, etcd 3.4.23, lists a lease's keys to anyone
	// (CVE-2023-32082, fixed in 3.4.26); etcdsql refuses a lease's time to
	// live to a user who cannot read every key attached to it, as fixed
	// etcd does.
	tl, err := c.LeaseStub().LeaseTimeToLive(c.Ctx, &pb.LeaseTimeToLiveRequest{ID: c.LeaseID(1), Keys: true})
	ttl := c.GRPC("time to live of a lease holding an outside key", tl, err).Lenient("code", "error", "body")
	if c.Target.Name == "subject" {
		c.WantGRPCError(ttl, "PermissionDenied", errDenied)
	}
	r, err := c.LeaseStub().LeaseRevoke(c.Ctx, &pb.LeaseRevokeRequest{ID: c.LeaseID(1)})
	c.WantGRPCError(c.GRPC("revoke a lease holding an outside key", r, err), "PermissionDenied", errDenied)
	l, err := c.AuthStub().UserList(c.Ctx, &pb.AuthUserListRequest{})
	c.WantGRPCError(c.GRPC("user list", l, err), "PermissionDenied", errDenied)
	g, err := c.AuthStub().UserGet(c.Ctx, &pb.AuthUserGetRequest{Name: "reader"})
	c.WantOK(c.GRPC("get self", g, err))
	rg, err := c.AuthStub().RoleGet(c.Ctx, &pb.AuthRoleGetRequest{Role: "apx"})
	c.WantOK(c.GRPC("get own role", rg, err))
	rg, err = c.AuthStub().RoleGet(c.Ctx, &pb.AuthRoleGetRequest{Role: "other"})
	c.WantGRPCError(c.GRPC("get another role", rg, err), "PermissionDenied", errDenied)
	c.WantOK(c.Post("http read inside", "/v3/kv/range", M{"key": c.BKey("apisix/r1")}))
	c.WantHTTPError(c.Post("http write inside", "/v3/kv/put", M{"key": c.BKey("apisix/r1"), "value": B64("x")}), 403, 7, errDenied)
	c.WantHTTPError(c.Post("http delete outside", "/v3/kv/deleterange", M{"key": c.BKey("other")}), 403, 7, errDenied)
	s := c.WatchHTTP("http watch outside", httpCreate(c, "other", nil))
	s.Collect("http watch outside refused", Msgs(1), streamWait)
	w := c.WatchHTTP("http watch inside", httpCreate(c, "apisix/", nil))
	w.Collect("http watch inside created", Msgs(1), streamWait)
	g2 := c.WatchGRPC(createReq(c.Key("other"), "", 0))
	g2.Collect("grpc watch outside refused", Msgs(1), streamWait)
}

// writerCalls: READWRITE on the prefix; a put may not attach a lease that
// holds a key outside it; a put with prev_kv and a nested transaction
// inside it succeed; a nested transaction outside is refused.
func writerCalls(c *Conn) {
	c.WantGRPCError(c.Put("put attaching a lease holding an outside key", c.Key("apisix/w"), "x",
		clientv3.WithLease(clientv3.LeaseID(c.LeaseID(1)))), "PermissionDenied", errDenied)
	c.WantOK(c.Put("put attaching a lease holding nothing", c.Key("apisix/w"), "x", clientv3.WithLease(clientv3.LeaseID(c.LeaseID(2)))))
	c.WantOK(c.Put("put with prev_kv", c.Key("apisix/w"), "y", clientv3.WithPrevKV()))
	c.WantOK(c.Txn("nested txn inside", nil, []clientv3.Op{clientv3.OpTxn(nil,
		[]clientv3.Op{clientv3.OpPut(c.Key("apisix/n"), "z")}, nil)}, nil))
	// The reference, etcd 3.4.23, does not check the operations of a
	// nested transaction (GHSA-rfx7-8w68-q57q, fixed in later releases):
	// it answers this read; etcdsql refuses it, as fixed etcd does.
	o := c.Txn("nested txn reading outside", nil, []clientv3.Op{clientv3.OpTxn(nil,
		[]clientv3.Op{clientv3.OpGet(c.Key("other"))}, nil)}, nil).Lenient("code", "error", "body")
	if c.Target.Name == "subject" {
		c.WantGRPCError(o, "PermissionDenied", errDenied)
	}
	c.WantGRPCError(c.Delete("delete the whole prefix range and beyond", c.Key("apisix/"), clientv3.WithFromKey()), "PermissionDenied", errDenied)
}
