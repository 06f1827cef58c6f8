package difftest

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// createReq builds a gRPC watch create request for [key, end) from start
// (0: from now); mods adjust the create request further.
func createReq(key, end string, start int64, mods ...func(*pb.WatchCreateRequest)) *pb.WatchRequest {
	cr := &pb.WatchCreateRequest{Key: []byte(key), StartRevision: start}
	if end != "" {
		cr.RangeEnd = []byte(end)
	}
	for _, m := range mods {
		m(cr)
	}
	return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}
}

// prefixEnd is the range end of the case prefix plus suffix.
func prefixEnd(c *Conn, suffix string) string {
	return clientv3.GetPrefixRangeEnd(c.Key(suffix))
}

// httpCreate builds a gateway watch create body over the case prefix plus
// suffix; extra fields are merged into create_request.
func httpCreate(c *Conn, suffix string, extra M) M {
	cr := M{"key": c.BKey(suffix), "range_end": c.BEnd(suffix)}
	for k, v := range extra {
		cr[k] = v
	}
	return M{"create_request": cr}
}

// writeHistory makes a put, an update, a put and delete of another key, and
// a txn writing two keys: five revisions, six events. It returns the first
// revision.
func writeHistory(c *Conn) int64 {
	c.t.Helper()
	r1 := rev(c.Put("a=1", c.Key("a"), "1"))
	seed(c, "a", "2", "b", "1")
	c.WantOK(c.Delete("delete b", c.Key("b")))
	t := c.Txn("txn c,d", nil, []clientv3.Op{clientv3.OpPut(c.Key("c"), "1"), clientv3.OpPut(c.Key("d"), "1")}, nil)
	c.Want(t, "body.header.revision", itoa(r1+4))
	return r1
}

// watchCases cover watch over gRPC and over the gateway's chunked stream.
func watchCases() []Case {
	var cases []Case
	cases = append(cases, watchReplayCases()...)
	cases = append(cases, watchOptionCases()...)
	cases = append(cases, watchControlCases()...)
	cases = append(cases, watchBodyCases()...)
	return cases
}

// watchReplayCases cover history replay, live events and clientv3's watcher.
func watchReplayCases() []Case {
	return []Case{
		{Name: "watch_replay_http", Run: func(c *Conn) {
			r1 := writeHistory(c)
			s := c.WatchHTTP("open", httpCreate(c, "", M{"start_revision": r1}))
			o := s.Collect("created then replay", Events(6), streamWait)
			c.Want(o, "messages[0].result.created", true)
			c.Want(o, "messages[0].result.events", Absent)
			c.WantLen(o, "messages", 2)
			c.Want(o, "messages[1].result.header.revision", itoa(r1+4))
			c.Want(o, "messages[1].result.events[3].type", "DELETE")
			c.Want(o, "messages[1].result.events[3].kv.value", Absent)
			c.Want(o, "messages[1].result.events[3].kv.mod_revision", itoa(r1+3))
			p := c.Put("live put", c.Key("e"), "1")
			l := s.Collect("live event", Events(1), streamWait)
			c.Want(l, "messages[0].result.header.revision", itoa(rev(p)))
			c.Want(l, "messages[0].result.events[0].kv.key", c.BKey("e"))
			c.Want(l, "messages[0].result.events[0].type", Absent)
		}},
		{Name: "watch_replay_grpc", Run: func(c *Conn) {
			r1 := writeHistory(c)
			s := c.WatchGRPC(createReq(c.Key(""), prefixEnd(c, ""), r1))
			o := s.Collect("created then replay", Events(6), streamWait)
			c.Want(o, "messages[0].created", true)
			c.Want(o, "messages[1].events[5].kv.key", c.BKey("d"))
			c.Want(o, "messages[1].events[4].kv.mod_revision", itoa(r1+4))
			c.WantOK(c.Delete("live delete", c.Key("a")))
			l := s.Collect("live event", Events(1), streamWait)
			c.Want(l, "messages[0].events[0].type", "DELETE")
		}},
		{Name: "watch_clientv3_grpc", Run: func(c *Conn) {
			r1 := writeHistory(c)
			s := c.WatchClient(c.Key(""), clientv3.WithPrefix(), clientv3.WithRev(r1), clientv3.WithPrevKV())
			o := s.Collect("created then replay", Events(6), streamWait)
			c.Want(o, "messages[0].created", true)
			c.Want(o, "messages[1].events[1].prev_kv.value", B64("1"))
			c.Want(o, "messages[1].events[3].prev_kv.key", c.BKey("b"))
			c.WantOK(c.Put("live put", c.Key("a"), "3"))
			l := s.Collect("live event", Events(1), streamWait)
			c.Want(l, "messages[0].events[0].prev_kv.value", B64("2"))
		}},
		{Name: "watch_apisix_shape_http", Run: func(c *Conn) {
			r := rev(c.Put("placeholder", c.Key("routes/"), "init_dir"))
			// The exact bytes APISIX 3.4+ sends: start_revision as a JSON number.
			body := fmt.Sprintf(`{"create_request":{"key":%q,"range_end":%q,"start_revision":%d}}`,
				c.BKey(""), B64(prefixEnd(c, "")), r+1)
			s := c.WatchHTTP("open", body)
			c.Want(s.Opened, "transfer_encoding", "chunked")
			c.Want(s.Collect("created", Msgs(1), streamWait), "messages[0].result.created", true)
			seed(c, "routes/1", `{"uri":"/a"}`)
			c.Want(s.Collect("put", Events(1), streamWait), "messages[0].result.events[0].kv.version", "1")
			c.WantOK(c.Delete("delete", c.Key("routes/1")))
			c.Want(s.Collect("delete", Events(1), streamWait), "messages[0].result.events[0].kv.create_revision", Absent)
			c.Txn("txn writing two keys", nil, []clientv3.Op{
				clientv3.OpPut(c.Key("routes/2"), "{}"), clientv3.OpPut(c.Key("upstreams/1"), "{}")}, nil)
			t := s.Collect("txn", Events(2), streamWait)
			c.WantLen(t, "messages", 1)
			c.WantLen(t, "messages[0].result.events", 2)
		}},
		{Name: "watch_lease_revoke_http", Run: func(c *Conn) {
			id := c.LeaseID(1)
			grant(c, "grant", id, 600)
			c.WantOK(c.Put("b", c.Key("b"), "1", clientv3.WithLease(clientv3.LeaseID(id))))
			c.WantOK(c.Put("a", c.Key("a"), "1", clientv3.WithLease(clientv3.LeaseID(id))))
			s := c.WatchHTTP("open", httpCreate(c, "", nil))
			s.Collect("created", Msgs(1), streamWait)
			r := revoke(c, "revoke", id)
			o := s.Collect("deletes", Events(2), streamWait)
			c.WantLen(o, "messages", 1)
			c.Want(o, "messages[0].result.events[0].kv", M{"key": c.BKey("a"), "mod_revision": itoa(rev(r))})
			c.Want(o, "messages[0].result.events[1].kv.key", c.BKey("b"))
		}},
	}
}

// watchOptionCases cover prev_kv and filters.
func watchOptionCases() []Case {
	return []Case{
		{Name: "watch_prev_kv_http", Run: func(c *Conn) {
			r1 := rev(c.Put("a=1", c.Key("a"), "1"))
			seed(c, "a", "2")
			c.WantOK(c.Delete("delete a", c.Key("a")))
			s := c.WatchHTTP("open", httpCreate(c, "", M{"start_revision": r1, "prev_kv": true}))
			o := s.Collect("replay", Events(3), streamWait)
			c.Want(o, "messages[1].result.events[0].prev_kv", Absent)
			c.Want(o, "messages[1].result.events[1].prev_kv.value", B64("1"))
			c.Want(o, "messages[1].result.events[2].prev_kv.value", B64("2"))
			seed(c, "a", "3", "a", "4")
			l := s.Collect("live", Events(2), streamWait)
			c.Want(l, "messages[0].result.events[0].prev_kv", Absent)
			c.Want(l, "messages[1].result.events[0].prev_kv.value", B64("3"))
		}},
		{Name: "watch_prev_kv_grpc", Run: func(c *Conn) {
			r1 := rev(c.Put("a=1", c.Key("a"), "1"))
			c.WantOK(c.Delete("delete a", c.Key("a")))
			s := c.WatchGRPC(createReq(c.Key("a"), "", r1, func(cr *pb.WatchCreateRequest) { cr.PrevKv = true }))
			o := s.Collect("replay", Events(2), streamWait)
			c.Want(o, "messages[1].events[1].prev_kv.mod_revision", itoa(r1))
		}},
		{Name: "watch_filters_http", Run: func(c *Conn) {
			r1 := rev(c.Put("a", c.Key("a"), "1"))
			seed(c, "b", "1")
			c.WantOK(c.Delete("delete a", c.Key("a")))
			noput := c.WatchHTTP("open noput", httpCreate(c, "", M{"start_revision": r1, "filters": []string{"NOPUT"}}))
			np := noput.Collect("noput replay", Events(1), streamWait)
			c.Want(np, "messages[1].result.events[0].type", "DELETE")
			nodel := c.WatchHTTP("open nodelete", httpCreate(c, "", M{"start_revision": r1, "filters": []int{1}}))
			nd := nodel.Collect("nodelete replay", Events(2), streamWait)
			c.Want(nd, "messages[1].result.events[1].kv.key", c.BKey("b"))
			seed(c, "c", "1")
			c.WantOK(c.Delete("delete c", c.Key("c")))
			seed(c, "d", "1")
			np = noput.Collect("noput live", Events(1), streamWait)
			c.Want(np, "messages[0].result.events[0].kv.key", c.BKey("c"))
			c.Want(np, "messages[0].result.events[0].type", "DELETE")
			nd = nodel.Collect("nodelete live", Events(2), streamWait)
			c.Want(nd, "messages[1].result.events[0].kv.key", c.BKey("d"))
		}},
		{Name: "watch_filters_grpc", Run: func(c *Conn) {
			r1 := rev(c.Put("a", c.Key("a"), "1"))
			c.WantOK(c.Delete("delete a", c.Key("a")))
			seed(c, "b", "1")
			filter := func(f pb.WatchCreateRequest_FilterType) func(*pb.WatchCreateRequest) {
				return func(cr *pb.WatchCreateRequest) { cr.Filters = []pb.WatchCreateRequest_FilterType{f} }
			}
			noput := c.WatchGRPC(createReq(c.Key(""), prefixEnd(c, ""), r1, filter(pb.WatchCreateRequest_NOPUT)))
			np := noput.Collect("noput replay", Events(1), streamWait)
			c.Want(np, "messages[1].events[0].kv.mod_revision", itoa(r1+1))
			nodel := c.WatchGRPC(createReq(c.Key(""), prefixEnd(c, ""), r1, filter(pb.WatchCreateRequest_NODELETE)))
			nd := nodel.Collect("nodelete replay", Events(2), streamWait)
			c.Want(nd, "messages[1].events[1].kv.key", c.BKey("b"))
		}},
	}
}

// watchBodyCases cover gateway watch bodies: many creates in one body (more
// than the 256 KiB Go's HTTP server reads once a reply has begun).
func watchBodyCases() []Case {
	return []Case{
		{Name: "watch_8000_creates_http", Run: func(c *Conn) {
			const n = 8000
			parts := make([]any, n)
			for i := range parts {
				parts[i] = M{"create_request": M{"key": c.BKey(fmt.Sprintf("k%05d", i))}}
			}
			s := c.WatchHTTP("open", parts...)
			o := s.Tally("8000 created", n, 4*streamWait)
			c.Want(o, "created", n)
			c.Want(o, "ids_in_order", true)
			s.Close()
		}},
	}
}

// watchControlCases cover progress requests, cancel, compaction and future
// start revisions.
func watchControlCases() []Case {
	return []Case{
		{Name: "watch_progress_request_http", Run: func(c *Conn) {
			p := c.Put("a", c.Key("a"), "1")
			s := c.WatchHTTP("open", httpCreate(c, "", nil), M{"progress_request": M{}})
			o := s.Collect("created then progress", Msgs(2), streamWait)
			c.Want(o, "messages[0].result.created", true)
			c.Want(o, "messages[1].result.watch_id", "-1")
			c.Want(o, "messages[1].result.header.revision", itoa(rev(p)))
			c.Want(o, "messages[1].result.events", Absent)
		}},
		{Name: "watch_progress_request_grpc", Run: func(c *Conn) {
			p := c.Put("a", c.Key("a"), "1")
			s := c.WatchGRPC(createReq(c.Key(""), prefixEnd(c, ""), 0))
			s.Collect("created", Msgs(1), streamWait)
			s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
			o := s.Collect("progress", Msgs(1), streamWait)
			c.Want(o, "messages[0].watch_id", "-1")
			c.Want(o, "messages[0].header.revision", itoa(rev(p)))
		}},
		{Name: "watch_cancel_http", Run: func(c *Conn) {
			s := c.WatchHTTP("open", httpCreate(c, "", nil), M{"cancel_request": M{"watch_id": 0}})
			o := s.Collect("created then canceled", Msgs(2), streamWait)
			c.Want(o, "messages[1].result.canceled", true)
			c.Want(o, "messages[1].result.compact_revision", Absent)
			seed(c, "a", "1")
			q := s.Quiet("nothing after cancel", quietWait)
			c.WantLen(q, "messages", 0)
			c.Want(q, "end", Absent)
		}},
		{Name: "watch_cancel_grpc", Run: func(c *Conn) {
			s := c.WatchGRPC(createReq(c.Key("k0"), "", 0), createReq(c.Key("k1"), "", 0))
			o := s.Collect("two created", Msgs(2), streamWait)
			c.Want(o, "messages[0].watch_id", Absent)
			c.Want(o, "messages[1].watch_id", "1")
			s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 0}}})
			x := s.Collect("canceled", Msgs(1), streamWait)
			c.Want(x, "messages[0].canceled", true)
			seed(c, "k0", "1", "k1", "1")
			e := s.Collect("only the live watch fires", Events(1), streamWait)
			c.Want(e, "messages[0].watch_id", "1")
			c.Want(e, "messages[0].events[0].kv.key", c.BKey("k1"))
			u := c.WatchGRPC(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 7}}})
			c.WantLen(u.Quiet("cancel of an unknown watch", quietWait), "messages", 0)
		}},
		{Name: "watch_compacted_http", Run: func(c *Conn) {
			r1 := rev(c.Put("a=1", c.Key("a"), "1"))
			r2 := rev(c.Put("a=2", c.Key("a"), "2"))
			seed(c, "a", "3")
			c.WantOK(c.Compact("compact r2", r2))
			s := c.WatchHTTP("open at r1", httpCreate(c, "", M{"start_revision": r1}))
			o := s.Collect("created then canceled", Msgs(2), streamWait)
			c.Want(o, "messages[0].result.created", true)
			c.Want(o, "messages[1].result.canceled", true)
			c.Want(o, "messages[1].result.compact_revision", itoa(r2))
			c.Want(o, "messages[1].result.header.revision", Absent)
			again := c.WatchHTTP("open at compact_revision", httpCreate(c, "", M{"start_revision": r2}))
			a := again.Collect("created then replay", Events(2), streamWait)
			c.Want(a, "messages[1].result.events[0].kv.mod_revision", itoa(r2))
		}},
		{Name: "watch_compacted_grpc", Run: func(c *Conn) {
			r1 := rev(c.Put("a=1", c.Key("a"), "1"))
			r2 := rev(c.Put("a=2", c.Key("a"), "2"))
			c.WantOK(c.Compact("compact r2", r2))
			s := c.WatchGRPC(createReq(c.Key("a"), "", r1))
			o := s.Collect("created then canceled", Msgs(2), streamWait)
			c.Want(o, "messages[1].canceled", true)
			c.Want(o, "messages[1].compact_revision", itoa(r2))
			cl := c.WatchClient(c.Key("a"), clientv3.WithRev(r1))
			x := cl.Collect("clientv3 sees ErrCompacted", Msgs(2), streamWait)
			c.Want(x, "messages[1].client_err", "etcdserver: mvcc: required revision has been compacted")
		}},
		// etcdctl watch --rev -1: once anything was compacted, a
		// negative start revision is below it and the watch is
		// cancelled with the compact revision.
		{Name: "watch_negative_start_revision_http", Run: func(c *Conn) {
			r := rev(c.Put("a", c.Key("a"), "1"))
			c.WantOK(c.Compact("compact r", r))
			s := c.WatchHTTP("open at -1", httpCreate(c, "", M{"start_revision": -1}))
			o := s.Collect("created then canceled", Msgs(2), streamWait)
			c.Want(o, "messages[0].result.created", true)
			c.Want(o, "messages[0].result.header.revision", itoa(r))
			c.Want(o, "messages[1].result.canceled", true)
			c.Want(o, "messages[1].result.compact_revision", itoa(r))
			c.Want(o, "messages[1].result.header.revision", Absent)
		}},
		{Name: "watch_negative_start_revision_grpc", Run: func(c *Conn) {
			r := rev(c.Put("a", c.Key("a"), "1"))
			c.WantOK(c.Compact("compact r", r))
			s := c.WatchGRPC(createReq(c.Key("a"), "", -1))
			o := s.Collect("created then canceled", Msgs(2), streamWait)
			c.Want(o, "messages[1].canceled", true)
			c.Want(o, "messages[1].compact_revision", itoa(r))
			cl := c.WatchClient(c.Key("a"), clientv3.WithRev(-1))
			x := cl.Collect("clientv3 sees ErrCompacted", Msgs(2), streamWait)
			c.Want(x, "messages[1].client_err", "etcdserver: mvcc: required revision has been compacted")
		}},
		{Name: "watch_future_revision_http", Run: func(c *Conn) {
			r := rev(c.Put("a", c.Key("a"), "1"))
			s := c.WatchHTTP("open at r+2", httpCreate(c, "", M{"start_revision": r + 2}))
			c.Want(s.Collect("created", Msgs(1), streamWait), "messages[0].result.created", true)
			seed(c, "a", "2")
			c.WantLen(s.Quiet("r+1 is not delivered", quietWait), "messages", 0)
			seed(c, "a", "3")
			o := s.Collect("r+2 is delivered", Events(1), streamWait)
			c.Want(o, "messages[0].result.events[0].kv.mod_revision", itoa(r+2))
		}},
		{Name: "watch_future_revision_grpc", Run: func(c *Conn) {
			r := rev(c.Put("a", c.Key("a"), "1"))
			s := c.WatchGRPC(createReq(c.Key("a"), "", r+2))
			c.Want(s.Collect("created", Msgs(1), streamWait), "messages[0].created", true)
			seed(c, "a", "2", "a", "3")
			o := s.Collect("only r+2", Events(1), streamWait)
			c.Want(o, "messages[0].events[0].kv.value", B64("3"))
		}},
	}
}
