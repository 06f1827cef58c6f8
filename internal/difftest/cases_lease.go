package difftest

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// timeToLive asks for a lease's remaining TTL over gRPC. The remaining TTL
// may differ by one second between targets.
func timeToLive(c *Conn, label string, id int64, keys bool) *Obs {
	c.t.Helper()
	resp, err := c.LeaseStub().LeaseTimeToLive(c.Ctx, &pb.LeaseTimeToLiveRequest{ID: id, Keys: keys})
	return c.GRPC(label, resp, err).Tolerate("body.TTL", 1)
}

// keepAliveOnce sends one keepalive on a fresh gRPC stream and records the
// single reply.
func keepAliveOnce(c *Conn, label string, id int64) *Obs {
	c.t.Helper()
	stream, err := c.LeaseStub().LeaseKeepAlive(c.Ctx)
	if err != nil {
		c.Fatalf("%s: open keepalive stream: %v", label, err)
	}
	if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		c.Fatalf("%s: send: %v", label, err)
	}
	resp, err := stream.Recv()
	_ = stream.CloseSend()
	return c.GRPC(label, resp, err)
}

// leaseCases cover grant, time-to-live, listing, revoke and keepalive.
// Every case revokes what it grants, so that listings stay deterministic.
func leaseCases() []Case {
	return []Case{
		{Name: "lease_grant_grpc", Run: func(c *Conn) {
			id := c.LeaseID(1)
			g := grant(c, "grant", id, 60)
			c.Want(g, "body.TTL", "60")
			c.Want(g, "body.error", Absent)
			resp, err := c.LeaseStub().LeaseGrant(c.Ctx, &pb.LeaseGrantRequest{ID: id, TTL: 60})
			c.WantGRPCError(c.GRPC("grant same ID", resp, err), "FailedPrecondition", "etcdserver: lease already exists")
			short := grant(c, "grant TTL 1", c.LeaseID(2), 1)
			c.Check(short.Int("body.TTL") >= 1, "granted TTL must be at least the requested one")
			revoke(c, "revoke short", c.LeaseID(2))
			revoke(c, "revoke", id)
		}},
		{Name: "lease_grant_http", Run: func(c *Conn) {
			id := c.LeaseID(1)
			g := c.Post("grant ID as string", "/v3/lease/grant", M{"TTL": 60, "ID": itoa(id)})
			c.Want(g, "body.ID", itoa(id))
			c.Want(g, "body.TTL", "60")
			dup := c.Post("grant same ID", "/v3/lease/grant", M{"TTL": 60, "ID": id})
			c.WantHTTPError(dup, 412, 9, "etcdserver: lease already exists")
			n := c.Post("grant TTL as string, ID as number", "/v3/lease/grant", M{"TTL": "30", "ID": c.LeaseID(2)})
			c.Want(n, "body.TTL", "30")
			c.WantOK(c.Post("revoke 2", "/v3/kv/lease/revoke", M{"ID": c.LeaseID(2)}))
			c.WantOK(c.Post("revoke", "/v3/lease/revoke", M{"ID": itoa(id)}))
		}},
		{Name: "lease_timetolive_grpc", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 600)
			c.WantOK(c.Put("attach a", c.Key("a"), "1", clientv3.WithLease(clientv3.LeaseID(id))))
			k := timeToLive(c, "with keys", id, true)
			c.Want(k, "body.grantedTTL", "600")
			c.Want(k, "body.keys", []string{c.BKey("a")})
			c.Check(k.Int("body.TTL") >= 598 && k.Int("body.TTL") <= 600, "remaining TTL near 600, got %v", k.Get("body.TTL"))
			n := timeToLive(c, "without keys", id, false)
			c.Want(n, "body.keys", Absent)
			revoke(c, "revoke", id)
			gone := timeToLive(c, "after revoke", id, true)
			c.Want(gone, "body.TTL", "-1")
			c.Want(gone, "body.grantedTTL", Absent)
		}},
		{Name: "lease_timetolive_http", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 600)
			c.WantOK(c.Post("attach a", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1"), "lease": itoa(id)}))
			k := c.Post("with keys (kv alias)", "/v3/kv/lease/timetolive", M{"ID": itoa(id), "keys": true}).Tolerate("body.TTL", 1)
			c.Want(k, "body.keys", []string{c.BKey("a")})
			c.Want(k, "body.grantedTTL", "600")
			n := c.Post("without keys", "/v3/lease/timetolive", M{"ID": id}).Tolerate("body.TTL", 1)
			c.Want(n, "body.keys", Absent)
			c.WantOK(c.Post("revoke", "/v3/kv/lease/revoke", M{"ID": itoa(id)}))
			gone := c.Post("after revoke", "/v3/kv/lease/timetolive", M{"ID": itoa(id), "keys": true})
			c.Want(gone, "body.TTL", "-1")
		}},
		{Name: "lease_leases_grpc", Run: func(c *Conn) {
			// IDs ascend with expiry, so ID order and expiry order agree.
			grant(c, "grant 1", c.LeaseID(1), 600)
			grant(c, "grant 2", c.LeaseID(2), 700)
			resp, err := c.LeaseStub().LeaseLeases(c.Ctx, &pb.LeaseLeasesRequest{})
			l := c.GRPC("leases", resp, err)
			c.Want(l, "body.leases", []M{{"ID": itoa(c.LeaseID(1))}, {"ID": itoa(c.LeaseID(2))}})
			revoke(c, "revoke 1", c.LeaseID(1))
			revoke(c, "revoke 2", c.LeaseID(2))
			resp, err = c.LeaseStub().LeaseLeases(c.Ctx, &pb.LeaseLeasesRequest{})
			e := c.GRPC("no leases", resp, err)
			c.Want(e, "body.leases", Absent)
		}},
		{Name: "lease_leases_http", Run: func(c *Conn) {
			grant(c, "grant 1", c.LeaseID(1), 600)
			grant(c, "grant 2", c.LeaseID(2), 700)
			l := c.Post("leases", "/v3/lease/leases", M{})
			c.Want(l, "body.leases", []M{{"ID": itoa(c.LeaseID(1))}, {"ID": itoa(c.LeaseID(2))}})
			revoke(c, "revoke 1", c.LeaseID(1))
			revoke(c, "revoke 2", c.LeaseID(2))
			e := c.Post("no leases (kv alias)", "/v3/kv/lease/leases", M{})
			c.WantOK(e)
			c.Want(e, "body.leases", Absent)
		}},
		{Name: "lease_revoke_deletes_keys_grpc", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 600)
			seed(c, "plain", "x")
			c.WantOK(c.Put("b", c.Key("b"), "1", clientv3.WithLease(clientv3.LeaseID(id))))
			p := c.Put("a", c.Key("a"), "1", clientv3.WithLease(clientv3.LeaseID(id)))
			r := revoke(c, "revoke", id)
			c.Want(r, "body.header.revision", itoa(rev(p)+1))
			g := c.Get("left", c.Key(""), clientv3.WithPrefix())
			wantKeys(c, g, "body.kvs", "plain")
			again, err := c.Client.Revoke(c.Ctx, clientv3.LeaseID(id))
			c.WantGRPCError(c.GRPC("revoke again", (*pb.LeaseRevokeResponse)(again), err), "NotFound", "etcdserver: requested lease not found")
		}},
		{Name: "lease_revoke_deletes_keys_http", Run: func(c *Conn) {
			id := c.LeaseID(1)
			c.WantOK(c.Post("grant", "/v3/lease/grant", M{"TTL": 600, "ID": id}))
			c.WantOK(c.Post("a", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1"), "lease": itoa(id)}))
			c.WantOK(c.Post("b", "/v3/kv/put", M{"key": c.BKey("b"), "value": B64("1"), "lease": itoa(id)}))
			c.WantOK(c.Post("revoke", "/v3/lease/revoke", M{"ID": itoa(id)}))
			g := c.Post("left", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd("")})
			c.Want(g, "body.kvs", Absent)
			again := c.Post("revoke again", "/v3/lease/revoke", M{"ID": itoa(id)})
			c.WantHTTPError(again, 404, 5, "etcdserver: requested lease not found")
		}},
		{Name: "lease_keepalive_grpc", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 60)
			k := keepAliveOnce(c, "keepalive live", id)
			c.Want(k, "body.ID", itoa(id))
			c.Want(k, "body.TTL", "60")
			revoke(c, "revoke", id)
			d := keepAliveOnce(c, "keepalive revoked", id)
			c.Want(d, "body.ID", itoa(id))
			c.Want(d, "body.TTL", Absent)
		}},
		{Name: "lease_keepalive_live_http", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 60)
			k := c.Post("keepalive", "/v3/lease/keepalive", M{"ID": itoa(id)})
			c.Want(k, "status", 200)
			c.Want(k, "body.result.ID", itoa(id))
			c.Want(k, "body.result.TTL", "60")
			revoke(c, "revoke", id)
		}},
		{Name: "lease_keepalive_revoked_http", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 60)
			revoke(c, "revoke", id)
			k := c.Post("keepalive", "/v3/lease/keepalive", M{"ID": itoa(id)})
			c.Want(k, "status", 200)
			c.Want(k, "body.result.ID", itoa(id))
			c.Want(k, "body.result.TTL", Absent)
			n := c.Post("keepalive never granted", "/v3/lease/keepalive", M{"ID": c.LeaseID(2)})
			c.Want(n, "body.result.TTL", Absent)
		}},
		{Name: "lease_expiry_http", Run: func(c *Conn) {
			// The only case that waits for time to pass: a 2 s lease (etcd's
			// minimum with default raft timing) must expire by itself and
			// delete its keys at one new revision, seen as DELETE events.
			id := c.LeaseID(1)
			g := c.Post("grant TTL 2", "/v3/lease/grant", M{"TTL": 2, "ID": itoa(id)})
			c.Want(g, "body.TTL", "2")
			c.WantOK(c.Post("b", "/v3/kv/put", M{"key": c.BKey("b"), "value": B64("1"), "lease": itoa(id)}))
			p := c.Post("a", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1"), "lease": itoa(id)})
			s := c.WatchHTTP("open", httpCreate(c, "", nil))
			s.Collect("created", Msgs(1), streamWait)
			o := s.Collect("expiry deletes", Events(2), leaseExpiryWait)
			c.WantLen(o, "messages", 1)
			c.Want(o, "messages[0].result.events[0]", M{"type": "DELETE", "kv": M{"key": c.BKey("a"), "mod_revision": itoa(rev(p) + 1)}})
			c.Want(o, "messages[0].result.events[1].kv.key", c.BKey("b"))
			t := c.Post("timetolive after expiry", "/v3/kv/lease/timetolive", M{"ID": itoa(id), "keys": true})
			c.Want(t, "body.TTL", "-1")
			l := c.Post("keepalive after expiry", "/v3/lease/keepalive", M{"ID": itoa(id)})
			c.Want(l, "body.result.TTL", Absent)
		}},
		{Name: "lease_errors_grpc", Run: func(c *Conn) {
			resp, err := c.LeaseStub().LeaseGrant(c.Ctx, &pb.LeaseGrantRequest{ID: c.LeaseID(1), TTL: 9000000001})
			c.WantGRPCError(c.GRPC("TTL too large", resp, err), "OutOfRange", "etcdserver: too large lease TTL")
			u := c.Put("put unknown lease", c.Key("a"), "1", clientv3.WithLease(clientv3.LeaseID(c.LeaseID(2))))
			c.WantGRPCError(u, "NotFound", "etcdserver: requested lease not found")
			r, err := c.Client.Revoke(c.Ctx, clientv3.LeaseID(c.LeaseID(3)))
			c.WantGRPCError(c.GRPC("revoke unknown", (*pb.LeaseRevokeResponse)(r), err), "NotFound", "etcdserver: requested lease not found")
		}},
		{Name: "lease_errors_http", Run: func(c *Conn) {
			big := c.Post("TTL too large", "/v3/lease/grant", M{"TTL": "9000000001", "ID": c.LeaseID(1)})
			c.WantHTTPError(big, 400, 11, "etcdserver: too large lease TTL")
			u := c.Post("put unknown lease", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1"), "lease": itoa(c.LeaseID(2))})
			c.WantHTTPError(u, 404, 5, "etcdserver: requested lease not found")
			r := c.Post("revoke unknown", "/v3/lease/revoke", M{"ID": itoa(c.LeaseID(3))})
			c.WantHTTPError(r, 404, 5, "etcdserver: requested lease not found")
			g := c.Post("range after failed put", "/v3/kv/range", M{"key": c.BKey("a")})
			c.Want(g, "body.kvs", Absent)
		}},
	}
}
