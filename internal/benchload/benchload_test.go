package benchload

import (
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// The watch loads' decoder finds, per event, whether it is a delete and
// a put's value or a delete's key, also for a put of an empty value.
func TestRawWatchResponse(t *testing.T) {
	b, err := (&pb.WatchResponse{Created: true, Events: []*mvccpb.Event{
		{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte("/a"), Value: []byte("123")}},
		{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte("/b")}},
		{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte("/c")}},
	}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var r rawWatchResponse
	if err := r.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if !r.created || len(r.values) != 3 || string(r.values[0]) != "123" || len(r.values[1]) != 0 || string(r.values[2]) != "/c" ||
		r.deletes[0] || r.deletes[1] || !r.deletes[2] {
		t.Errorf("decoded created %v, values %q, deletes %v", r.created, r.values, r.deletes)
	}
}

func TestResultPercentiles(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	r := result(100, 2*time.Second, lat[:50], lat[50:])
	if r.OpsPerSec() != 50 || r.Percentile(50) != 51*time.Millisecond || r.Percentile(99) != 100*time.Millisecond || r.Max() != 100*time.Millisecond {
		t.Errorf("ops/s %v, p50 %v, p99 %v, max %v", r.OpsPerSec(), r.Percentile(50), r.Percentile(99), r.Max())
	}
	if (Result{}).Percentile(50) != 0 || (Result{}).OpsPerSec() != 0 {
		t.Error("an empty result has figures")
	}
}
