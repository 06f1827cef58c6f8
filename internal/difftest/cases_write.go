package difftest

import (
	"fmt"
	"strconv"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// itoa renders an int64 the way the gateway does.
func itoa(n int64) string {
	return strconv.FormatInt(n, 10)
}

// grant grants a lease with an explicit ID over gRPC, expecting success.
func grant(c *Conn, label string, id, ttl int64) *Obs {
	c.t.Helper()
	resp, err := c.LeaseStub().LeaseGrant(c.Ctx, &pb.LeaseGrantRequest{ID: id, TTL: ttl})
	o := c.GRPC(label, resp, err)
	c.Want(o, "body.ID", itoa(id))
	return o
}

// revoke revokes a lease over gRPC, expecting success.
func revoke(c *Conn, label string, id int64) *Obs {
	c.t.Helper()
	resp, err := c.Client.Revoke(c.Ctx, clientv3.LeaseID(id))
	o := c.GRPC(label, (*pb.LeaseRevokeResponse)(resp), err)
	c.WantOK(o)
	return o
}

// putCases cover PutRequest options over both transports.
func putCases() []Case {
	return []Case{
		{Name: "put_basic_grpc", Run: func(c *Conn) {
			p1 := c.Put("create", c.Key("a"), "1")
			c.Want(p1, "body.prev_kv", Absent)
			g1 := c.Get("after create", c.Key("a"))
			c.Want(g1, "body.kvs[0].create_revision", itoa(rev(p1)))
			c.Want(g1, "body.kvs[0].mod_revision", itoa(rev(p1)))
			c.Want(g1, "body.kvs[0].version", "1")
			p2 := c.Put("update same value", c.Key("a"), "1")
			c.Check(rev(p2) == rev(p1)+1, "an identical put still takes a new revision")
			g2 := c.Get("after update", c.Key("a"))
			c.Want(g2, "body.kvs[0].create_revision", itoa(rev(p1)))
			c.Want(g2, "body.kvs[0].mod_revision", itoa(rev(p2)))
			c.Want(g2, "body.kvs[0].version", "2")
			e := c.Put("empty value", c.Key("e"), "")
			c.WantOK(e)
			ge := c.Get("empty value read", c.Key("e"))
			c.Want(ge, "body.kvs[0].value", Absent)
		}},
		{Name: "put_basic_http", Run: func(c *Conn) {
			p1 := c.Post("create", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1")})
			c.Want(p1, "body.prev_kv", Absent)
			c.Post("update", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("2")})
			g := c.Post("read", "/v3/kv/range", M{"key": c.BKey("a")})
			c.Want(g, "body.kvs[0].version", "2")
			c.Want(g, "body.kvs[0].create_revision", itoa(rev(p1)))
			n := c.Post("no value field", "/v3/kv/put", M{"key": c.BKey("e")})
			c.WantOK(n)
			gn := c.Post("read empty", "/v3/kv/range", M{"key": c.BKey("e")})
			c.Want(gn, "body.kvs[0].value", Absent)
			c.Want(gn, "body.kvs[0].version", "1")
			bin := "\x00\xff\xfe binary \n"
			c.WantOK(c.Post("binary", "/v3/kv/put", M{"key": B64(c.Key(bin)), "value": B64(bin)}))
			gb := c.Post("read binary", "/v3/kv/range", M{"key": B64(c.Key(bin))})
			c.Want(gb, "body.kvs[0].value", B64(bin))
		}},
		{Name: "put_prev_kv_grpc", Run: func(c *Conn) {
			p1 := c.Put("create", c.Key("a"), "1", clientv3.WithPrevKV())
			c.WantOK(p1)
			c.Want(p1, "body.prev_kv", Absent)
			p2 := c.Put("update", c.Key("a"), "2", clientv3.WithPrevKV())
			c.Want(p2, "body.prev_kv.value", B64("1"))
			c.Want(p2, "body.prev_kv.mod_revision", itoa(rev(p1)))
			c.Want(p2, "body.prev_kv.version", "1")
		}},
		{Name: "put_prev_kv_http", Run: func(c *Conn) {
			p1 := c.Post("create", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1"), "prev_kv": true})
			c.Want(p1, "body.prev_kv", Absent)
			p2 := c.Post("update", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("2"), "prev_kv": true})
			c.Want(p2, "body.prev_kv.value", B64("1"))
			c.Want(p2, "body.prev_kv.create_revision", itoa(rev(p1)))
		}},
		{Name: "put_ignore_value_grpc", Run: func(c *Conn) {
			seed(c, "a", "keep")
			p := c.Put("ignore value", c.Key("a"), "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV())
			c.Want(p, "body.prev_kv.value", B64("keep"))
			g := c.Get("read", c.Key("a"))
			c.Want(g, "body.kvs[0].value", B64("keep"))
			c.Want(g, "body.kvs[0].version", "2")
			m := c.Put("ignore value on missing key", c.Key("missing"), "", clientv3.WithIgnoreValue())
			c.WantGRPCError(m, "InvalidArgument", "etcdserver: key not found")
			v := c.Put("ignore value with a value", c.Key("a"), "x", clientv3.WithIgnoreValue())
			c.WantGRPCError(v, "InvalidArgument", "etcdserver: value is provided")
		}},
		{Name: "put_ignore_value_http", Run: func(c *Conn) {
			seed(c, "a", "keep")
			c.WantOK(c.Post("ignore value", "/v3/kv/put", M{"key": c.BKey("a"), "ignore_value": true}))
			g := c.Post("read", "/v3/kv/range", M{"key": c.BKey("a")})
			c.Want(g, "body.kvs[0].value", B64("keep"))
			m := c.Post("ignore value on missing key", "/v3/kv/put", M{"key": c.BKey("missing"), "ignore_value": true})
			c.WantHTTPError(m, 400, 3, "etcdserver: key not found")
			v := c.Post("ignore value with a value", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("x"), "ignore_value": true})
			c.WantHTTPError(v, 400, 3, "etcdserver: value is provided")
		}},
		{Name: "put_ignore_lease_grpc", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 600)
			c.WantOK(c.Put("with lease", c.Key("a"), "1", clientv3.WithLease(clientv3.LeaseID(id))))
			c.WantOK(c.Put("ignore lease", c.Key("a"), "2", clientv3.WithIgnoreLease()))
			g := c.Get("read", c.Key("a"))
			c.Want(g, "body.kvs[0].lease", itoa(id))
			c.Want(g, "body.kvs[0].value", B64("2"))
			m := c.Put("ignore lease on missing key", c.Key("missing"), "1", clientv3.WithIgnoreLease())
			c.WantGRPCError(m, "InvalidArgument", "etcdserver: key not found")
			l := c.Put("ignore lease with a lease", c.Key("a"), "3", clientv3.WithIgnoreLease(), clientv3.WithLease(clientv3.LeaseID(id)))
			c.WantGRPCError(l, "InvalidArgument", "etcdserver: lease is provided")
			c.WantOK(c.Put("drop lease", c.Key("a"), "4"))
			d := c.Get("read without lease", c.Key("a"))
			c.Want(d, "body.kvs[0].lease", Absent)
			revoke(c, "revoke", id)
		}},
		{Name: "put_ignore_lease_http", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 600)
			c.WantOK(c.Post("with lease", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1"), "lease": itoa(id)}))
			c.WantOK(c.Post("ignore lease", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("2"), "ignore_lease": true}))
			g := c.Post("read", "/v3/kv/range", M{"key": c.BKey("a")})
			c.Want(g, "body.kvs[0].lease", itoa(id))
			m := c.Post("ignore lease on missing key", "/v3/kv/put", M{"key": c.BKey("missing"), "ignore_lease": true})
			c.WantHTTPError(m, 400, 3, "etcdserver: key not found")
			revoke(c, "revoke", id)
		}},
		{Name: "put_lease_grpc", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 600)
			c.WantOK(c.Put("a", c.Key("a"), "1", clientv3.WithLease(clientv3.LeaseID(id))))
			g := c.Get("read", c.Key("a"))
			c.Want(g, "body.kvs[0].lease", itoa(id))
			u := c.Put("unknown lease", c.Key("b"), "1", clientv3.WithLease(clientv3.LeaseID(id+1)))
			c.WantGRPCError(u, "NotFound", "etcdserver: requested lease not found")
			revoke(c, "revoke", id)
			gone := c.Get("after revoke", c.Key("a"))
			c.Want(gone, "body.kvs", Absent)
		}},
		{Name: "put_lease_http", Run: func(c *Conn) {
			id := c.LeaseID(1)
			g := c.Post("grant", "/v3/lease/grant", M{"TTL": 600, "ID": id})
			c.Want(g, "body.ID", itoa(id))
			c.WantOK(c.Post("put lease as number", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1"), "lease": id}))
			c.WantOK(c.Post("put lease as string", "/v3/kv/put", M{"key": c.BKey("b"), "value": B64("1"), "lease": itoa(id)}))
			r := c.Post("read", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd("")})
			c.Want(r, "body.kvs[0].lease", itoa(id))
			c.Want(r, "body.kvs[1].lease", itoa(id))
			c.WantOK(c.Post("revoke", "/v3/lease/revoke", M{"ID": itoa(id)}))
		}},
	}
}

// deleteCases cover DeleteRange over both transports.
func deleteCases() []Case {
	return []Case{
		{Name: "delete_single_grpc", Run: func(c *Conn) {
			seed(c, "a", "1", "ab", "2")
			d := c.Delete("delete a", c.Key("a"), clientv3.WithPrevKV())
			c.Want(d, "body.deleted", "1")
			wantKeys(c, d, "body.prev_kvs", "a")
			g := c.Get("left", c.Key(""), clientv3.WithPrefix())
			wantKeys(c, g, "body.kvs", "ab")
		}},
		{Name: "delete_single_http", Run: func(c *Conn) {
			seed(c, "a", "1", "ab", "2")
			d := c.Post("delete a", "/v3/kv/deleterange", M{"key": c.BKey("a"), "prev_kv": true})
			c.Want(d, "body.deleted", "1")
			c.Want(d, "body.prev_kvs[0].value", B64("1"))
			n := c.Post("delete a without prev_kv", "/v3/kv/deleterange", M{"key": c.BKey("ab")})
			c.Want(n, "body.deleted", "1")
			c.Want(n, "body.prev_kvs", Absent)
		}},
		{Name: "delete_range_grpc", Run: func(c *Conn) {
			seed(c, "p/2", "2", "p/1", "1", "p/3", "3", "q", "x")
			d := c.Delete("delete p/", c.Key("p/"), clientv3.WithPrefix(), clientv3.WithPrevKV())
			c.Want(d, "body.deleted", "3")
			wantKeys(c, d, "body.prev_kvs", "p/1", "p/2", "p/3")
			r := c.Delete("delete [p, q)", c.Key("p"), clientv3.WithRange(c.Key("q")))
			c.Want(r, "body.deleted", Absent)
			g := c.Get("left", c.Key(""), clientv3.WithPrefix())
			wantKeys(c, g, "body.kvs", "q")
		}},
		{Name: "delete_range_http", Run: func(c *Conn) {
			seed(c, "p/2", "2", "p/1", "1", "p/3", "3", "q", "x")
			d := c.Post("delete p/", "/v3/kv/deleterange", M{"key": c.BKey("p/"), "range_end": c.BEnd("p/"), "prev_kv": true})
			c.Want(d, "body.deleted", "3")
			wantKeys(c, d, "body.prev_kvs", "p/1", "p/2", "p/3")
			g := c.Post("left", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd("")})
			wantKeys(c, g, "body.kvs", "q")
		}},
		{Name: "delete_miss_grpc", Run: func(c *Conn) {
			p := c.Put("a", c.Key("a"), "1")
			d := c.Delete("miss", c.Key("nothing"), clientv3.WithPrevKV())
			c.WantOK(d)
			c.Want(d, "body.deleted", Absent)
			c.Want(d, "body.prev_kvs", Absent)
			c.Want(d, "body.header.revision", itoa(rev(p)))
		}},
		{Name: "delete_miss_http", Run: func(c *Conn) {
			p := c.Post("a", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1")})
			d := c.Post("miss", "/v3/kv/deleterange", M{"key": c.BKey("nothing")})
			c.WantOK(d)
			c.Want(d, "body.deleted", Absent)
			c.Want(d, "body.header.revision", itoa(rev(p)))
			r := c.Post("ranged miss", "/v3/kv/deleterange", M{"key": c.BKey("x/"), "range_end": c.BEnd("x/")})
			c.Want(r, "body.deleted", Absent)
		}},
	}
}

// cmpCase is one integer compare of a txn case: the result, the operand as
// an offset from the key's current value, and whether the compare holds.
type cmpCase struct {
	result string // EQUAL, NOT_EQUAL, GREATER, LESS
	grpc   string // "=", "!=", ">", "<"
	delta  int64
	holds  bool
}

// compareMatrix lists, for every result, operands below, at and above the
// key's current value ("key <result> operand").
var compareMatrix = []cmpCase{
	{"EQUAL", "=", 0, true}, {"EQUAL", "=", 1, false}, {"EQUAL", "=", -1, false},
	{"NOT_EQUAL", "!=", 1, true}, {"NOT_EQUAL", "!=", 0, false}, {"NOT_EQUAL", "!=", -1, true},
	{"GREATER", ">", -1, true}, {"GREATER", ">", 0, false}, {"GREATER", ">", 1, false},
	{"LESS", "<", 1, true}, {"LESS", "<", 0, false}, {"LESS", "<", -1, false},
}

// txnTarget describes one integer compare target for txnTargetCases.
type txnTarget struct {
	name string
	// setup prepares key "k" and returns its current value of the target.
	setup func(c *Conn) int64
	// grpcCmp and httpCmp build a compare of "k" against v.
	grpcCmp func(c *Conn, op string, v int64) clientv3.Cmp
	httpCmp func(v int64) M
	// teardown, when set, runs at the end of the case.
	teardown func(c *Conn)
}

// txnTargetCases builds the gRPC and HTTP cases for one compare target:
// every compare of compareMatrix, each with a put in the success branch and
// a range in the failure branch.
func txnTargetCases(tt txnTarget) []Case {
	return []Case{
		{Name: "txn_compare_" + tt.name + "_grpc", Run: func(c *Conn) {
			cur := tt.setup(c)
			for i, cc := range compareMatrix {
				o := c.Txn(fmt.Sprintf("%s %s cur%+d", tt.name, cc.result, cc.delta),
					[]clientv3.Cmp{tt.grpcCmp(c, cc.grpc, cur+cc.delta)},
					[]clientv3.Op{clientv3.OpPut(c.Key(fmt.Sprintf("then/%d", i)), "t")},
					[]clientv3.Op{clientv3.OpGet(c.Key("k"))})
				wantSucceeded(c, o, cc.holds)
			}
			if tt.teardown != nil {
				tt.teardown(c)
			}
		}},
		{Name: "txn_compare_" + tt.name + "_http", Run: func(c *Conn) {
			cur := tt.setup(c)
			for i, cc := range compareMatrix {
				cmp := tt.httpCmp(cur + cc.delta)
				cmp["key"] = c.BKey("k")
				cmp["target"] = tt.name
				cmp["result"] = cc.result
				o := c.Post(fmt.Sprintf("%s %s cur%+d", tt.name, cc.result, cc.delta), "/v3/kv/txn", M{
					"compare": []M{cmp},
					"success": []M{{"request_put": M{"key": c.BKey(fmt.Sprintf("then/%d", i)), "value": B64("t")}}},
					"failure": []M{{"request_range": M{"key": c.BKey("k")}}},
				})
				wantSucceeded(c, o, cc.holds)
			}
			if tt.teardown != nil {
				tt.teardown(c)
			}
		}},
	}
}

// wantSucceeded checks a txn reply: "succeeded" is true, or absent when
// the compares failed (proto3 JSON omits false).
func wantSucceeded(c *Conn, o *Obs, holds bool) {
	c.t.Helper()
	if holds {
		c.Want(o, "body.succeeded", true)
		c.Want(o, "body.responses[0].response_put.header.revision", itoa(rev(o)))
		return
	}
	c.WantOK(o)
	c.Want(o, "body.succeeded", Absent)
	c.WantLen(o, "body.responses[0].response_range.kvs", 1)
}

// txnCases cover compares, branches, nesting and txn limits.
func txnCases() []Case {
	targets := []txnTarget{
		{
			name:  "VERSION",
			setup: func(c *Conn) int64 { seed(c, "k", "1", "k", "2", "k", "3"); return 3 },
			grpcCmp: func(c *Conn, op string, v int64) clientv3.Cmp {
				return clientv3.Compare(clientv3.Version(c.Key("k")), op, v)
			},
			httpCmp: func(v int64) M { return M{"version": v} },
		},
		{
			name: "CREATE",
			setup: func(c *Conn) int64 {
				r := rev(c.Put("create k", c.Key("k"), "1"))
				seed(c, "k", "2")
				return r
			},
			grpcCmp: func(c *Conn, op string, v int64) clientv3.Cmp {
				return clientv3.Compare(clientv3.CreateRevision(c.Key("k")), op, v)
			},
			httpCmp: func(v int64) M { return M{"create_revision": itoa(v)} },
		},
		{
			name:  "MOD",
			setup: func(c *Conn) int64 { seed(c, "k", "1"); return rev(c.Put("update k", c.Key("k"), "2")) },
			grpcCmp: func(c *Conn, op string, v int64) clientv3.Cmp {
				return clientv3.Compare(clientv3.ModRevision(c.Key("k")), op, v)
			},
			httpCmp: func(v int64) M { return M{"mod_revision": v} },
		},
		{
			name: "LEASE",
			setup: func(c *Conn) int64 {
				id := c.LeaseID(1)
				grant(c, "grant", id, 600)
				c.WantOK(c.Put("k with lease", c.Key("k"), "1", clientv3.WithLease(clientv3.LeaseID(id))))
				return id
			},
			grpcCmp: func(c *Conn, op string, v int64) clientv3.Cmp {
				return clientv3.Compare(clientv3.LeaseValue(c.Key("k")), op, v)
			},
			httpCmp:  func(v int64) M { return M{"lease": itoa(v)} },
			teardown: func(c *Conn) { revoke(c, "revoke", c.LeaseID(1)) },
		},
	}
	var cases []Case
	for _, tt := range targets {
		cases = append(cases, txnTargetCases(tt)...)
	}
	cases = append(cases, txnValueCases()...)
	cases = append(cases, txnStructureCases()...)
	cases = append(cases, txnLimitCases()...)
	return cases
}

// txnValueCases compare VALUE, whose operand is bytes rather than an int.
func txnValueCases() []Case {
	values := []struct {
		result, op, operand string
		holds               bool
	}{
		{"EQUAL", "=", "m", true}, {"EQUAL", "=", "n", false},
		{"NOT_EQUAL", "!=", "n", true}, {"NOT_EQUAL", "!=", "m", false},
		{"GREATER", ">", "a", true}, {"GREATER", ">", "m", false}, {"GREATER", ">", "ma", false},
		{"LESS", "<", "ma", true}, {"LESS", "<", "m", false}, {"LESS", "<", "", false},
	}
	return []Case{
		{Name: "txn_compare_VALUE_grpc", Run: func(c *Conn) {
			seed(c, "k", "m")
			for i, v := range values {
				o := c.Txn(fmt.Sprintf("VALUE %s %q", v.result, v.operand),
					[]clientv3.Cmp{clientv3.Compare(clientv3.Value(c.Key("k")), v.op, v.operand)},
					[]clientv3.Op{clientv3.OpPut(c.Key(fmt.Sprintf("then/%d", i)), "t")},
					[]clientv3.Op{clientv3.OpGet(c.Key("k"))})
				wantSucceeded(c, o, v.holds)
			}
			missing := c.Txn("VALUE of a missing key", []clientv3.Cmp{clientv3.Compare(clientv3.Value(c.Key("none")), "!=", "x")}, nil, nil)
			c.Want(missing, "body.succeeded", Absent)
		}},
		{Name: "txn_compare_VALUE_http", Run: func(c *Conn) {
			seed(c, "k", "m")
			for i, v := range values {
				o := c.Post(fmt.Sprintf("VALUE %s %q", v.result, v.operand), "/v3/kv/txn", M{
					"compare": []M{{"key": c.BKey("k"), "target": "VALUE", "result": v.result, "value": B64(v.operand)}},
					"success": []M{{"request_put": M{"key": c.BKey(fmt.Sprintf("then/%d", i)), "value": B64("t")}}},
					"failure": []M{{"request_range": M{"key": c.BKey("k")}}},
				})
				wantSucceeded(c, o, v.holds)
			}
			n := c.Post("enums as numbers", "/v3/kv/txn", M{
				"compare": []M{{"key": c.BKey("k"), "target": 3, "result": 0, "value": B64("m")}},
			})
			c.Want(n, "body.succeeded", true)
		}},
	}
}

// txnStructureCases cover branches with every op type, nesting, compares
// over a range, empty and read-only txns.
func txnStructureCases() []Case {
	return []Case{
		{Name: "txn_branches_grpc", Run: func(c *Conn) {
			seed(c, "a", "1", "d", "x", "e", "y")
			ops := func(tag string) []clientv3.Op {
				return []clientv3.Op{
					clientv3.OpGet(c.Key(""), clientv3.WithPrefix()),
					clientv3.OpPut(c.Key(tag), "v", clientv3.WithPrevKV()),
					clientv3.OpDelete(c.Key("d"), clientv3.WithPrevKV()),
					clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpGet(c.Key("a"))}, nil),
				}
			}
			s := c.Txn("success branch", []clientv3.Cmp{clientv3.Compare(clientv3.Value(c.Key("a")), "=", "1")}, ops("s"), ops("f"))
			c.Want(s, "body.succeeded", true)
			c.WantLen(s, "body.responses", 4)
			c.Want(s, "body.responses[2].response_delete_range.deleted", "1")
			c.Want(s, "body.responses[3].response_txn.succeeded", true)
			f := c.Txn("failure branch", []clientv3.Cmp{clientv3.Compare(clientv3.Value(c.Key("a")), "=", "2")}, ops("s2"), ops("f"))
			c.Want(f, "body.succeeded", Absent)
			c.Want(f, "body.responses[2].response_delete_range.deleted", Absent)
			g := c.Get("state", c.Key(""), clientv3.WithPrefix())
			wantKeys(c, g, "body.kvs", "a", "e", "f", "s")
		}},
		{Name: "txn_branches_http", Run: func(c *Conn) {
			seed(c, "a", "1", "d", "x", "e", "y")
			ops := func(tag string) []M {
				return []M{
					{"request_range": M{"key": c.BKey(""), "range_end": c.BEnd("")}},
					{"request_put": M{"key": c.BKey(tag), "value": B64("v"), "prev_kv": true}},
					{"request_delete_range": M{"key": c.BKey("d"), "prev_kv": true}},
					{"request_txn": M{"success": []M{{"request_range": M{"key": c.BKey("a")}}}}},
				}
			}
			s := c.Post("success branch", "/v3/kv/txn", M{
				"compare": []M{{"key": c.BKey("a"), "target": "VALUE", "result": "EQUAL", "value": B64("1")}},
				"success": ops("s"), "failure": ops("f"),
			})
			c.Want(s, "body.succeeded", true)
			c.Want(s, "body.responses[2].response_delete_range.prev_kvs[0].value", B64("x"))
			f := c.Post("failure branch", "/v3/kv/txn", M{
				"compare": []M{{"key": c.BKey("a"), "target": "VALUE", "result": "EQUAL", "value": B64("2")}},
				"success": ops("s2"), "failure": ops("f"),
			})
			c.Want(f, "body.succeeded", Absent)
			c.Want(f, "body.responses[1].response_put.prev_kv", Absent)
		}},
		{Name: "txn_nested_grpc", Run: func(c *Conn) {
			seed(c, "a", "1")
			inner := clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.Version(c.Key("a")), ">", 5)},
				[]clientv3.Op{clientv3.OpPut(c.Key("inner-then"), "x")},
				[]clientv3.Op{clientv3.OpPut(c.Key("inner-else"), "y"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpGet(c.Key("inner-else"))}, nil)})
			o := c.Txn("outer", []clientv3.Cmp{clientv3.Compare(clientv3.Version(c.Key("a")), "=", 1)},
				[]clientv3.Op{clientv3.OpPut(c.Key("outer"), "z"), inner}, nil)
			c.Want(o, "body.succeeded", true)
			c.Want(o, "body.responses[1].response_txn.succeeded", Absent)
			c.Want(o, "body.responses[1].response_txn.responses[1].response_txn.responses[0].response_range.kvs[0].value", B64("y"))
			g := c.Get("state", c.Key(""), clientv3.WithPrefix())
			wantKeys(c, g, "body.kvs", "a", "inner-else", "outer")
			c.Want(g, "body.kvs[1].mod_revision", itoa(rev(o)))
		}},
		{Name: "txn_nested_http", Run: func(c *Conn) {
			seed(c, "a", "1")
			o := c.Post("outer", "/v3/kv/txn", M{
				"success": []M{{"request_txn": M{
					"compare": []M{{"key": c.BKey("a"), "target": "VERSION", "result": "EQUAL", "version": 1}},
					"success": []M{{"request_put": M{"key": c.BKey("n"), "value": B64("1")}},
						{"request_txn": M{"failure": []M{{"request_delete_range": M{"key": c.BKey("a")}}},
							"compare": []M{{"key": c.BKey("a"), "target": "VALUE", "result": "EQUAL", "value": B64("no")}}}}},
				}}},
			})
			c.Want(o, "body.succeeded", true)
			c.Want(o, "body.responses[0].response_txn.succeeded", true)
			c.Want(o, "body.responses[0].response_txn.responses[1].response_txn.responses[0].response_delete_range.deleted", "1")
		}},
		{Name: "txn_compare_range_grpc", Run: func(c *Conn) {
			seed(c, "r/1", "a", "r/2", "b", "r/2", "b")
			pfx := func(cmp clientv3.Cmp) []clientv3.Cmp { return []clientv3.Cmp{cmp.WithPrefix()} }
			all := c.Txn("all versions > 0", pfx(clientv3.Compare(clientv3.Version(c.Key("r/")), ">", 0)), nil, nil)
			c.Want(all, "body.succeeded", true)
			one := c.Txn("all versions = 1", pfx(clientv3.Compare(clientv3.Version(c.Key("r/")), "=", 1)), nil, nil)
			c.Want(one, "body.succeeded", Absent)
			empty := c.Txn("empty range version = 0", pfx(clientv3.Compare(clientv3.Version(c.Key("none/")), "=", 0)), nil, nil)
			c.Want(empty, "body.succeeded", true)
			val := c.Txn("all values < c", []clientv3.Cmp{clientv3.Compare(clientv3.Value(c.Key("r/1")), "<", "c").WithRange(c.Key("r/3"))}, nil, nil)
			c.Want(val, "body.succeeded", true)
		}},
		{Name: "txn_compare_range_http", Run: func(c *Conn) {
			seed(c, "r/1", "a", "r/2", "b", "r/2", "b")
			cmp := func(label string, m M) *Obs {
				m["key"] = c.BKey("r/")
				m["range_end"] = c.BEnd("r/")
				return c.Post(label, "/v3/kv/txn", M{"compare": []M{m}})
			}
			c.Want(cmp("all versions > 0", M{"target": "VERSION", "result": "GREATER", "version": 0}), "body.succeeded", true)
			c.Want(cmp("all versions = 1", M{"target": "VERSION", "result": "EQUAL", "version": 1}), "body.succeeded", Absent)
			c.Want(cmp("all mod < 1e9", M{"target": "MOD", "result": "LESS", "mod_revision": 1000000000}), "body.succeeded", true)
			c.Want(cmp("all values != b", M{"target": "VALUE", "result": "NOT_EQUAL", "value": B64("b")}), "body.succeeded", Absent)
		}},
		{Name: "txn_empty_and_read_only_grpc", Run: func(c *Conn) {
			p := c.Put("a", c.Key("a"), "1")
			e := c.Txn("empty", nil, nil, nil)
			c.Want(e, "body.succeeded", true)
			c.Want(e, "body.header.revision", itoa(rev(p)))
			r := c.Txn("read only", nil, []clientv3.Op{clientv3.OpGet(c.Key("a"))}, nil)
			c.Want(r, "body.header.revision", itoa(rev(p)))
			c.Want(r, "body.responses[0].response_range.kvs[0].value", B64("1"))
			d := c.Txn("delete miss", nil, []clientv3.Op{clientv3.OpDelete(c.Key("none"))}, nil)
			c.Want(d, "body.header.revision", itoa(rev(p)))
		}},
		{Name: "txn_empty_and_read_only_http", Run: func(c *Conn) {
			p := c.Post("a", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1")})
			e := c.Post("empty body", "/v3/kv/txn", M{})
			c.Want(e, "body.succeeded", true)
			c.Want(e, "body.header.revision", itoa(rev(p)))
			r := c.Post("read only", "/v3/kv/txn", M{"success": []M{{"requestRange": M{"key": c.BKey("a")}}}})
			c.Want(r, "body.responses[0].response_range.count", "1")
			c.Want(r, "body.header.revision", itoa(rev(p)))
		}},
	}
}

// txnLimitCases cover the 128-operation limit and duplicate key writes.
func txnLimitCases() []Case {
	return []Case{
		{Name: "txn_too_many_ops_grpc", Run: func(c *Conn) {
			ops := make([]clientv3.Op, 129)
			for i := range ops {
				ops[i] = clientv3.OpPut(c.Key(fmt.Sprintf("k%03d", i)), "v")
			}
			o := c.Txn("129 puts", nil, ops, nil)
			c.WantGRPCError(o, "InvalidArgument", "etcdserver: too many operations in txn request")
			ok := c.Txn("128 puts", nil, ops[:128], nil)
			c.Want(ok, "body.succeeded", true)
			c.WantLen(ok, "body.responses", 128)
		}},
		{Name: "txn_too_many_ops_http", Run: func(c *Conn) {
			ops := make([]M, 129)
			for i := range ops {
				ops[i] = M{"request_range": M{"key": c.BKey(fmt.Sprintf("k%03d", i))}}
			}
			o := c.Post("129 ranges in failure", "/v3/kv/txn", M{"failure": ops})
			c.WantHTTPError(o, 400, 3, "etcdserver: too many operations in txn request")
			ok := c.Post("128 ranges", "/v3/kv/txn", M{"success": ops[:128]})
			c.WantLen(ok, "body.responses", 128)
		}},
		{Name: "txn_duplicate_key_grpc", Run: func(c *Conn) {
			seed(c, "p/1", "x")
			dup := c.Txn("two puts", nil, []clientv3.Op{clientv3.OpPut(c.Key("a"), "1"), clientv3.OpPut(c.Key("a"), "2")}, nil)
			c.WantGRPCError(dup, "InvalidArgument", "etcdserver: duplicate key given in txn request")
			pd := c.Txn("put inside deleted range", nil, []clientv3.Op{
				clientv3.OpDelete(c.Key("p/"), clientv3.WithPrefix()), clientv3.OpPut(c.Key("p/1"), "2")}, nil)
			c.WantGRPCError(pd, "InvalidArgument", "etcdserver: duplicate key given in txn request")
			branches := c.Txn("same key in both branches", nil,
				[]clientv3.Op{clientv3.OpPut(c.Key("a"), "1")}, []clientv3.Op{clientv3.OpPut(c.Key("a"), "2")})
			c.Want(branches, "body.succeeded", true)
			reads := c.Txn("put and get same key", nil, []clientv3.Op{clientv3.OpPut(c.Key("a"), "3"), clientv3.OpGet(c.Key("a"))}, nil)
			c.Want(reads, "body.responses[1].response_range.kvs[0].value", B64("3"))
		}},
		{Name: "txn_duplicate_key_http", Run: func(c *Conn) {
			put := func(v string) M { return M{"request_put": M{"key": c.BKey("a"), "value": B64(v)}} }
			dup := c.Post("two puts", "/v3/kv/txn", M{"success": []M{put("1"), put("2")}})
			c.WantHTTPError(dup, 400, 3, "etcdserver: duplicate key given in txn request")
			nested := c.Post("put and nested put", "/v3/kv/txn", M{"success": []M{put("1"), {"request_txn": M{"success": []M{put("2")}}}}})
			c.WantHTTPError(nested, 400, 3, "etcdserver: duplicate key given in txn request")
			dd := c.Post("two deletes", "/v3/kv/txn", M{"success": []M{
				{"request_delete_range": M{"key": c.BKey("a")}}, {"request_delete_range": M{"key": c.BKey("a")}}}})
			c.WantOK(dd)
		}},
		// A delete to "\x00" (every key from its key on) binds no put in
		// etcd 3.4's duplicate check, which compares range_end as raw
		// bytes; the delete still deletes every key from its key on.
		// High keys keep other cases' data out of its reach.
		{Name: "txn_delete_from_key_then_put_grpc", Run: func(c *Conn) {
			for _, k := range []string{"a", "b", "c"} {
				c.WantOK(c.Put("seed "+k, highKey(c, k), k))
			}
			o := c.Txn("delete from a, put b", nil, []clientv3.Op{
				clientv3.OpDelete(highKey(c, "a"), clientv3.WithFromKey()), clientv3.OpPut(highKey(c, "b"), "x")}, nil)
			c.Want(o, "body.succeeded", true)
			g := c.Get("after", highKey(c, ""), clientv3.WithPrefix())
			c.Want(g, "body.count", "1")
			c.Want(g, "body.kvs[0].value", B64("x"))
			c.Want(g, "body.kvs[0].version", "1")
			nested := c.Txn("nested delete from a, then put a", nil, []clientv3.Op{
				clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpDelete(highKey(c, "a"), clientv3.WithFromKey())}, nil),
				clientv3.OpPut(highKey(c, "a"), "y")}, nil)
			c.Want(nested, "body.succeeded", true)
			dup := c.Txn("beside a real range", nil, []clientv3.Op{
				clientv3.OpDelete(highKey(c, "a"), clientv3.WithFromKey()),
				clientv3.OpDelete(highKey(c, "c"), clientv3.WithRange(highKey(c, "e"))),
				clientv3.OpPut(highKey(c, "d"), "z")}, nil)
			c.WantGRPCError(dup, "InvalidArgument", "etcdserver: duplicate key given in txn request")
			d := c.Delete("cleanup", highKey(c, ""), clientv3.WithPrefix())
			c.Want(d, "body.deleted", "1")
		}},
		{Name: "txn_delete_from_key_then_put_http", Run: func(c *Conn) {
			for _, k := range []string{"a", "b", "c"} {
				c.WantOK(c.Post("seed "+k, "/v3/kv/put", M{"key": B64(highKey(c, k)), "value": B64(k)}))
			}
			o := c.Post("delete from a, put b", "/v3/kv/txn", M{"success": []M{
				{"request_delete_range": M{"key": B64(highKey(c, "a")), "range_end": "AA=="}},
				{"request_put": M{"key": B64(highKey(c, "b")), "value": B64("x")}}}})
			c.Want(o, "body.succeeded", true)
			g := c.Post("after", "/v3/kv/range", M{"key": B64(highKey(c, "")), "range_end": B64(clientv3.GetPrefixRangeEnd(highKey(c, "")))})
			c.Want(g, "body.count", "1")
			c.Want(g, "body.kvs[0].value", B64("x"))
			inverted := c.Post("inverted range, put inside it", "/v3/kv/txn", M{"success": []M{
				{"request_delete_range": M{"key": B64(highKey(c, "z")), "range_end": B64(highKey(c, "b"))}},
				{"request_put": M{"key": B64(highKey(c, "c")), "value": B64("y")}}}})
			c.Want(inverted, "body.succeeded", true)
			d := c.Post("cleanup", "/v3/kv/deleterange", M{"key": B64(highKey(c, "")), "range_end": B64(clientv3.GetPrefixRangeEnd(highKey(c, "")))})
			c.Want(d, "body.deleted", "2")
		}},
	}
}

// compactCases cover compaction itself and its errors.
func compactCases() []Case {
	return []Case{
		{Name: "compact_grpc", Run: func(c *Conn) {
			r1 := rev(c.Put("a=1", c.Key("a"), "1"))
			r2 := rev(c.Put("a=2", c.Key("a"), "2"))
			r3 := rev(c.Put("a=3", c.Key("a"), "3"))
			c.WantOK(c.Compact("compact r2", r2))
			again := c.Compact("compact r1", r1)
			c.WantGRPCError(again, "OutOfRange", "etcdserver: mvcc: required revision has been compacted")
			same := c.Compact("compact r2 again", r2)
			c.WantGRPCError(same, "OutOfRange", "etcdserver: mvcc: required revision has been compacted")
			future := c.Compact("compact future", r3+100)
			c.WantGRPCError(future, "OutOfRange", "etcdserver: mvcc: required revision is a future revision")
			g := c.Get("at r2", c.Key("a"), clientv3.WithRev(r2))
			c.Want(g, "body.kvs[0].value", B64("2"))
		}},
		{Name: "compact_http", Run: func(c *Conn) {
			r1 := rev(c.Post("a=1", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1")}))
			r2 := rev(c.Post("a=2", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("2")}))
			o := c.Post("compact r2", "/v3/kv/compaction", M{"revision": itoa(r2)})
			c.WantOK(o)
			c.Want(o, "body.header.revision", itoa(r2))
			again := c.Post("compact r1", "/v3/kv/compaction", M{"revision": r1})
			c.WantHTTPError(again, 400, 11, "etcdserver: mvcc: required revision has been compacted")
			future := c.Post("compact future", "/v3/kv/compaction", M{"revision": r2 + 100})
			c.WantHTTPError(future, 400, 11, "etcdserver: mvcc: required revision is a future revision")
			h := c.Post("historical at r1", "/v3/kv/range", M{"key": c.BKey("a"), "revision": r1})
			c.WantHTTPError(h, 400, 11, "etcdserver: mvcc: required revision has been compacted")
		}},
	}
}
