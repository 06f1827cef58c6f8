package node

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

// The raft log and stable store. Two are supported: raft-wal (segment
// files, one fsync per append; the default for a new data dir) and
// raft-boltdb/v2 (one bbolt file, two fsyncs per append). A data dir keeps
// the store it was created with, whatever the flag says: the two formats
// are not converted into each other.

// Log store names, as --raft-log-store takes them.
const (
	LogStoreWAL    = "wal"
	LogStoreBoltDB = "boltdb"
)

// logStore is what raft needs of the log and stable store, and a Close.
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// logCacheEntries is how many of the newest entries a member keeps in
// memory beside its log store (raft.LogCache). Raft reads each entry back
// after appending it: a leader once per follower to send it, a follower
// once to apply it; from the store that is a read call per entry (raft-wal)
// or a bbolt lookup, 8% of a leader's CPU under 16 writers on three
// members. The cache holds at most this many entries, each at most
// --max-request-bytes (1.5 MiB by default) plus the entry's header.
const logCacheEntries = 256

// cachedLogStore is a log store with its newest entries kept in memory;
// any deletion empties the cache, so it never answers for an entry the
// store no longer holds.
type cachedLogStore struct {
	*raft.LogCache
	raft.StableStore
	io.Closer
}

func withLogCache(s logStore) (logStore, error) {
	c, err := raft.NewLogCache(logCacheEntries, s)
	if err != nil {
		return nil, err
	}
	return cachedLogStore{LogCache: c, StableStore: s, Closer: s}, nil
}

// Files of each store under the raft directory.
const (
	boltLogFile = "raft.db"
	walLogDir   = "wal"
)

// walMarker is what a wal data dir holds where the boltdb store keeps its
// log: release v0.1.0 knows only that store, and without the marker would
// take a wal data dir for an empty one (and start over as a new member);
// with it, it stops at once, unable to open the file.
const walMarker = "This data dir's raft log is in wal/ (etcdsql --raft-log-store wal, v0.2.0 or later).\n" +
	"Release v0.1.0 cannot read it: run v0.2.0 or later on this data dir.\n"

// logStoreIn names the store a raft directory already holds ("" for none).
func logStoreIn(dir string) (string, error) {
	// wal first: a wal data dir also holds a raft.db, the marker below.
	for _, s := range []struct{ name, path string }{
		{LogStoreWAL, filepath.Join(dir, walLogDir)},
		{LogStoreBoltDB, filepath.Join(dir, boltLogFile)},
	} {
		_, err := os.Stat(s.path)
		if err == nil {
			return s.name, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("node: inspect raft log: %w", err)
		}
	}
	return "", nil
}

// openLogStore opens the log store in dir: the one it holds, or a new one
// of kind want.
func openLogStore(dir, want string, walSegment int) (logStore, string, error) {
	have, err := logStoreIn(dir)
	if err != nil {
		return nil, "", err
	}
	kind := want
	if have != "" {
		kind = have
	}
	switch kind {
	case LogStoreWAL:
		path := filepath.Join(dir, walLogDir)
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, "", fmt.Errorf("node: raft log: %w", err)
		}
		if have == "" {
			if err := os.WriteFile(filepath.Join(dir, boltLogFile), []byte(walMarker), 0o600); err != nil {
				return nil, "", fmt.Errorf("node: raft log: %w", err)
			}
		}
		// raft-wal's metadata is a bbolt file that waits for ever for a
		// lock another process holds: the lock file answers first.
		lock, err := lockDir(path)
		if err != nil {
			return nil, "", err
		}
		meta := &metadb.BoltMetaDB{}
		size := walSegment
		if size <= 0 {
			size = raftwal.DefaultSegmentSize
		}
		w, err := raftwal.Open(path, raftwal.WithMetaStore(meta), raftwal.WithSegmentSize(size))
		if err != nil {
			meta.Close()
			lock.Close()
			return nil, "", fmt.Errorf("node: open raft log (wal): %w", err)
		}
		return &walStore{WAL: w, meta: meta, lock: lock}, kind, nil
	case LogStoreBoltDB:
		// The freelist is rebuilt on open instead of written on every
		// commit, and a large initial mmap avoids remapping (which stalls
		// writers) as the log grows.
		b, err := raftboltdb.New(raftboltdb.Options{
			Path: filepath.Join(dir, boltLogFile),
			BoltOptions: &bbolt.Options{
				Timeout:         time.Second,
				NoFreelistSync:  true,
				FreelistType:    bbolt.FreelistMapType,
				InitialMmapSize: 256 << 20,
			},
		})
		if err != nil {
			return nil, "", fmt.Errorf("node: open raft log (boltdb): %w", err)
		}
		return b, kind, nil
	}
	return nil, "", fmt.Errorf("node: unknown raft log store %q (want %s or %s)", kind, LogStoreWAL, LogStoreBoltDB)
}

// walStore is raft-wal with the metadata store and the lock it does not
// close itself.
type walStore struct {
	*raftwal.WAL
	meta *metadb.BoltMetaDB
	lock *os.File
}

// GetLog reads one entry. raft-wal serves entries below its first index
// while their segment is still open (truncating the head only moves the
// first index); such an entry is gone, and may be from another history:
// once a member installs a snapshot its old entries are removed, and an
// old entry read back at the leader's previous index would refuse every
// append after the snapshot.
func (s *walStore) GetLog(index uint64, l *raft.Log) error {
	first, err := s.WAL.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	return s.WAL.GetLog(index, l)
}

func (s *walStore) Close() error {
	return errors.Join(s.WAL.Close(), s.meta.Close(), s.lock.Close())
}

// lockDir takes an exclusive lock on dir's LOCK file, waiting up to a
// second for a process that is stopping, and fails if another process
// keeps it. Closing the file releases the lock.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: raft log lock: %w", err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("node: raft log %s is in use by another process: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLogStore is the log store tests run members with: the default, or
// the one ETCDSQL_RAFT_LOG_STORE names (the variable the binary reads for
// --raft-log-store), so that one test suite covers each store.
func TestLogStore() string {
	if s := os.Getenv("ETCDSQL_RAFT_LOG_STORE"); s != "" {
		return s
	}
	return DefaultConfig().LogStore
}
