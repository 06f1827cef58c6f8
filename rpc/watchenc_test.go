package rpc

import (
	"bytes"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// TestWatchEncoderMatchesGeneratedCode checks that assembled messages are
// byte for byte what the generated marshaler produces, including shared
// parts, watch ID 0 (omitted on the wire) and large IDs.
func TestWatchEncoderMatchesGeneratedCode(t *testing.T) {
	hdr1 := &pb.ResponseHeader{ClusterId: 1 << 60, MemberId: 7, RaftTerm: 3, Revision: 42}
	hdr2 := &pb.ResponseHeader{ClusterId: 1 << 60, MemberId: 7, RaftTerm: 3, Revision: 43}
	evs1 := []*mvccpb.Event{
		{Kv: &mvccpb.KeyValue{Key: []byte("/a"), Value: bytes.Repeat([]byte("v"), 300), CreateRevision: 2, ModRevision: 42, Version: 5, Lease: 99}},
		{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte("/b"), ModRevision: 42}},
	}
	evs2 := []*mvccpb.Event{{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte{0, 0xff}, ModRevision: 43},
		PrevKv: &mvccpb.KeyValue{Key: []byte{0, 0xff}, Value: []byte("x"), CreateRevision: 3, ModRevision: 3, Version: 1}}}
	want := []*pb.WatchResponse{
		{Header: hdr1, WatchId: 0, Events: evs1},
		{Header: hdr1, WatchId: 1, Events: evs1},
		{Header: hdr1, WatchId: 1 << 40, Events: evs1},
		{Header: hdr2, WatchId: 300, Events: evs2},
		{Header: hdr2, WatchId: 301, Events: evs1},
	}
	var enc watchEncoder
	for _, w := range want {
		if err := enc.add(w.Header, w.WatchId, w.Events); err != nil {
			t.Fatal(err)
		}
	}
	got := enc.messages()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i, w := range want {
		wb, err := w.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[i], wb) {
			t.Errorf("message %d: encoded %x\nwant %x", i, []byte(got[i]), wb)
		}
		var back pb.WatchResponse
		if err := back.Unmarshal(got[i]); err != nil || back.WatchId != w.WatchId || len(back.Events) != len(w.Events) {
			t.Errorf("message %d does not decode back: %v %+v", i, err, back)
		}
	}
}
