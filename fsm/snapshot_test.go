package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// cmdGen generates a random but reproducible command log. It looks at the
// oracle store only to aim compactions and compares at plausible revisions.
type cmdGen struct {
	r         *rand.Rand
	oracle    *Store
	leases    []int64 // every ID ever granted, revoked or not
	nextLease int64
}

func newCmdGen(seed uint64, oracle *Store) *cmdGen {
	return &cmdGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), oracle: oracle, nextLease: 1}
}

func (g *cmdGen) key() []byte {
	if g.r.IntN(10) == 0 {
		return []byte(fmt.Sprintf("other/%d", g.r.IntN(5)))
	}
	return []byte(fmt.Sprintf("k/%02d", g.r.IntN(30)))
}

func (g *cmdGen) value() []byte { return []byte(fmt.Sprintf("v%d", g.r.IntN(10))) }

func (g *cmdGen) lease() int64 {
	if len(g.leases) == 0 || g.r.IntN(4) != 0 {
		return 0
	}
	return g.leases[g.r.IntN(len(g.leases))]
}

// keyRange returns a single key or a small range, with range_end forms
// etcd accepts.
func (g *cmdGen) keyRange() (key, end []byte) {
	switch g.r.IntN(6) {
	case 0:
		a := g.r.IntN(30)
		return []byte(fmt.Sprintf("k/%02d", a)), []byte(fmt.Sprintf("k/%02d", a+g.r.IntN(6)))
	case 1:
		return []byte(fmt.Sprintf("k/%d", g.r.IntN(3))), []byte(fmt.Sprintf("k/%d", g.r.IntN(3)+1))
	case 2:
		return []byte("other/"), []byte("other0")
	}
	return g.key(), nil
}

func (g *cmdGen) put() *pb.PutRequest {
	p := &pb.PutRequest{Key: g.key(), Value: g.value(), Lease: g.lease(), PrevKv: g.r.IntN(2) == 0}
	switch g.r.IntN(25) {
	case 0:
		p.IgnoreValue, p.Value = true, nil
	case 1:
		p.IgnoreLease, p.Lease = true, 0
	}
	return p
}

func (g *cmdGen) compare() *pb.Compare {
	key, end := g.keyRange()
	target := pb.Compare_CompareTarget(g.r.IntN(5))
	result := pb.Compare_CompareResult(g.r.IntN(4))
	rev, _ := g.oracle.Revs()
	var operand any
	switch target {
	case pb.Compare_VALUE:
		operand = string(g.value())
	case pb.Compare_VERSION:
		operand = int64(g.r.IntN(4))
	case pb.Compare_CREATE, pb.Compare_MOD:
		operand = g.r.Int64N(rev + 1)
	case pb.Compare_LEASE:
		operand = g.lease()
	}
	c := cmpOf("", "", target, result, operand)
	c.Key, c.RangeEnd = key, end
	return c
}

func (g *cmdGen) ops(depth int) []*pb.RequestOp {
	n := g.r.IntN(4)
	var ops []*pb.RequestOp
	used := map[string]bool{}
	for i := 0; i < n; i++ {
		switch k := g.r.IntN(10); {
		case k < 4:
			p := g.put()
			if used[string(p.Key)] {
				continue // etcd refuses duplicate keys in one txn
			}
			used[string(p.Key)] = true
			ops = append(ops, opPutReq(p))
		case k < 6:
			key := g.key()
			if used[string(key)] {
				continue
			}
			used[string(key)] = true
			ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: key, PrevKv: g.r.IntN(2) == 0}}})
		case k < 9 || depth > 0:
			key, end := g.keyRange()
			ops = append(ops, opRangeReq(&pb.RangeRequest{Key: key, RangeEnd: end, Limit: int64(g.r.IntN(3))}))
		default:
			ops = append(ops, opTxn(g.txn(depth+1)))
		}
	}
	return ops
}

func (g *cmdGen) txn(depth int) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	for i := g.r.IntN(3); i > 0; i-- {
		t.Compare = append(t.Compare, g.compare())
	}
	t.Success = g.ops(depth)
	t.Failure = g.ops(depth)
	return t
}

func (g *cmdGen) next() *pb.InternalRaftRequest {
	rev, compactRev := g.oracle.Revs()
	switch k := g.r.IntN(100); {
	case k < 42:
		return &pb.InternalRaftRequest{Put: g.put()}
	case k < 62:
		return &pb.InternalRaftRequest{Txn: g.txn(0)}
	case k < 72:
		key, end := g.keyRange()
		return &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: key, RangeEnd: end, PrevKv: g.r.IntN(2) == 0}}
	case k < 82:
		id := g.nextLease
		if len(g.leases) > 0 && g.r.IntN(10) == 0 {
			id = g.leases[g.r.IntN(len(g.leases))] // often a duplicate
		} else {
			g.nextLease++
			g.leases = append(g.leases, id)
		}
		return &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: id, TTL: g.r.Int64N(100)}}
	case k < 90:
		id := int64(g.r.IntN(3) + 1000) // unknown
		if len(g.leases) > 0 && g.r.IntN(5) != 0 {
			id = g.leases[g.r.IntN(len(g.leases))]
		}
		return &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}}
	case k < 92:
		// Mostly valid, sometimes at or below the compact revision.
		target := compactRev + g.r.Int64N((rev-compactRev)/3+1)
		if g.r.IntN(5) == 0 {
			target = compactRev
		}
		return &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: target}}
	case k < 97:
		return g.auth()
	}
	return &pb.InternalRaftRequest{Put: g.put()}
}

// resultStr renders a Result for comparison between stores.
func resultStr(r *Result) string {
	var b strings.Builder
	for _, m := range []interface{ String() string }{r.Put, r.DeleteRange, r.Txn, r.Compaction, r.LeaseGrant, r.LeaseRevoke} {
		if m != nil && !isNilProto(m) {
			b.WriteString(m.String())
		}
		b.WriteString("|")
	}
	fmt.Fprintf(&b, "auth=%v|err=%v", r.Auth, r.Err)
	return b.String()
}

func isNilProto(m interface{ String() string }) bool {
	switch v := m.(type) {
	case *pb.PutResponse:
		return v == nil
	case *pb.DeleteRangeResponse:
		return v == nil
	case *pb.TxnResponse:
		return v == nil
	case *pb.CompactionResponse:
		return v == nil
	case *pb.LeaseGrantResponse:
		return v == nil
	case *pb.LeaseRevokeResponse:
		return v == nil
	}
	return false
}

// runLog applies n generated commands to every harness, checking they all
// return the same results. The first harness is the generator's oracle.
func runLog(t *testing.T, g *cmdGen, n int, hs ...*harness) (errs int) {
	t.Helper()
	for i := 0; i < n; i++ {
		req := g.next()
		want := resultStr(hs[0].apply(req))
		if !strings.HasSuffix(want, "err=<nil>") {
			errs++
		}
		for j, h := range hs[1:] {
			if got := resultStr(h.apply(req)); got != want {
				t.Fatalf("command %d (%v): store %d returned\n%s\nstore 0 returned\n%s", i, req, j+1, got, want)
			}
		}
	}
	return errs
}

// storeView renders everything a client can read from a store, for
// comparing two stores.
func storeView(t *testing.T, h *harness) string {
	t.Helper()
	var b strings.Builder
	rev, compactRev := h.s.Revs()
	fmt.Fprintf(&b, "rev %d compact %d keys %d\n", rev, compactRev, h.s.KeyCount())
	for r := compactRev; r <= rev; r++ {
		if r == 0 {
			continue
		}
		fmt.Fprintf(&b, "@%d %s\n", r, kvsStr(h.all(r)))
	}
	for _, li := range h.s.Leases() {
		full, _ := h.s.Lease(li.ID, true)
		fmt.Fprintf(&b, "lease %d ttl %d keys %q\n", full.ID, full.TTL, full.Keys)
	}
	return b.String()
}

// watchAll replays every event from start with prev_kv and returns them
// rendered, with the messages' revisions.
func watchAll(t *testing.T, s *Store, start int64) []string {
	t.Helper()
	ws := s.NewWatchStream()
	if _, _, err := ws.Watch(WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: start, PrevKV: true}); err != nil {
		t.Fatal(err)
	}
	_, msgs := collectAll(t, ws)
	var out []string
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("msg rev %d compact %d", m.Revision, m.CompactRevision))
		out = append(out, evsStr(m.Events)...)
	}
	return out
}

func TestDeterminismAndSnapshotRestore(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	g := newCmdGen(20240611, a.s)
	errs := 0
	for round := 0; round < 5; round++ {
		errs += runLog(t, g, 1000, a, b)
		if a.s.Digest() != b.s.Digest() {
			t.Fatalf("round %d: digests differ", round)
		}
	}
	rev, compactRev := a.s.Revs()
	if compactRev == 0 || rev < 2000 || errs == 0 || len(a.s.Leases()) == 0 || a.s.Auth().Empty() {
		t.Fatalf("log too tame: rev %d compact %d errors %d leases %d auth %v", rev, compactRev, errs, len(a.s.Leases()), a.s.Auth())
	}
	t.Logf("after 5000 commands: rev %d, compact %d, %d keys, %d leases, %d failed commands", rev, compactRev, a.s.KeyCount(), len(a.s.Leases()), errs)
	if a.s.AppliedIndex() != 5000 || b.s.AppliedIndex() != 5000 {
		t.Fatalf("applied %d, %d", a.s.AppliedIndex(), b.s.AppliedIndex())
	}
	if va, vb := storeView(t, a), storeView(t, b); va != vb {
		t.Fatalf("stores with equal digests read differently")
	}

	// Snapshot, write, restore into a store that already holds other state.
	snap := a.s.Snapshot()
	if snap.Rev() != rev {
		t.Fatalf("snapshot rev %d, want %d", snap.Rev(), rev)
	}
	var buf bytes.Buffer
	n, err := snap.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v; wrote %d bytes", n, err, buf.Len())
	}
	var buf2 bytes.Buffer
	b.s.Snapshot().WriteTo(&buf2)
	if !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
		t.Fatal("snapshots of identical stores differ")
	}

	c := newHarness(t)
	c.put("stale", "x")
	c.mustGrant(424242, 5)
	appliedWait := c.s.AppliedWait()
	changed, _ := c.s.Changed()
	if err := c.s.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	for name, ch := range map[string]<-chan struct{}{"AppliedWait": appliedWait, "Changed": changed} {
		select {
		case <-ch:
		default:
			t.Fatalf("Restore did not close the %s channel", name)
		}
	}
	c.idx = a.idx
	if c.s.AppliedIndex() != a.s.AppliedIndex() {
		t.Fatalf("restored applied index %d, want %d", c.s.AppliedIndex(), a.s.AppliedIndex())
	}
	if c.s.Digest() != a.s.Digest() {
		t.Fatal("restored digest differs")
	}
	if va, vc := storeView(t, a), storeView(t, c); va != vc {
		t.Fatalf("restored store reads differently:\n%s\nvs\n%s", firstDiff(va, vc), "")
	}
	if c.get("stale") != nil {
		t.Fatal("Restore kept state from before")
	}
	for _, start := range []int64{compactRev + 1, compactRev, rev} {
		wa, wc := watchAll(t, a.s, start), watchAll(t, c.s, start)
		if len(wa) == 0 && start <= rev-10 {
			t.Fatalf("watch from %d saw nothing", start)
		}
		if !slices.Equal(wa, wc) {
			t.Fatalf("watch from %d differs after restore:\n%s", start, firstDiff(strings.Join(wa, "\n"), strings.Join(wc, "\n")))
		}
	}

	// The restored store keeps behaving identically: lease revokes delete
	// the same keys, compactions drop the same versions.
	runLog(t, g, 1500, a, b, c)
	if a.s.Digest() != c.s.Digest() || a.s.Digest() != b.s.Digest() {
		t.Fatal("digests differ after continuing past the restore")
	}
	if va, vc := storeView(t, a), storeView(t, c); va != vc {
		t.Fatalf("stores diverged after restore:\n%s", firstDiff(va, vc))
	}

	// Digest sees a single extra change.
	b.put("k/00", "divergent")
	if a.s.Digest() == b.s.Digest() {
		t.Fatal("digest did not change with the state")
	}
}

func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(la) && i < len(lb); i++ {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d:\n  %s\n  %s", i, la[i], lb[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d lines", len(la), len(lb))
}

// A snapshot is a point-in-time copy: applying (and compacting) after it is
// taken, even while WriteTo runs, does not change what it writes.
func TestSnapshotIsPointInTime(t *testing.T) {
	a := newHarness(t)
	g := newCmdGen(7, a.s)
	runLog(t, g, 1500, a)
	snap := a.s.Snapshot()
	wantDigest, wantView := a.s.Digest(), storeView(t, a)
	wantApplied := a.s.AppliedIndex()

	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := snap.WriteTo(&buf)
		done <- err
	}()
	runLog(t, g, 500, a)
	rev, _ := a.s.Revs()
	a.mustCompact(rev)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if a.s.Digest() == wantDigest {
		t.Fatal("store did not change after the snapshot")
	}
	c := newHarness(t)
	if err := c.s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if c.s.Digest() != wantDigest || c.s.AppliedIndex() != wantApplied {
		t.Fatalf("restored: applied %d (want %d), digest equal %v", c.s.AppliedIndex(), wantApplied, c.s.Digest() == wantDigest)
	}
	c.idx = wantApplied
	if v := storeView(t, c); v != wantView {
		t.Fatalf("restored view differs:\n%s", firstDiff(wantView, v))
	}
}

func TestRestoreRejectsBadInput(t *testing.T) {
	src := newHarness(t)
	runLog(t, newCmdGen(3, src.s), 300, src)
	var buf bytes.Buffer
	if _, err := src.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()

	dst := newHarness(t)
	dst.put("mine", "1")
	dst.mustGrant(1, 10)
	wantDigest := dst.s.Digest()
	inputs := map[string][]byte{
		"empty":       nil,
		"bad magic":   append([]byte("NOTETCD\x01"), full[8:]...),
		"magic only":  full[:8],
		"truncated 9": full[:9],
		"truncated ½": full[:len(full)/2],
		"missing end": full[:len(full)-1],
	}
	for name, in := range inputs {
		if err := dst.s.Restore(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: Restore accepted %d bytes", name, len(in))
		}
		if dst.s.Digest() != wantDigest || dst.s.AppliedIndex() != dst.idx {
			t.Fatalf("%s: failed Restore changed the store", name)
		}
	}
	if err := dst.s.Restore(bytes.NewReader(full)); err != nil {
		t.Fatalf("full snapshot: %v", err)
	}
	if dst.s.Digest() != src.s.Digest() {
		t.Fatal("digest differs after a good restore")
	}
}

func TestSnapshotEmptyStore(t *testing.T) {
	a := newHarness(t)
	var buf bytes.Buffer
	if _, err := a.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	c := newHarness(t)
	c.put("x", "1")
	if err := c.s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	c.idx = 0
	c.wantRev(1)
	if c.s.KeyCount() != 0 || c.s.AppliedIndex() != 0 || c.s.Digest() != a.s.Digest() {
		t.Fatal("restoring an empty snapshot did not reset the store")
	}
	// It works as a fresh store afterwards.
	if r := c.put("y", "1").Header.Revision; r != 2 {
		t.Fatalf("first put after restore at %d", r)
	}
}

// TestExportLoad: what Export gives, Load takes back whole (the grant
// index of leases aside, which Load resets), and Export is a point in
// time while the store moves on.
func TestExportLoad(t *testing.T) {
	a := newHarness(t)
	g := newCmdGen(11, a.s)
	runLog(t, g, 1200, a)
	rev, _ := a.s.Revs()
	a.mustCompact(rev - 40)
	runLog(t, g, 200, a)
	e := a.s.Snapshot().Export()
	if e.AppliedIndex != a.idx || e.Rev == 0 || e.CompactRev < rev-40 || len(e.Changes) == 0 || len(e.Leases) == 0 {
		t.Fatalf("export: applied %d rev %d compact %d, %d changes, %d leases", e.AppliedIndex, e.Rev, e.CompactRev, len(e.Changes), len(e.Leases))
	}
	// The current revision is the last retained version's, or the compact
	// revision's: etcd's backend has no other place for it.
	if last := e.Changes[len(e.Changes)-1].KV.ModRevision; e.Rev != max(last, e.CompactRev) {
		t.Fatalf("revision %d, last version at %d, compacted at %d", e.Rev, last, e.CompactRev)
	}
	runLog(t, g, 200, a)

	b := newHarness(t)
	if err := b.s.Load(e.Rev, e.CompactRev, e.Leases, e.Changes, e.Auth); err != nil {
		t.Fatal(err)
	}
	got := b.s.Snapshot().Export()
	for i := range e.Leases {
		e.Leases[i].GrantIndex = 0
	}
	got.AppliedIndex = e.AppliedIndex
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("loaded export differs: rev %d/%d compact %d/%d, %d/%d changes, %d/%d leases",
			got.Rev, e.Rev, got.CompactRev, e.CompactRev, len(got.Changes), len(e.Changes), len(got.Leases), len(e.Leases))
	}
}

// TestRevisionHeldByVersions: whatever the commands (deletes, lease
// revocations, compactions at any revision), the current revision is that
// of the last retained version or the compact revision, as etcd's backend
// requires of a snapshot taken from us.
func TestRevisionHeldByVersions(t *testing.T) {
	for seed := range uint64(20) {
		a := newHarness(t)
		g := newCmdGen(100+seed, a.s)
		for step := range 30 {
			runLog(t, g, 50, a)
			if step%7 == 3 {
				rev, _ := a.s.Revs()
				a.mustCompact(rev)
			}
			e := a.s.Snapshot().Export()
			last := int64(1)
			if len(e.Changes) > 0 {
				last = e.Changes[len(e.Changes)-1].KV.ModRevision
			}
			if e.Rev != max(last, e.CompactRev, 1) {
				t.Fatalf("seed %d step %d: revision %d, last version at %d, compacted at %d", seed, step, e.Rev, last, e.CompactRev)
			}
		}
	}
}
