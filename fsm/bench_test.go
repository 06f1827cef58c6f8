package fsm

import (
	"bytes"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// BenchmarkApplyPut measures Apply of a pre-encoded put (decode, write,
// history append) over 1024 keys. Every 8192 puts the history is compacted
// outside the timer so memory stays bounded at large b.N.
func BenchmarkApplyPut(b *testing.B) {
	s, err := New(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	const nkeys = 1024
	entries := make([][]byte, nkeys)
	value := bytes.Repeat([]byte("v"), 128)
	for i := range entries {
		entries[i], err = Encode(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(fmt.Sprintf("/registry/pods/%06d", i)), Value: value}})
		if err != nil {
			b.Fatal(err)
		}
	}
	idx := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		idx++
		if res := s.Apply(idx, entries[i%nkeys]); res.Err != nil {
			b.Fatal(res.Err)
		}
		if i%8192 == 8191 {
			b.StopTimer()
			idx++
			c, _ := Encode(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: s.Rev() - 1024}})
			if res := s.Apply(idx, c); res.Err != nil {
				b.Fatal(res.Err)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	if got := s.Rev(); got != int64(b.N)+1 {
		b.Fatalf("rev %d after %d puts", got, b.N)
	}
}

// BenchmarkRangePrefix10k ranges over a prefix of 10,000 keys with 1 KiB
// values (keys outside the prefix surround it).
func BenchmarkRangePrefix10k(b *testing.B) {
	h := newHarness(b)
	value := bytes.Repeat([]byte("x"), 1024)
	for _, prefix := range []string{"/a/", "/reg/", "/z/"} {
		n := 10000
		if prefix != "/reg/" {
			n = 1000
		}
		for i := 0; i < n; i += 100 {
			ops := make([]*pb.RequestOp, 100)
			for j := range ops {
				ops[j] = opPutReq(&pb.PutRequest{Key: []byte(fmt.Sprintf("%s%05d", prefix, i+j)), Value: value})
			}
			h.mustTxn(&pb.TxnRequest{Success: ops})
		}
	}
	req := &pb.RangeRequest{Key: []byte("/reg/"), RangeEnd: []byte("/reg0")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := h.s.Range(req)
		if err != nil {
			b.Fatal(err)
		}
		if resp.Count != 10000 || len(resp.Kvs) != 10000 {
			b.Fatalf("count %d, %d kvs", resp.Count, len(resp.Kvs))
		}
	}
}

// BenchmarkWatchFanout measures one put plus the Collect that delivers it
// to every watcher of the same prefix, with the watchers either each on
// their own stream (one client each) or all on one shared stream.
func BenchmarkWatchFanout(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		for _, layout := range []string{"stream-per-watcher", "one-stream"} {
			b.Run(fmt.Sprintf("watchers=%d/%s", n, layout), func(b *testing.B) {
				benchWatchFanout(b, n, layout == "one-stream")
			})
		}
	}
}

func benchWatchFanout(b *testing.B, n int, shared bool) {
	h := newHarness(b)
	nstreams := n
	if shared {
		nstreams = 1
	}
	streams := make([]*WatchStream, nstreams)
	for i := range streams {
		streams[i] = h.s.NewWatchStream()
	}
	for i := 0; i < n; i++ {
		if _, _, err := streams[i%nstreams].Watch(WatchRequest{Key: []byte("/svc/"), RangeEnd: []byte("/svc0")}); err != nil {
			b.Fatal(err)
		}
	}
	entries := make([][]byte, 64)
	for i := range entries {
		entries[i], _ = Encode(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(fmt.Sprintf("/svc/%02d", i)), Value: []byte("endpoint")}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.idx++
		h.s.Apply(h.idx, entries[i%len(entries)])
		delivered := 0
		for _, ws := range streams {
			msgs, _ := ws.Collect()
			for _, m := range msgs {
				if len(m.Events) != 1 {
					b.Fatalf("watcher got %+v", m)
				}
			}
			delivered += len(msgs)
		}
		if delivered != n {
			b.Fatalf("delivered to %d of %d watchers", delivered, n)
		}
	}
}

// BenchmarkCodec measures Encode plus Decode of a put.
func BenchmarkCodec(b *testing.B) {
	r := &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("/registry/pods/default/web-0"), Value: bytes.Repeat([]byte("v"), 256), Lease: 12345, PrevKv: true}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		data, err := Encode(r)
		if err != nil {
			b.Fatal(err)
		}
		got, err := Decode(data)
		if err != nil || got.Put == nil || len(got.Put.Value) != 256 {
			b.Fatalf("decode: %v", err)
		}
	}
}
