package node

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// A data dir keeps the log store it was created with, whatever is asked
// for later, and its entries survive a reopen.
func TestLogStoreKeptByDataDir(t *testing.T) {
	for _, first := range []string{LogStoreWAL, LogStoreBoltDB} {
		t.Run(first, func(t *testing.T) {
			dir := t.TempDir()
			s, kind, err := openLogStore(dir, first, 0)
			if err != nil || kind != first {
				t.Fatalf("open = %q, %v; want %q", kind, err, first)
			}
			if err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: []byte("a")}, {Index: 2, Term: 1, Data: []byte("b")}}); err != nil {
				t.Fatal(err)
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			other := LogStoreBoltDB
			if first == LogStoreBoltDB {
				other = LogStoreWAL
			}
			s, kind, err = openLogStore(dir, other, 0)
			if err != nil || kind != first {
				t.Fatalf("reopen asking for %q = %q, %v; want the data dir's %q", other, kind, err, first)
			}
			defer s.Close()
			var l raft.Log
			if err := s.GetLog(2, &l); err != nil || string(l.Data) != "b" {
				t.Fatalf("entry 2 after reopen = %q, %v", l.Data, err)
			}
			if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
				t.Fatalf("term after reopen = %d, %v", term, err)
			}
		})
	}
}

// A second opener of a wal store in use fails within about a second with
// a clear error instead of waiting for ever.
func TestLogStoreInUse(t *testing.T) {
	dir := t.TempDir()
	s, _, err := openLogStore(dir, LogStoreWAL, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = openLogStore(dir, LogStoreWAL, 0)
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open = %v, want 'in use by another process'", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _, err = openLogStore(dir, LogStoreWAL, 0)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s.Close()
	if got, _ := logStoreIn(dir); got != LogStoreWAL {
		t.Fatalf("store in %s = %q", filepath.Base(dir), got)
	}
	// The raft.db a wal data dir holds is no bbolt file: v0.1.0, which
	// opens only raft.db, stops instead of starting over on an empty log.
	if _, err := bbolt.Open(filepath.Join(dir, boltLogFile), 0o600, &bbolt.Options{Timeout: time.Second}); err == nil {
		t.Fatal("a wal data dir's raft.db opened as a bbolt database")
	}
}

// Entries below the first index are gone once the head is truncated, on
// each store: raft-wal keeps them in its open segment, and serving them
// made a member that installed a snapshot find a stale entry (an older
// term) at the leader's previous index, refuse the append and be sent the
// snapshot again, for ever. After the whole log is removed (what raft does
// once it installs a snapshot on a monotonic store) the log continues past
// the snapshot's index. The same holds through the cache of the newest
// entries that raft reads the store through, which holds every entry
// here: it must answer as the store does.
func TestLogStoreHeadTruncation(t *testing.T) {
	for _, kind := range []string{LogStoreWAL, LogStoreBoltDB} {
		for _, cached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cached=%v", kind, cached), func(t *testing.T) {
				testLogStoreHeadTruncation(t, kind, cached)
			})
		}
	}
}

func testLogStoreHeadTruncation(t *testing.T, kind string, cached bool) {
	s, _, err := openLogStore(t.TempDir(), kind, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cached {
		if s, err = withLogCache(s); err != nil {
			t.Fatal(err)
		}
	}
	defer s.Close()
	var logs []*raft.Log
	for i := uint64(1); i <= 100; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 2, Data: []byte("x")})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 60); err != nil {
		t.Fatal(err)
	}
	if first, err := s.FirstIndex(); err != nil || first != 61 {
		t.Fatalf("first index = %d, %v; want 61", first, err)
	}
	var l raft.Log
	for _, i := range []uint64{1, 30, 60} {
		if err := s.GetLog(i, &l); err != raft.ErrLogNotFound {
			t.Fatalf("entry %d after truncating up to 60: %v (term %d); want raft.ErrLogNotFound", i, err, l.Term)
		}
	}
	if err := s.GetLog(61, &l); err != nil || l.Index != 61 {
		t.Fatalf("entry 61 = %d, %v", l.Index, err)
	}
	// A snapshot up to 200 installed: every entry goes, and the
	// next append is 201.
	if err := s.DeleteRange(61, 100); err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{61, 100} {
		if err := s.GetLog(i, &l); err != raft.ErrLogNotFound {
			t.Fatalf("entry %d after removing every entry: %v (term %d); want raft.ErrLogNotFound", i, err, l.Term)
		}
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 201, Term: 3, Data: []byte("y")}}); err != nil {
		t.Fatalf("append after the snapshot's index: %v", err)
	}
	if err := s.GetLog(201, &l); err != nil || l.Term != 3 {
		t.Fatalf("entry 201 = term %d, %v", l.Term, err)
	}
	if err := s.GetLog(100, &l); err != raft.ErrLogNotFound {
		t.Fatalf("entry 100 after appending 201: %v (term %d)", err, l.Term)
	}
}
