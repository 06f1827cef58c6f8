package fsm

import (
	"errors"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// ApplyBatch gives each entry the result Apply gives it alone, leaves the
// same store behind, announces the batch once it is whole, and stops at
// an entry it does not know.
func TestApplyBatchMatchesApply(t *testing.T) {
	var entries []Entry
	for i := 1; i <= 20; i++ {
		r := &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(fmt.Sprintf("k%d", i%7)), Value: []byte(fmt.Sprint(i))}}
		if i%5 == 0 {
			r = &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("k1")}}
		}
		data, err := Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, Entry{Index: uint64(i), Data: data, Skip: i == 13})
	}

	one, batch := newHarness(t).s, newHarness(t).s
	var want []*Result
	for _, e := range entries {
		if e.Skip {
			one.ApplyBatch([]Entry{e})
			want = append(want, nil)
			continue
		}
		want = append(want, one.Apply(e.Index, e.Data))
	}
	changed, _ := batch.Changed()
	applied := batch.AppliedWait()
	got := batch.ApplyBatch(entries)
	for i := range entries {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("entry %d: batch result %v, alone %v", i+1, got[i], want[i])
		}
	}
	if one.Digest() != batch.Digest() {
		t.Fatal("the batch left another store than one entry at a time")
	}
	if batch.AppliedIndex() != 20 {
		t.Fatalf("applied index %d, want 20", batch.AppliedIndex())
	}
	for name, ch := range map[string]<-chan struct{}{"changed": changed, "applied": applied} {
		select {
		case <-ch:
		default:
			t.Errorf("%s not announced after the batch", name)
		}
	}

	// An entry it cannot decode: those before it are applied, none after.
	s := newHarness(t).s
	bad := append([]Entry{}, entries[:3]...)
	bad = append(bad, Entry{Index: 4, Data: []byte{0xff}}, entries[4])
	res := s.ApplyBatch(bad)
	if !errors.Is(res[3].Err, ErrUnknownEntry) || res[4] != nil {
		t.Fatalf("results %v, want ErrUnknownEntry at the 4th and nothing after", res)
	}
	if s.AppliedIndex() != 3 {
		t.Fatalf("applied index %d, want 3 (before the unknown entry)", s.AppliedIndex())
	}
}
