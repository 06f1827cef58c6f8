package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// listFSM appends each command to a list; its snapshot is the list and the
// index it was applied to.
type listFSM struct {
	mu       sync.Mutex
	items    []string
	applied  uint64
	restored func(index uint64)
}

type listSnap struct {
	Items   []string
	Applied uint64
}

func (f *listFSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items = append(f.items, string(l.Data))
	f.applied = l.Index
	return nil
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return listSnap{Items: slices.Clone(f.items), Applied: f.applied}, nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s listSnap
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return err
	}
	f.mu.Lock()
	f.items, f.applied = s.Items, s.Applied
	f.mu.Unlock()
	f.restored(s.Applied)
	return nil
}

func (f *listFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.items)
}

func (s listSnap) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (listSnap) Release() {}

type testPeer struct {
	raft  *raft.Raft
	fsm   *listFSM
	trans *raft.InmemTransport
	logs  *snapLog
}

// A deposed leader that appended entries which never committed, up to or
// past the index of the snapshot the new leader then sends it (the new
// leader has compacted its log behind that snapshot), catches up on each
// log store. Without snapLog and snapTransport, hashicorp/raft (v1.7.3)
// refuses every append after the install and the leader sends the
// snapshot again, for ever.
func TestFollowerCatchesUpAfterSnapshotPastStaleEntries(t *testing.T) {
	for _, kind := range []string{LogStoreWAL, LogStoreBoltDB} {
		for _, at := range []bool{false, true} {
			name := kind + "/stale-past-snapshot"
			if at {
				name = kind + "/stale-ending-at-snapshot"
			}
			t.Run(name, func(t *testing.T) {
				testStaleEntriesPastSnapshot(t, kind, at)
			})
		}
	}
}

// testStaleEntriesPastSnapshot runs the deposed leader's catch-up; with
// endAtSnapshot, the snapshot's index is the deposed leader's last one.
func testStaleEntriesPastSnapshot(t *testing.T, kind string, endAtSnapshot bool) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ids := []raft.ServerID{"a", "b", "c"}
	var servers []raft.Server
	for _, id := range ids {
		servers = append(servers, raft.Server{ID: id, Address: raft.ServerAddress(id)})
	}
	peers := map[raft.ServerID]*testPeer{}
	for _, id := range ids {
		_, trans := raft.NewInmemTransport(raft.ServerAddress(id))
		peers[id] = &testPeer{trans: trans}
	}
	for _, p := range peers {
		for _, q := range peers {
			if p != q {
				p.trans.Connect(q.trans.LocalAddr(), q.trans)
			}
		}
	}
	for _, id := range ids {
		p := peers[id]
		dir := t.TempDir()
		store, _, err := openLogStore(dir, kind, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		// As a member's raft reads it: through the cache of its newest
		// entries, which holds the stale ones until they are removed.
		cached, err := withLogCache(store)
		if err != nil {
			t.Fatal(err)
		}
		p.logs = newSnapLog(cached, quiet)
		snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLogger(quiet, "snapshot"))
		if err != nil {
			t.Fatal(err)
		}
		p.fsm = &listFSM{restored: func(index uint64) { p.logs.restored(index, snaps) }}
		rc := raft.DefaultConfig()
		rc.LocalID = id
		rc.HeartbeatTimeout = 100 * time.Millisecond
		rc.ElectionTimeout = 100 * time.Millisecond
		rc.LeaderLeaseTimeout = 50 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
		rc.SnapshotThreshold = 1 << 30 // snapshots on request only
		rc.SnapshotInterval = time.Hour
		rc.TrailingLogs = 2
		rc.Logger = newHCLogger(quiet, "raft")
		if err := raft.BootstrapCluster(rc, p.logs, p.logs, snaps, p.trans, raft.Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		if p.raft, err = raft.NewRaft(rc, p.fsm, p.logs, p.logs, snaps, newSnapTransport(p.trans, p.logs)); err != nil {
			t.Fatal(err)
		}
		p.logs.attach(p.raft)
		t.Cleanup(func() { p.raft.Shutdown().Error() })
	}
	leader := func(among ...raft.ServerID) *testPeer {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for _, id := range among {
				if peers[id].raft.State() == raft.Leader {
					return peers[id]
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("no leader")
		return nil
	}
	apply := func(p *testPeer, prefix string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := p.raft.Apply([]byte(fmt.Sprintf("%s%d", prefix, i)), 5*time.Second).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := leader(ids...)
	apply(old, "committed-", 10)

	// Cut the leader off; it appends entries that cannot commit.
	var rest []raft.ServerID
	for _, id := range ids {
		if peers[id] != old {
			rest = append(rest, id)
			old.trans.Disconnect(raft.ServerAddress(id))
			peers[id].trans.Disconnect(old.trans.LocalAddr())
		}
	}
	var lost []raft.ApplyFuture
	for i := 0; i < 50; i++ {
		lost = append(lost, old.raft.Apply([]byte(fmt.Sprintf("lost-%d", i)), time.Second))
	}
	for _, f := range lost {
		f.Error()
	}
	staleLast := old.raft.LastIndex()

	// The others elect a leader, write less than the cut-off one appended,
	// and compact their logs behind a snapshot. How many entries the
	// cut-off leader appended before it stepped down depends on the
	// machine's speed, so the new leader writes up to a target: one short
	// of that last index (up to 20 entries) or, with endAtSnapshot,
	// exactly to it.
	next := leader(rest...)
	target := min(next.raft.LastIndex()+20, staleLast-1)
	if endAtSnapshot {
		target = staleLast
	}
	for i := 0; next.raft.LastIndex() < target; i++ {
		apply(next, fmt.Sprintf("new-%d-", i), 1)
	}
	if err := next.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snapIndex := next.raft.LastIndex()
	if endAtSnapshot && snapIndex != staleLast {
		t.Fatalf("setup: the snapshot's index %d is not the cut-off leader's last index %d", snapIndex, staleLast)
	}
	if !endAtSnapshot && snapIndex >= staleLast {
		t.Fatalf("setup: the snapshot's index %d is not below the cut-off leader's last index %d", snapIndex, staleLast)
	}
	if first, _ := next.logs.FirstIndex(); first <= 12 {
		t.Fatalf("setup: the new leader still holds entries from index %d", first)
	}

	for _, id := range rest {
		old.trans.Connect(raft.ServerAddress(id), peers[id].trans)
		peers[id].trans.Connect(old.trans.LocalAddr(), old.trans)
	}
	apply(next, "after-", 5)
	want := next.fsm.list()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(old.fsm.list(), want) {
		if time.Now().After(deadline) {
			got := old.fsm.list()
			t.Fatalf("the deposed leader did not catch up in 10 s: it holds %d entries, the leader %d (last index %d, stale last index %d, snapshot %d)",
				len(got), len(want), old.raft.LastIndex(), staleLast, snapIndex)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// It goes on following, and its log holds the leader's entries.
	apply(next, "later-", 3)
	want = next.fsm.list()
	deadline = time.Now().Add(5 * time.Second)
	for !slices.Equal(old.fsm.list(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the deposed leader stopped following: %d entries, the leader %d", len(old.fsm.list()), len(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
	last, _ := old.logs.LastIndex()
	var l raft.Log
	if err := old.logs.GetLog(last, &l); err != nil || string(l.Data) != "later-2" {
		t.Fatalf("the deposed leader's last entry = %q, %v", l.Data, err)
	}
}

// A data dir whose newest snapshot holds another term at its index than
// the log does loses the log before raft reads it (the entries from there
// on never committed; the snapshot holds those before); one whose log
// agrees with the snapshot keeps it.
func TestSnapLogBeforeStartDropsStaleLog(t *testing.T) {
	for _, tc := range []struct {
		name     string
		snapTerm uint64
		wantLast uint64
	}{
		{"another term at the snapshot's index", 2, 0},
		{"the snapshot's term", 1, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			dir := t.TempDir()
			store, _, err := openLogStore(dir, LogStoreBoltDB, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			var logs []*raft.Log
			for i := uint64(1); i <= 12; i++ {
				logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
			}
			if err := store.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLogger(quiet, "snapshot"))
			if err != nil {
				t.Fatal(err)
			}
			_, trans := raft.NewInmemTransport("a")
			sink, err := snaps.Create(raft.SnapshotVersionMax, 8, tc.snapTerm, raft.Configuration{}, 1, trans)
			if err != nil {
				t.Fatal(err)
			}
			if err := (listSnap{Applied: 8}).Persist(sink); err != nil {
				t.Fatal(err)
			}
			newSnapLog(store, quiet).beforeStart(snaps)
			last, err := store.LastIndex()
			if err != nil || last != tc.wantLast {
				t.Fatalf("last index after beforeStart = %d, %v; want %d", last, err, tc.wantLast)
			}
		})
	}
}

// Once a snapshot is restored, a vote or pre-vote for a candidate whose
// log ends before the snapshot's entry reaches raft as one for a candidate
// with no log (which raft refuses); others pass unchanged.
func TestSnapLogRefusesVotesBehindTheSnapshot(t *testing.T) {
	s := newSnapLog(nil, slog.New(slog.DiscardHandler))
	s.snap.Store(&snapPoint{index: 100, term: 5})
	for _, tc := range []struct {
		term, index uint64
		refused     bool
	}{
		{4, 500, true},
		{5, 99, true},
		{5, 100, false},
		{6, 50, false},
	} {
		sentVote := &raft.RequestVoteRequest{Term: 7, LastLogTerm: tc.term, LastLogIndex: tc.index}
		sentPre := &raft.RequestPreVoteRequest{Term: 7, LastLogTerm: tc.term, LastLogIndex: tc.index}
		vote, pre := raft.RPC{Command: sentVote}, raft.RPC{Command: sentPre}
		s.mend(&vote)
		s.mend(&pre)
		// The sender's requests stay as sent (an in-memory transport
		// shares them with the candidate).
		if sentVote.LastLogTerm != tc.term || sentVote.LastLogIndex != tc.index || sentPre.LastLogTerm != tc.term || sentPre.LastLogIndex != tc.index {
			t.Errorf("candidate ending at term %d index %d: the sent requests were changed", tc.term, tc.index)
		}
		v, p := vote.Command.(*raft.RequestVoteRequest), pre.Command.(*raft.RequestPreVoteRequest)
		if tc.refused {
			if v.LastLogTerm != 0 || v.LastLogIndex != 0 || p.LastLogTerm != 0 || p.LastLogIndex != 0 {
				t.Errorf("candidate ending at term %d index %d: vote %d/%d, pre-vote %d/%d; want 0/0", tc.term, tc.index, v.LastLogTerm, v.LastLogIndex, p.LastLogTerm, p.LastLogIndex)
			}
		} else if v.LastLogTerm != tc.term || v.LastLogIndex != tc.index || p.LastLogTerm != tc.term || p.LastLogIndex != tc.index {
			t.Errorf("candidate ending at term %d index %d changed: vote %d/%d, pre-vote %d/%d", tc.term, tc.index, v.LastLogTerm, v.LastLogIndex, p.LastLogTerm, p.LastLogIndex)
		}
	}
}

// consumerTransport is an in-memory transport whose requests come from a
// channel the test feeds.
type consumerTransport struct {
	*raft.InmemTransport
	in chan raft.RPC
}

func (c consumerTransport) Consumer() <-chan raft.RPC { return c.in }

// A request snapTransport holds when it closes is answered with the
// transport's error and an empty response of the request's type: raft's
// in-memory pipeline reads the response's type first, and a nil one
// panics it.
func TestSnapTransportAnswersHeldRequestAtClose(t *testing.T) {
	_, inner := raft.NewInmemTransport("a")
	in := make(chan raft.RPC)
	st := newSnapTransport(consumerTransport{inner, in}, newSnapLog(nil, slog.New(slog.DiscardHandler)))
	resp := make(chan raft.RPCResponse, 1)
	in <- raft.RPC{Command: &raft.AppendEntriesRequest{Term: 1}, RespChan: resp} // held: nobody takes st.Consumer()
	st.Close()
	select {
	case r := <-resp:
		if _, ok := r.Response.(*raft.AppendEntriesResponse); !ok || !errors.Is(r.Error, raft.ErrTransportShutdown) {
			t.Fatalf("held append answered with %T, %v; want *raft.AppendEntriesResponse, %v", r.Response, r.Error, raft.ErrTransportShutdown)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held append was not answered after Close")
	}
}
