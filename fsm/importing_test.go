package fsm

import (
	"bytes"
	"errors"
	"os"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// imp applies one import entry at the next index.
func (h *harness) imp(e *ImportEntry) *Result {
	h.tb.Helper()
	data, err := EncodeImport(e)
	if err != nil {
		h.tb.Fatalf("EncodeImport(%v): %v", e.Kind, err)
	}
	h.idx++
	res, p := safeApply(h.s, h.idx, data)
	if p != nil {
		h.tb.Fatalf("Apply(%d, %v) panicked: %v", h.idx, e.Kind, p)
	}
	return res
}

func (h *harness) mustImp(e *ImportEntry) {
	h.tb.Helper()
	if res := h.imp(e); res.Err != nil {
		h.tb.Fatalf("%v: %v", e.Kind, res.Err)
	}
}

func kvAt(key, val string, create, mod, ver, lease int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: create, ModRevision: mod, Version: ver, Lease: lease}
}

func beginEntry(source uint64) *ImportEntry {
	return &ImportEntry{Kind: ImportBegin, Msg: &pb.ResponseHeader{ClusterId: source, Revision: 9}}
}

func keysEntry(upTo int64, kvs ...*mvccpb.KeyValue) *ImportEntry {
	return &ImportEntry{Kind: ImportKeys, Msg: &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: upTo}, Kvs: kvs}}
}

func eventsEntry(rev int64, evs ...*mvccpb.Event) *ImportEntry {
	return &ImportEntry{Kind: ImportEvents, Msg: &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: rev}, Events: evs}}
}

func leaseEntry(id, granted, left int64) *ImportEntry {
	return &ImportEntry{Kind: ImportLease, Msg: &pb.LeaseTimeToLiveResponse{ID: id, GrantedTTL: granted, TTL: left}}
}

func finishEntry(rev int64, leases ...int64) *ImportEntry {
	f := &pb.LeaseLeasesResponse{Header: &pb.ResponseHeader{Revision: rev}}
	for _, id := range leases {
		f.Leases = append(f.Leases, &pb.LeaseStatus{ID: id})
	}
	return &ImportEntry{Kind: ImportFinish, Msg: f}
}

// importLog is an import of a source at revision 9 (keys at revisions 3,
// 5 and 9, one of them on lease 7), then its revisions 10 and 11.
func importLog() []*ImportEntry {
	return []*ImportEntry{
		beginEntry(0xabc),
		leaseEntry(7, 60, 42),
		keysEntry(5, kvAt("/a", "1", 2, 3, 2, 0), kvAt("/b", "2", 5, 5, 1, 7), kvAt("/c", "3", 5, 5, 1, 0)),
		keysEntry(9, kvAt("/d", "4", 4, 9, 3, 0)),
		{Kind: ImportCompact, Msg: &pb.CompactionRequest{Revision: 9}},
		eventsEntry(10, &mvccpb.Event{Type: mvccpb.PUT, Kv: kvAt("/a", "x", 2, 10, 3, 0)},
			&mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte("/c"), ModRevision: 10}}),
		eventsEntry(11, &mvccpb.Event{Type: mvccpb.PUT, Kv: kvAt("/e", "5", 11, 11, 1, 7)}),
	}
}

func TestImportKeepsRevisions(t *testing.T) {
	h := newHarness(t)
	for _, e := range importLog() {
		h.mustImp(e)
	}
	h.wantRev(11)
	if got := kvsStr(h.all(0)); got != kvsStr([]*mvccpb.KeyValue{
		kvAt("/a", "x", 2, 10, 3, 0), kvAt("/b", "2", 5, 5, 1, 7), kvAt("/d", "4", 4, 9, 3, 0), kvAt("/e", "5", 11, 11, 1, 7),
	}) {
		t.Fatalf("keys after import: %s", got)
	}
	if _, err := h.s.Range(&pb.RangeRequest{Key: []byte("/a"), Revision: 8}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("range below the key space's revision: %v, want ErrCompacted", err)
	}
	if got := kvsStr(h.all(9)); got != kvsStr([]*mvccpb.KeyValue{
		kvAt("/a", "1", 2, 3, 2, 0), kvAt("/b", "2", 5, 5, 1, 7), kvAt("/c", "3", 5, 5, 1, 0), kvAt("/d", "4", 4, 9, 3, 0),
	}) {
		t.Fatalf("keys at the key space's revision: %s", got)
	}
	info, ok := h.s.Lease(7, true)
	if !ok || info.TTL != 60 || info.Remaining != 42 || len(info.Keys) != 2 {
		t.Fatalf("lease 7: %+v %v", info, ok)
	}
	// While importing, every client write is refused, reads are not.
	for _, r := range []*pb.InternalRaftRequest{
		{Put: &pb.PutRequest{Key: []byte("/z")}}, {DeleteRange: &pb.DeleteRangeRequest{Key: []byte("/a")}},
		{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{opPut("/z", "1")}}}, {Compaction: &pb.CompactionRequest{Revision: 10}},
		{LeaseGrant: &pb.LeaseGrantRequest{ID: 8, TTL: 10}}, {LeaseRevoke: &pb.LeaseRevokeRequest{ID: 7}},
		{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}},
	} {
		wantErr(t, "client write while importing", h.apply(r).Err, ErrImporting)
	}
	if res := h.apply(&pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{opRange("/a", "")}}}); res.Err != nil {
		t.Fatalf("read-only txn while importing: %v", res.Err)
	}
	h.wantRev(11)
	if st := h.s.Import(); !st.Importing || st.Source != 0xabc {
		t.Fatalf("import status %+v", st)
	}

	h.mustImp(finishEntry(11, 7))
	if h.s.Importing() {
		t.Fatal("still importing after finish")
	}
	if res := h.put("/z", "1"); res.Header.Revision != 12 {
		t.Fatalf("first write after finish at revision %d, want 12", res.Header.Revision)
	}
	if info, _ := h.s.Lease(7, false); info.GrantIndex != h.idx-1 || info.Remaining != 42 {
		t.Fatalf("lease 7 after finish: %+v (finish at index %d)", info, h.idx-1)
	}
}

func TestImportRefusals(t *testing.T) {
	written := newHarness(t)
	written.put("/x", "1")
	wantErr(t, "begin on a written store", written.imp(beginEntry(1)).Err, ErrImportNotEmpty)
	granted := newHarness(t)
	granted.mustGrant(5, 10)
	wantErr(t, "begin on a store with a lease", granted.imp(beginEntry(1)).Err, ErrImportNotEmpty)
	wantErr(t, "keys without begin", newHarness(t).imp(keysEntry(3, kvAt("/a", "1", 3, 3, 1, 0))).Err, ErrNotImporting)

	h := newHarness(t)
	h.mustImp(beginEntry(1))
	h.mustImp(keysEntry(5, kvAt("/a", "1", 3, 3, 1, 0)))
	before := h.s.Digest()
	for name, e := range map[string]*ImportEntry{
		"keys at or below the store's revision": keysEntry(6, kvAt("/b", "1", 4, 4, 1, 0)),
		"keys out of order":                     keysEntry(9, kvAt("/c", "1", 8, 8, 1, 0), kvAt("/b", "1", 7, 7, 1, 0)),
		"a key twice":                           keysEntry(9, kvAt("/a", "1", 8, 8, 2, 0)),
		"a key past the entry's revision":       keysEntry(7, kvAt("/b", "1", 8, 8, 1, 0)),
		"a gap in revisions":                    eventsEntry(7, &mvccpb.Event{Kv: kvAt("/b", "1", 7, 7, 1, 0)}),
		"a revision again":                      eventsEntry(5, &mvccpb.Event{Kv: kvAt("/b", "1", 5, 5, 1, 0)}),
		"an event at another revision":          eventsEntry(6, &mvccpb.Event{Kv: kvAt("/b", "1", 7, 7, 1, 0)}),
		"deleting a key the store lacks":        eventsEntry(6, &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte("/q"), ModRevision: 6}}),
		"compact at another revision":           {Kind: ImportCompact, Msg: &pb.CompactionRequest{Revision: 4}},
		"finish behind":                         finishEntry(4),
	} {
		wantErr(t, name, h.imp(e).Err, ErrImportOrder)
	}
	wantErr(t, "a key on a lease not imported", h.imp(keysEntry(9, kvAt("/b", "1", 8, 8, 1, 99))).Err, ErrLeaseNotFound)
	wantErr(t, "an event without events", h.imp(eventsEntry(6)).Err, ErrImportInvalid)
	wantErr(t, "a bad version", h.imp(keysEntry(9, kvAt("/b", "1", 8, 8, 0, 0))).Err, ErrImportInvalid)
	if h.s.Digest() != before {
		t.Fatal("a refused import entry changed the store")
	}
}

// Two stores fed the same import agree, also after a snapshot and restore
// in the middle and at the end; the snapshot of a store importing is
// version 4 and carries the import mode and the leases' remaining TTLs.
func TestImportDeterminismAndSnapshot(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	log := importLog()
	for i, e := range log {
		a.mustImp(e)
		b.mustImp(e)
		if a.s.Digest() != b.s.Digest() {
			t.Fatalf("digests differ after entry %d (%v)", i, e.Kind)
		}
	}
	var buf bytes.Buffer
	if _, err := a.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), snapshotMagicImport) {
		t.Fatalf("snapshot of a store importing starts %q", buf.Bytes()[:8])
	}
	c := newHarness(t)
	if err := c.s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if c.s.Digest() != a.s.Digest() || !c.s.Importing() || c.s.Import().Source != 0xabc || c.s.Import().Base != 9 {
		t.Fatalf("restored: digest equal %v, import %+v", c.s.Digest() == a.s.Digest(), c.s.Import())
	}
	if info, _ := c.s.Lease(7, false); info.Remaining != 42 {
		t.Fatalf("restored lease 7: %+v", info)
	}
	c.idx = a.idx
	for _, h := range []*harness{a, c} {
		h.mustImp(finishEntry(11, 7))
	}
	if a.s.Digest() != c.s.Digest() || c.s.Importing() {
		t.Fatal("stores differ after finish")
	}
	// A store that never imported still writes the older formats.
	plain := newHarness(t)
	plain.put("/a", "1")
	buf.Reset()
	if _, err := plain.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), snapshotMagic) {
		t.Fatalf("snapshot of a plain store starts %q", buf.Bytes()[:8])
	}
	if plain.s.DataRelease() != "v0.1.0" || a.s.DataRelease() != releaseImport {
		t.Fatalf("data releases %q and %q", plain.s.DataRelease(), a.s.DataRelease())
	}
}

// finish drops the leases the source no longer has, unless keys still
// name them: those expire at once.
func TestImportFinishReconcilesLeases(t *testing.T) {
	h := newHarness(t)
	h.mustImp(beginEntry(1))
	h.mustImp(leaseEntry(1, 30, 20))
	h.mustImp(leaseEntry(2, 30, 20))
	h.mustImp(leaseEntry(3, 30, 0))
	h.mustImp(keysEntry(4, kvAt("/a", "1", 4, 4, 1, 3)))
	h.mustImp(finishEntry(4, 1))
	got := h.s.Leases()
	if len(got) != 2 || got[0].ID != 1 || got[1].ID != 3 || got[0].Remaining != 20 || got[1].Remaining != 1 {
		t.Fatalf("leases after finish: %+v", got)
	}
}

// testdata/import holds the entries of importLog as envelope version 2
// bytes: what this release writes must keep decoding the same.
func TestImportEntryFixture(t *testing.T) {
	var want bytes.Buffer
	for _, e := range importLog() {
		data, err := EncodeImport(e)
		if err != nil {
			t.Fatal(err)
		}
		want.WriteByte(byte(len(data)))
		want.Write(data)
	}
	const path = "testdata/import/entries.bin"
	if os.Getenv("ETCDSQL_WRITE_FIXTURES") == "1" {
		if err := os.MkdirAll("testdata/import", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, want.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, want.Bytes()) {
		t.Fatal("import entries encode to other bytes than the fixture")
	}
	h := newHarness(t)
	for len(raw) > 0 {
		n := int(raw[0])
		e, err := DecodeImport(raw[1 : 1+n])
		if err != nil {
			t.Fatal(err)
		}
		if ImportRelease(e.Kind) != releaseImport {
			t.Fatalf("%v: release %q", e.Kind, ImportRelease(e.Kind))
		}
		h.mustImp(e)
		raw = raw[1+n:]
	}
	h.wantRev(11)
	if _, err := Decode(append([]byte{entryVersion2}, byte(ImportBegin))); err == nil {
		t.Fatal("Decode took an import entry as a request")
	}
	if res := h.s.Apply(h.idx+1, []byte{entryVersion2, 99}); !errors.Is(res.Err, ErrUnknownEntry) {
		t.Fatalf("unknown import kind: %v", res.Err)
	}
}

// A reset wipes an import in progress back to revision 1, still
// importing, and a new begin may follow; every store applying the same
// entries agrees, also through a snapshot.
func TestImportReset(t *testing.T) {
	wantErr(t, "reset without an import", newHarness(t).imp(&ImportEntry{Kind: ImportReset, Msg: &pb.ResponseHeader{}}).Err, ErrNotImporting)
	a, b := newHarness(t), newHarness(t)
	log := append(importLog(), &ImportEntry{Kind: ImportReset, Msg: &pb.ResponseHeader{}}, beginEntry(0xdef),
		keysEntry(4, kvAt("/z", "1", 4, 4, 1, 0)))
	for _, e := range log {
		a.mustImp(e)
		b.mustImp(e)
	}
	if a.s.Digest() != b.s.Digest() {
		t.Fatal("digests differ")
	}
	a.wantRev(4)
	if got := kvsStr(a.all(0)); got != kvsStr([]*mvccpb.KeyValue{kvAt("/z", "1", 4, 4, 1, 0)}) {
		t.Fatalf("keys after reset and a new copy: %s", got)
	}
	if len(a.s.Leases()) != 0 || a.s.ImportWipes() != 1 || a.s.Import().Source != 0xdef {
		t.Fatalf("after reset: leases %v, wipes %d, import %+v", a.s.Leases(), a.s.ImportWipes(), a.s.Import())
	}
	var buf bytes.Buffer
	if _, err := a.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	c := newHarness(t)
	if err := c.s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if c.s.Digest() != a.s.Digest() || c.s.ImportWipes() != 1 {
		t.Fatal("restored store differs")
	}
	if ch, err := a.s.ChangesSince(0, 100, 1<<20, 0, 0); err != nil || ch.Wipes != 1 || len(ch.Changes) != 1 {
		t.Fatalf("changes after reset: %+v, %v", ch, err)
	}
}
