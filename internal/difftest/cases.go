package difftest

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Timing bounds for stream reads. Collect returns as soon as its condition
// holds, so streamWait is only spent when something is missing; quietWait is
// spent in full every time it is used, so it is kept short.
const (
	streamWait = 3 * time.Second
	quietWait  = 250 * time.Millisecond
	// leaseExpiryWait bounds the wait for a 2 s lease to expire; etcd checks
	// expiry every 500 ms and revokes through raft.
	leaseExpiryWait = 8 * time.Second
)

// Cases returns the differential case table, in execution order. Every case
// keys its data under its own prefix (Conn.Key), so the only state cases
// share is the global revision counter, the compaction point, the lease
// table and the users and roles, which each lease and auth case cleans up
// after itself.
func Cases() []Case {
	var all []Case
	for _, group := range [][]Case{
		rangeCases(),
		sortCases(),
		putCases(),
		deleteCases(),
		txnCases(),
		compactCases(),
		leaseCases(),
		authCases(),
		watchCases(),
		errorCases(),
		gatewayCases(),
		apisixCases(),
		finalCases(),
	} {
		all = append(all, group...)
	}
	return all
}

// seed writes key/value pairs (key suffixes and values, alternating) in
// order through clientv3, expecting each put to succeed.
func seed(c *Conn, kv ...string) {
	c.t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		c.WantOK(c.Put("seed "+kv[i], c.Key(kv[i]), kv[i+1]))
	}
}

// rev returns the header revision of a successful gRPC or HTTP answer.
func rev(o *Obs) int64 {
	return o.Int("body.header.revision")
}

// wantKeys expects the array of key-values at path to hold exactly the keys
// c.Key(suffix), in this order.
func wantKeys(c *Conn, o *Obs, path string, suffixes ...string) {
	c.t.Helper()
	got, _ := Lookup(o.Value, path)
	arr, _ := got.([]any)
	keys := make([]string, 0, len(arr))
	for _, kv := range arr {
		k, _ := Lookup(kv, "key")
		s, _ := k.(string)
		keys = append(keys, s)
	}
	want := make([]string, 0, len(suffixes))
	for _, s := range suffixes {
		want = append(want, c.BKey(s))
	}
	ok := len(keys) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = keys[i] == want[i]
	}
	c.Check(ok, "%s: %s: want keys %v, got %v", o.Label, path, want, keys)
}

// finalCases compare the complete key space of both stores, so that any
// divergence left behind by an earlier case shows up at least once.
func finalCases() []Case {
	return []Case{
		{Name: "final_all_keys_http", Run: func(c *Conn) {
			o := c.Post("all keys", "/v3/kv/range", M{"key": B64("\x00"), "range_end": B64("\x00")})
			c.WantOK(o)
			c.Check(o.Int("body.count") > 100, "all keys: want more than 100 keys left by the cases, got %v", o.Get("body.count"))
		}},
		{Name: "final_all_keys_count_grpc", Run: func(c *Conn) {
			o := c.Get("count all", "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
			c.WantOK(o)
			c.Want(o, "body.kvs", Absent)
			c.Check(o.Int("body.count") > 100, "count all: want more than 100 keys, got %v", o.Get("body.count"))
		}},
	}
}
