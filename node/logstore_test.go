package node

import (
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
