package difftest

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// highKey is a key above every /difftest/ key, for "all keys >= key"
// ranges (range_end "\x00") that must not see other cases' data.
func highKey(c *Conn, suffix string) string {
	return "\xff" + c.Key(suffix)
}

// rangeCases cover every RangeRequest option except sorting.
func rangeCases() []Case {
	return []Case{
		{Name: "range_single_grpc", Run: func(c *Conn) {
			seed(c, "a", "1", "ab", "2")
			o := c.Get("hit", c.Key("a"))
			wantKeys(c, o, "body.kvs", "a")
			c.Want(o, "body.count", "1")
			c.Want(o, "body.kvs[0].value", B64("1"))
			c.Want(o, "body.more", Absent)
			miss := c.Get("miss", c.Key("zz"))
			c.WantOK(miss)
			c.Want(miss, "body.kvs", Absent)
			c.Want(miss, "body.count", Absent)
		}},
		{Name: "range_single_http", Run: func(c *Conn) {
			seed(c, "a", "1", "ab", "2")
			o := c.Post("hit", "/v3/kv/range", M{"key": c.BKey("a")})
			wantKeys(c, o, "body.kvs", "a")
			c.Want(o, "body.count", "1")
			c.Want(o, "body.kvs[0].version", "1")
			miss := c.Post("miss", "/v3/kv/range", M{"key": c.BKey("zz")})
			c.WantOK(miss)
			c.Want(miss, "body.kvs", Absent)
			c.Want(miss, "body.count", Absent)
		}},
		{Name: "range_prefix_grpc", Run: func(c *Conn) {
			seed(c, "p/3", "c", "p/1", "a", "p/2", "b", "q", "x", "p", "parent")
			o := c.Get("prefix", c.Key("p/"), clientv3.WithPrefix())
			wantKeys(c, o, "body.kvs", "p/1", "p/2", "p/3")
			c.Want(o, "body.count", "3")
			r := c.Get("range", c.Key("p"), clientv3.WithRange(c.Key("p/2")))
			wantKeys(c, r, "body.kvs", "p", "p/1")
		}},
		{Name: "range_prefix_http", Run: func(c *Conn) {
			seed(c, "p/3", "c", "p/1", "a", "p/2", "b", "q", "x", "p", "parent")
			o := c.Post("prefix", "/v3/kv/range", M{"key": c.BKey("p/"), "range_end": c.BEnd("p/")})
			wantKeys(c, o, "body.kvs", "p/1", "p/2", "p/3")
			c.Want(o, "body.count", "3")
			r := c.Post("range", "/v3/kv/range", M{"key": c.BKey("p"), "range_end": c.BKey("p/2")})
			wantKeys(c, r, "body.kvs", "p", "p/1")
			empty := c.Post("empty interval", "/v3/kv/range", M{"key": c.BKey("q"), "range_end": c.BKey("p")})
			c.WantOK(empty)
			c.Want(empty, "body.kvs", Absent)
		}},
		{Name: "range_fromkey_grpc", Run: func(c *Conn) {
			for _, k := range []string{"m1", "m2", "z"} {
				c.WantOK(c.Put("seed "+k, highKey(c, k), k))
			}
			o := c.Get("from m2", highKey(c, "m2"), clientv3.WithFromKey())
			c.Want(o, "body.count", "2")
			c.Want(o, "body.kvs[0].key", B64(highKey(c, "m2")))
			c.Want(o, "body.kvs[1].key", B64(highKey(c, "z")))
			d := c.Delete("cleanup", highKey(c, ""), clientv3.WithFromKey())
			c.Want(d, "body.deleted", "3")
		}},
		{Name: "range_fromkey_http", Run: func(c *Conn) {
			for _, k := range []string{"m1", "m2", "z"} {
				c.WantOK(c.Post("seed "+k, "/v3/kv/put", M{"key": B64(highKey(c, k)), "value": B64(k)}))
			}
			o := c.Post("from m2", "/v3/kv/range", M{"key": B64(highKey(c, "m2")), "range_end": B64("\x00")})
			c.Want(o, "body.count", "2")
			c.Want(o, "body.kvs[1].key", B64(highKey(c, "z")))
			d := c.Post("cleanup", "/v3/kv/deleterange", M{"key": B64(highKey(c, "")), "range_end": "AA=="})
			c.Want(d, "body.deleted", "3")
		}},
		{Name: "range_limit_grpc", Run: func(c *Conn) {
			seed(c, "k1", "1", "k2", "2", "k3", "3", "k4", "4", "k5", "5")
			o := c.Get("limit 2", c.Key("k"), clientv3.WithPrefix(), clientv3.WithLimit(2))
			wantKeys(c, o, "body.kvs", "k1", "k2")
			c.Want(o, "body.more", true)
			c.Want(o, "body.count", "5")
			all := c.Get("limit 5", c.Key("k"), clientv3.WithPrefix(), clientv3.WithLimit(5))
			c.Want(all, "body.more", Absent)
			c.WantLen(all, "body.kvs", 5)
		}},
		{Name: "range_limit_http", Run: func(c *Conn) {
			seed(c, "k1", "1", "k2", "2", "k3", "3", "k4", "4", "k5", "5")
			o := c.Post("limit 2", "/v3/kv/range", M{"key": c.BKey("k"), "range_end": c.BEnd("k"), "limit": 2})
			wantKeys(c, o, "body.kvs", "k1", "k2")
			c.Want(o, "body.more", true)
			c.Want(o, "body.count", "5")
			s := c.Post("limit as string", "/v3/kv/range", M{"key": c.BKey("k"), "range_end": c.BEnd("k"), "limit": "4"})
			c.WantLen(s, "body.kvs", 4)
			all := c.Post("limit 6", "/v3/kv/range", M{"key": c.BKey("k"), "range_end": c.BEnd("k"), "limit": 6})
			c.Want(all, "body.more", Absent)
			c.WantLen(all, "body.kvs", 5)
		}},
		{Name: "range_keys_only_grpc", Run: func(c *Conn) {
			seed(c, "a", "1", "b", "2")
			o := c.Get("keys only", c.Key(""), clientv3.WithPrefix(), clientv3.WithKeysOnly())
			wantKeys(c, o, "body.kvs", "a", "b")
			c.Want(o, "body.kvs[0].value", Absent)
			c.Want(o, "body.kvs[1].version", "1")
		}},
		{Name: "range_keys_only_http", Run: func(c *Conn) {
			seed(c, "a", "1", "b", "2")
			o := c.Post("keys only", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd(""), "keys_only": true})
			wantKeys(c, o, "body.kvs", "a", "b")
			c.Want(o, "body.kvs[0].value", Absent)
			c.Want(o, "body.count", "2")
		}},
		{Name: "range_count_only_grpc", Run: func(c *Conn) {
			seed(c, "a", "1", "b", "2", "c", "3")
			o := c.Get("count only", c.Key(""), clientv3.WithPrefix(), clientv3.WithCountOnly())
			c.Want(o, "body.kvs", Absent)
			c.Want(o, "body.count", "3")
			l := c.Get("count only with limit", c.Key(""), clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithLimit(1))
			c.Want(l, "body.count", "3")
		}},
		{Name: "range_count_only_http", Run: func(c *Conn) {
			seed(c, "a", "1", "b", "2", "c", "3")
			o := c.Post("count only", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd(""), "count_only": true})
			c.Want(o, "body.kvs", Absent)
			c.Want(o, "body.count", "3")
			z := c.Post("count only empty", "/v3/kv/range", M{"key": c.BKey("x"), "count_only": true})
			c.Want(z, "body.count", Absent)
		}},
		{Name: "range_mod_revision_filters_grpc", Run: func(c *Conn) {
			r1 := rev(c.Put("a", c.Key("a"), "1"))
			r2 := rev(c.Put("b", c.Key("b"), "1"))
			r3 := rev(c.Put("c", c.Key("c"), "1"))
			c.Put("a again", c.Key("a"), "2")
			c.Check(r1 < r2 && r2 < r3, "revisions must increase: %d %d %d", r1, r2, r3)
			o := c.Get("min mod", c.Key(""), clientv3.WithPrefix(), clientv3.WithMinModRev(r3))
			wantKeys(c, o, "body.kvs", "a", "c")
			x := c.Get("max mod", c.Key(""), clientv3.WithPrefix(), clientv3.WithMaxModRev(r2))
			wantKeys(c, x, "body.kvs", "b")
			b := c.Get("min and max mod", c.Key(""), clientv3.WithPrefix(), clientv3.WithMinModRev(r2), clientv3.WithMaxModRev(r3))
			wantKeys(c, b, "body.kvs", "b", "c")
		}},
		{Name: "range_mod_revision_filters_http", Run: func(c *Conn) {
			seed(c, "a", "1")
			r2 := rev(c.Put("b", c.Key("b"), "1"))
			r3 := rev(c.Put("c", c.Key("c"), "1"))
			c.Put("a again", c.Key("a"), "2")
			o := c.Post("min mod", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd(""), "min_mod_revision": r3})
			wantKeys(c, o, "body.kvs", "a", "c")
			x := c.Post("max mod", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd(""), "max_mod_revision": strconv.FormatInt(r2, 10)})
			wantKeys(c, x, "body.kvs", "b")
			e := c.Post("min above all", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd(""), "min_mod_revision": r3 + 100})
			c.Want(e, "body.kvs", Absent)
		}},
		{Name: "range_create_revision_filters_grpc", Run: func(c *Conn) {
			seed(c, "b", "1")
			r2 := rev(c.Put("a", c.Key("a"), "1"))
			r3 := rev(c.Put("c", c.Key("c"), "1"))
			c.Put("b again", c.Key("b"), "2")
			o := c.Get("min create", c.Key(""), clientv3.WithPrefix(), clientv3.WithMinCreateRev(r2))
			wantKeys(c, o, "body.kvs", "a", "c")
			x := c.Get("max create", c.Key(""), clientv3.WithPrefix(), clientv3.WithMaxCreateRev(r2))
			wantKeys(c, x, "body.kvs", "a", "b")
			b := c.Get("min and max create", c.Key(""), clientv3.WithPrefix(), clientv3.WithMinCreateRev(r3), clientv3.WithMaxCreateRev(r3))
			wantKeys(c, b, "body.kvs", "c")
		}},
		{Name: "range_create_revision_filters_http", Run: func(c *Conn) {
			seed(c, "b", "1")
			r2 := rev(c.Put("a", c.Key("a"), "1"))
			c.Put("c", c.Key("c"), "1")
			c.Put("b again", c.Key("b"), "2")
			o := c.Post("min create", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd(""), "min_create_revision": r2})
			wantKeys(c, o, "body.kvs", "a", "c")
			x := c.Post("max create", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd(""), "max_create_revision": r2})
			wantKeys(c, x, "body.kvs", "a", "b")
		}},
		{Name: "range_historical_grpc", Run: func(c *Conn) {
			r1 := rev(c.Put("a=1", c.Key("a"), "1"))
			r2 := rev(c.Put("a=2", c.Key("a"), "2"))
			r3 := rev(c.Delete("delete a", c.Key("a")))
			c.Put("b", c.Key("b"), "1")
			at1 := c.Get("a at r1", c.Key("a"), clientv3.WithRev(r1))
			c.Want(at1, "body.kvs[0].value", B64("1"))
			c.Want(at1, "body.kvs[0].version", "1")
			at2 := c.Get("prefix at r2", c.Key(""), clientv3.WithPrefix(), clientv3.WithRev(r2))
			wantKeys(c, at2, "body.kvs", "a")
			c.Want(at2, "body.kvs[0].value", B64("2"))
			at3 := c.Get("a at r3", c.Key("a"), clientv3.WithRev(r3))
			c.Want(at3, "body.kvs", Absent)
			c.Check(rev(at3) > r3, "a historical read answers with the current revision in its header")
		}},
		{Name: "range_historical_http", Run: func(c *Conn) {
			r1 := rev(c.Post("a=1", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1")}))
			r2 := rev(c.Post("a=2", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("2")}))
			c.Post("delete a", "/v3/kv/deleterange", M{"key": c.BKey("a")})
			at1 := c.Post("a at r1", "/v3/kv/range", M{"key": c.BKey("a"), "revision": r1})
			c.Want(at1, "body.kvs[0].value", B64("1"))
			at2 := c.Post("a at r2 as string", "/v3/kv/range", M{"key": c.BKey("a"), "revision": strconv.FormatInt(r2, 10)})
			c.Want(at2, "body.kvs[0].mod_revision", strconv.FormatInt(r2, 10))
			now := c.Post("a now", "/v3/kv/range", M{"key": c.BKey("a")})
			c.Want(now, "body.kvs", Absent)
		}},
		{Name: "range_future_revision_grpc", Run: func(c *Conn) {
			r := rev(c.Put("a", c.Key("a"), "1"))
			o := c.Get("at r+10", c.Key("a"), clientv3.WithRev(r+10))
			c.WantGRPCError(o, "OutOfRange", "etcdserver: mvcc: required revision is a future revision")
			ok := c.Get("at r", c.Key("a"), clientv3.WithRev(r))
			c.WantOK(ok)
		}},
		{Name: "range_future_revision_http", Run: func(c *Conn) {
			r := rev(c.Post("a", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1")}))
			o := c.Post("at r+10", "/v3/kv/range", M{"key": c.BKey("a"), "revision": r + 10})
			c.WantHTTPError(o, 400, 11, "etcdserver: mvcc: required revision is a future revision")
		}},
		{Name: "range_compacted_revision_grpc", Run: func(c *Conn) {
			r1 := rev(c.Put("a=1", c.Key("a"), "1"))
			r2 := rev(c.Put("a=2", c.Key("a"), "2"))
			c.WantOK(c.Compact("compact r2", r2))
			o := c.Get("at r1", c.Key("a"), clientv3.WithRev(r1))
			c.WantGRPCError(o, "OutOfRange", "etcdserver: mvcc: required revision has been compacted")
			at2 := c.Get("at r2", c.Key("a"), clientv3.WithRev(r2))
			c.Want(at2, "body.kvs[0].value", B64("2"))
		}},
		{Name: "range_compacted_revision_http", Run: func(c *Conn) {
			r1 := rev(c.Post("a=1", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("1")}))
			r2 := rev(c.Post("a=2", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("2")}))
			c.WantOK(c.Post("compact r2", "/v3/kv/compaction", M{"revision": r2, "physical": true}))
			o := c.Post("at r1", "/v3/kv/range", M{"key": c.BKey("a"), "revision": r1})
			c.WantHTTPError(o, 400, 11, "etcdserver: mvcc: required revision has been compacted")
			at2 := c.Post("at r2", "/v3/kv/range", M{"key": c.BKey("a"), "revision": r2})
			c.Want(at2, "body.kvs[0].value", B64("2"))
		}},
	}
}

// sortSeed writes a, b, c, d so that every sort target yields a different
// order: key a,b,c,d; create c,a,d,b; mod b,a,d,c; version b,c,a,d;
// value d,b,c,a.
func sortSeed(c *Conn) {
	c.t.Helper()
	seed(c,
		"c", "v3", "a", "v4", "d", "v1", "b", "v2",
		"a", "v4", "d", "v1", "a", "v4", "d", "v1", "d", "v1", "c", "v3")
}

// sortOrders maps each sort target to its ascending key order.
var sortOrders = []struct {
	target string
	grpc   clientv3.SortTarget
	asc    []string
}{
	{"KEY", clientv3.SortByKey, []string{"a", "b", "c", "d"}},
	{"VERSION", clientv3.SortByVersion, []string{"b", "c", "a", "d"}},
	{"CREATE", clientv3.SortByCreateRevision, []string{"c", "a", "d", "b"}},
	{"MOD", clientv3.SortByModRevision, []string{"b", "a", "d", "c"}},
	{"VALUE", clientv3.SortByValue, []string{"d", "b", "c", "a"}},
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// sortCases check every sort target in both orders, over both transports,
// plus sorting combined with a limit.
func sortCases() []Case {
	var cases []Case
	for _, so := range sortOrders {
		cases = append(cases,
			Case{Name: "range_sort_" + so.target + "_grpc", Run: func(c *Conn) {
				sortSeed(c)
				a := c.Get("ascend", c.Key(""), clientv3.WithPrefix(), clientv3.WithSort(so.grpc, clientv3.SortAscend))
				wantKeys(c, a, "body.kvs", so.asc...)
				d := c.Get("descend", c.Key(""), clientv3.WithPrefix(), clientv3.WithSort(so.grpc, clientv3.SortDescend))
				wantKeys(c, d, "body.kvs", reversed(so.asc)...)
				l := c.Get("descend limit 2", c.Key(""), clientv3.WithPrefix(), clientv3.WithSort(so.grpc, clientv3.SortDescend), clientv3.WithLimit(2))
				wantKeys(c, l, "body.kvs", reversed(so.asc)[:2]...)
				c.Want(l, "body.more", true)
				c.Want(l, "body.count", "4")
			}},
			Case{Name: "range_sort_" + so.target + "_http", Run: func(c *Conn) {
				sortSeed(c)
				base := func(order any) M {
					return M{"key": c.BKey(""), "range_end": c.BEnd(""), "sort_target": so.target, "sort_order": order}
				}
				a := c.Post("ascend", "/v3/kv/range", base("ASCEND"))
				wantKeys(c, a, "body.kvs", so.asc...)
				d := c.Post("descend", "/v3/kv/range", base("DESCEND"))
				wantKeys(c, d, "body.kvs", reversed(so.asc)...)
				n := c.Post("descend as number", "/v3/kv/range", base(2))
				wantKeys(c, n, "body.kvs", reversed(so.asc)...)
				lb := base("ASCEND")
				lb["limit"] = 3
				l := c.Post("ascend limit 3", "/v3/kv/range", lb)
				wantKeys(c, l, "body.kvs", so.asc[:3]...)
				c.Want(l, "body.more", true)
			}},
		)
	}
	return append(cases, unknownSortOrderCases()...)
}

// unknownSortOrderCases send a sort order that is no enum value: etcd 3.4
// accepts it and sorts nothing (key order), but still reads every match
// before applying the limit.
func unknownSortOrderCases() []Case {
	return []Case{
		{Name: "range_sort_unknown_order_grpc", Run: func(c *Conn) {
			sortSeed(c)
			req := &pb.RangeRequest{Key: []byte(c.Key("")), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(c.Key(""))), SortOrder: 99}
			r, err := c.KVStub().Range(c.Ctx, req)
			o := c.GRPC("order 99 by key", r, err)
			wantKeys(c, o, "body.kvs", "a", "b", "c", "d")
			req.SortTarget, req.Limit = pb.RangeRequest_MOD, 2
			r, err = c.KVStub().Range(c.Ctx, req)
			l := c.GRPC("order 99 by mod, limit 2", r, err)
			wantKeys(c, l, "body.kvs", "a", "b")
			c.Want(l, "body.more", true)
			c.Want(l, "body.count", "4")
		}},
		{Name: "range_sort_unknown_order_http", Run: func(c *Conn) {
			sortSeed(c)
			o := c.Post("order 99 by value", "/v3/kv/range", M{"key": c.BKey(""), "range_end": c.BEnd(""), "sort_order": 99, "sort_target": "VALUE"})
			wantKeys(c, o, "body.kvs", "a", "b", "c", "d")
			t := c.Post("order 99 in a txn", "/v3/kv/txn", M{"success": []M{{"request_range": M{
				"key": c.BKey(""), "range_end": c.BEnd(""), "sort_order": 99, "sort_target": "CREATE", "limit": 3}}}})
			wantKeys(c, t, "body.responses[0].response_range.kvs", "a", "b", "c")
			c.Want(t, "body.responses[0].response_range.more", true)
		}},
	}
}
