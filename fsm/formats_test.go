package fsm

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// testdata/v0.1.0 holds what release v0.1.0 wrote: entries.bin, one entry
// of each kind it knew (uvarint length, then the encoded entry), and
// snapshot.bin, its snapshot of a store that applied them at indexes 1, 2,
// and so on. Both were written by v0.1.0's own code.

func readFixtureEntries(t *testing.T) [][]byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/v0.1.0/entries.bin")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(raw) > 0 {
		n, k := binary.Uvarint(raw)
		if k <= 0 || uint64(len(raw)-k) < n {
			t.Fatalf("entries.bin: bad length at %d bytes from the end", len(raw))
		}
		out = append(out, raw[k:k+int(n)])
		raw = raw[k+int(n):]
	}
	return out
}

// This release applies every entry v0.1.0 wrote, and a store of only such
// data snapshots in v0.1.0's format, byte for byte, so that a cluster
// rolled back to v0.1.0 restores what this release wrote.
func TestV010EntriesAndSnapshot(t *testing.T) {
	entries := readFixtureEntries(t)
	if len(entries) < 10 {
		t.Fatalf("entries.bin holds %d entries", len(entries))
	}
	h := newHarness(t)
	for i, data := range entries {
		r, err := Decode(data)
		if err != nil {
			t.Fatalf("entry %d: %v", i+1, err)
		}
		if EntryRelease(r) != "v0.1.0" {
			t.Fatalf("entry %d (%v): release %q", i+1, r, EntryRelease(r))
		}
		again, _ := Encode(r)
		if !bytes.Equal(again, data) {
			t.Fatalf("entry %d encodes to other bytes than v0.1.0 wrote", i+1)
		}
		h.idx++
		if res := h.s.Apply(h.idx, data); res.Err != nil {
			t.Fatalf("entry %d: %v", i+1, res.Err)
		}
	}
	want, err := os.ReadFile("testdata/v0.1.0/snapshot.bin")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("snapshot of v0.1.0's data differs from v0.1.0's (%d bytes, want %d)", got.Len(), len(want))
	}
}

// A snapshot v0.1.0 wrote restores to the store it was taken of.
func TestRestoreV010Snapshot(t *testing.T) {
	raw, err := os.ReadFile("testdata/v0.1.0/snapshot.bin")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	if err := h.s.Restore(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	if rev, compact := h.s.Revs(); rev != 9 || compact != 3 {
		t.Fatalf("restored revision %d, compacted %d; want 9, 3", rev, compact)
	}
	if got := h.s.AppliedIndex(); got != 12 {
		t.Fatalf("restored applied index %d, want 12", got)
	}
	resp, err := h.s.Range(&pb.RangeRequest{Key: []byte("/apisix/"), RangeEnd: []byte("/apisix0")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key)+"@"+string(kv.Value))
	}
	want := []string{`/apisix/consumers/jack@{"username":"jack"}`, `/apisix/routes/1@{"uri":"/a2"}`, `/apisix/upstreams/1@{"nodes":{}}`}
	if len(keys) != len(want) {
		t.Fatalf("restored keys %q, want %q", keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("restored keys %q, want %q", keys, want)
		}
	}
	if _, err := h.s.Range(&pb.RangeRequest{Key: []byte("/apisix/routes/1"), Revision: 2}); err != ErrCompacted {
		t.Fatalf("range at revision 2 after compaction at 3: %v, want ErrCompacted", err)
	}
	leases := h.s.Leases()
	if len(leases) != 1 || leases[0].ID != 0x1234 {
		t.Fatalf("restored leases %v, want only 0x1234", leases)
	}
}
