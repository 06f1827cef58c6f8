package node

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// TestSettleLoadedState: a data dir with the loaded-state marker, no raft
// snapshot, no more than the bootstrap entry and no vote has its bootstrap
// undone; any other data dir (raft ran on it, it has a snapshot, or no
// marker) stays as it is. Each log store.
func TestSettleLoadedState(t *testing.T) {
	for _, kind := range []string{LogStoreWAL, LogStoreBoltDB} {
		for _, tc := range []struct {
			name     string
			marker   bool
			snapshot bool
			entries  uint64 // log entries 1..entries
			vote     uint64 // the term of the last vote, 0 for none
			wantHas  bool
		}{
			{name: "no marker", entries: 1, wantHas: true},
			{name: "marker and a snapshot", marker: true, snapshot: true, entries: 1, wantHas: true},
			{name: "stopped after the bootstrap entry and the fence's term", marker: true, entries: 1, wantHas: false},
			{name: "raft ran: entries past the bootstrap's", marker: true, entries: 3, wantHas: true},
			{name: "raft ran: a vote cast", marker: true, entries: 1, vote: 2, wantHas: true},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				testSettleLoadedState(t, kind, tc.marker, tc.snapshot, tc.entries, tc.vote, tc.wantHas)
			})
		}
	}
}

func testSettleLoadedState(t *testing.T, kind string, marker, snapshot bool, entries, vote uint64, wantHas bool) {
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
		t.Fatal(err)
	}
	store, _, err := openLogStore(filepath.Join(dir, "raft"), kind, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.SetUint64(raftCurrentTerm, 7); err != nil {
		t.Fatal(err)
	}
	if vote != 0 {
		if err := store.SetUint64(raftLastVoteTerm, vote); err != nil {
			t.Fatal(err)
		}
	}
	for i := uint64(1); i <= entries; i++ {
		if err := store.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogConfiguration}); err != nil {
			t.Fatal(err)
		}
	}
	markerPath := filepath.Join(dir, baseSnapshotFile)
	if marker {
		if err := os.WriteFile(markerPath, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	snaps := raft.NewInmemSnapshotStore()
	if snapshot {
		_, trans := raft.NewInmemTransport("a")
		sink, err := snaps.Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, trans)
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
	}
	n := &Node{cfg: Config{DataDir: dir}, log: quiet, logStore: newSnapLog(store, quiet)}

	has, err := n.settleLoadedState(snaps)
	if err != nil || has != wantHas {
		t.Fatalf("settleLoadedState = %v, %v; want %v", has, err, wantHas)
	}
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil || existing != wantHas {
		t.Fatalf("raft.HasExistingState after settleLoadedState = %v, %v; want %v", existing, err, wantHas)
	}
	last, err := store.LastIndex()
	wantLast := entries
	if !wantHas {
		wantLast = 0
	}
	if err != nil || last != wantLast {
		t.Fatalf("last index = %d, %v; want %d", last, err, wantLast)
	}
	_, statErr := os.Stat(markerPath)
	if kept := statErr == nil; kept != (marker && wantHas) {
		t.Fatalf("marker kept = %v, want %v", kept, marker && wantHas)
	}
}
