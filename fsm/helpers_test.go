package fsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// harness applies entries to one store at increasing raft indexes.
type harness struct {
	tb  testing.TB
	s   *Store
	idx uint64
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	return newHarnessCfg(tb, DefaultConfig())
}

func newHarnessCfg(tb testing.TB, cfg Config) *harness {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("New(%+v): %v", cfg, err)
	}
	return &harness{tb: tb, s: s}
}

// apply encodes r, applies it at the next index and fails the test if Apply
// panics or does not record the index.
func (h *harness) apply(r *pb.InternalRaftRequest) *Result {
	h.tb.Helper()
	data, err := Encode(r)
	if err != nil {
		h.tb.Fatalf("Encode(%v): %v", r, err)
	}
	h.idx++
	res, p := safeApply(h.s, h.idx, data)
	if p != nil {
		h.tb.Fatalf("Apply(%d, %v) panicked: %v", h.idx, r, p)
	}
	if res == nil {
		h.tb.Fatalf("Apply(%d, %v) returned nil", h.idx, r)
	}
	if got := h.s.AppliedIndex(); got != h.idx {
		h.tb.Fatalf("AppliedIndex() = %d after applying index %d", got, h.idx)
	}
	return res
}

// safeApply runs Apply and returns what it panicked with, if anything.
func safeApply(s *Store, idx uint64, data []byte) (res *Result, panicked any) {
	defer func() { panicked = recover() }()
	return s.Apply(idx, data), nil
}

func (h *harness) putReq(p *pb.PutRequest) *Result {
	h.tb.Helper()
	return h.apply(&pb.InternalRaftRequest{Put: p})
}

func (h *harness) mustPutReq(p *pb.PutRequest) *pb.PutResponse {
	h.tb.Helper()
	res := h.putReq(p)
	if res.Err != nil || res.Put == nil {
		h.tb.Fatalf("put %q: err=%v resp=%v", p.Key, res.Err, res.Put)
	}
	return res.Put
}

func (h *harness) put(key, val string) *pb.PutResponse {
	h.tb.Helper()
	return h.mustPutReq(&pb.PutRequest{Key: []byte(key), Value: []byte(val)})
}

func (h *harness) putLease(key, val string, lease int64) *pb.PutResponse {
	h.tb.Helper()
	return h.mustPutReq(&pb.PutRequest{Key: []byte(key), Value: []byte(val), Lease: lease})
}

func (h *harness) delReq(d *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	h.tb.Helper()
	res := h.apply(&pb.InternalRaftRequest{DeleteRange: d})
	if res.Err != nil || res.DeleteRange == nil {
		h.tb.Fatalf("delete %q..%q: err=%v resp=%v", d.Key, d.RangeEnd, res.Err, res.DeleteRange)
	}
	return res.DeleteRange
}

func (h *harness) del(key, end string) *pb.DeleteRangeResponse {
	h.tb.Helper()
	return h.delReq(&pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)})
}

func (h *harness) txn(t *pb.TxnRequest) *Result {
	h.tb.Helper()
	return h.apply(&pb.InternalRaftRequest{Txn: t})
}

func (h *harness) mustTxn(t *pb.TxnRequest) *pb.TxnResponse {
	h.tb.Helper()
	res := h.txn(t)
	if res.Err != nil || res.Txn == nil {
		h.tb.Fatalf("txn: err=%v resp=%v", res.Err, res.Txn)
	}
	return res.Txn
}

func (h *harness) compact(rev int64) *Result {
	h.tb.Helper()
	return h.apply(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: rev}})
}

func (h *harness) mustCompact(rev int64) {
	h.tb.Helper()
	if res := h.compact(rev); res.Err != nil {
		h.tb.Fatalf("compact(%d): %v", rev, res.Err)
	}
}

func (h *harness) grant(id, ttl int64) *Result {
	h.tb.Helper()
	return h.apply(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: id, TTL: ttl}})
}

func (h *harness) mustGrant(id, ttl int64) *pb.LeaseGrantResponse {
	h.tb.Helper()
	res := h.grant(id, ttl)
	if res.Err != nil || res.LeaseGrant == nil {
		h.tb.Fatalf("grant(%d, %d): err=%v", id, ttl, res.Err)
	}
	return res.LeaseGrant
}

func (h *harness) revoke(id int64) *Result {
	h.tb.Helper()
	return h.apply(&pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}})
}

// rng runs a range that must succeed and checks the header revision.
func (h *harness) rng(r *pb.RangeRequest) *pb.RangeResponse {
	h.tb.Helper()
	resp, err := h.s.Range(r)
	if err != nil {
		h.tb.Fatalf("Range(%v): %v", r, err)
	}
	if resp.Header == nil || resp.Header.Revision != h.s.Rev() {
		h.tb.Fatalf("Range(%v): header %v, want revision %d", r, resp.Header, h.s.Rev())
	}
	return resp
}

// get returns the current key-value of key, nil if it does not exist.
func (h *harness) get(key string) *mvccpb.KeyValue {
	h.tb.Helper()
	resp := h.rng(&pb.RangeRequest{Key: []byte(key)})
	switch len(resp.Kvs) {
	case 0:
		return nil
	case 1:
		return resp.Kvs[0]
	}
	h.tb.Fatalf("get %q: %d kvs", key, len(resp.Kvs))
	return nil
}

// all returns every live key-value, in key order, at rev (0 = current).
func (h *harness) all(rev int64) []*mvccpb.KeyValue {
	h.tb.Helper()
	return h.rng(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}).Kvs
}

func (h *harness) wantRev(want int64) {
	h.tb.Helper()
	if got := h.s.Rev(); got != want {
		h.tb.Fatalf("Rev() = %d, want %d", got, want)
	}
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// Request-op builders.

func opPut(key, val string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: []byte(val)}}}
}

func opPutReq(p *pb.PutRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: p}}
}

func opDel(key, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)}}}
}

func opRange(key, end string) *pb.RequestOp {
	return opRangeReq(&pb.RangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)})
}

func opRangeReq(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func opTxn(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

// cmpOf builds a compare; operand is a string for VALUE, an int64 otherwise.
func cmpOf(key, end string, target pb.Compare_CompareTarget, result pb.Compare_CompareResult, operand any) *pb.Compare {
	c := &pb.Compare{Key: []byte(key), RangeEnd: bytesOrNil(end), Target: target, Result: result}
	switch target {
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: []byte(operand.(string))}
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: operand.(int64)}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: operand.(int64)}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: operand.(int64)}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: operand.(int64)}
	}
	return c
}

// Formatting, so comparisons print readably and ignore proto internals.

func kvStr(kv *mvccpb.KeyValue) string {
	if kv == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%q=%q c%d m%d v%d l%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}

func kvsStr(kvs []*mvccpb.KeyValue) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = kvStr(kv)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	keys := make([]string, len(kvs))
	for i, kv := range kvs {
		keys[i] = string(kv.Key)
	}
	return keys
}

func evStr(ev *mvccpb.Event) string {
	s := ev.Type.String() + " " + kvStr(ev.Kv)
	if ev.PrevKv != nil {
		s += " prev{" + kvStr(ev.PrevKv) + "}"
	}
	return s
}

func evsStr(evs []*mvccpb.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = evStr(ev)
	}
	return out
}

func wantErr(tb testing.TB, what string, got, want error) {
	tb.Helper()
	if !errors.Is(got, want) {
		tb.Fatalf("%s: err = %v, want %v", what, got, want)
	}
}

// collectAll drains a stream: it calls Collect until every watcher has
// caught up with the store and returns the events per watch ID, plus every
// message in order.
func collectAll(tb testing.TB, ws *WatchStream) (map[int64][]*mvccpb.Event, []WatchResponse) {
	tb.Helper()
	evs := make(map[int64][]*mvccpb.Event)
	var msgs []WatchResponse
	for i := 0; ; i++ {
		if i > 100000 {
			tb.Fatalf("collectAll: stream never caught up")
		}
		select {
		case <-ws.Ready():
		default:
			return evs, msgs
		}
		out, _ := ws.Collect()
		for _, m := range out {
			evs[m.WatchID] = append(evs[m.WatchID], m.Events...)
		}
		msgs = append(msgs, out...)
	}
}
