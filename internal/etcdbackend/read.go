package etcdbackend

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// openTimeout bounds the wait for the file lock of a database another
// process (a running etcd) holds.
var openTimeout = 2 * time.Second

// ReadFile reads a backend file: a snapshot as `etcdctl snapshot save`
// writes it, whose trailing sha256 sum it verifies (ErrChecksum when it
// does not match), or an etcd member's member/snap/db, which has none. A
// compaction the file has scheduled but not finished is applied, as etcd
// does when it opens the backend. Safe for concurrent use.
func ReadFile(path string) (*State, error) {
	if err := verifyChecksum(path); err != nil {
		return nil, err
	}
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: openTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("etcdbackend: open %s: %w: another process holds it (a running etcd?); read a copy saved with etcdctl snapshot save", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("etcdbackend: open %s: %w", path, err)
	}
	defer db.Close()
	st := &State{}
	if err := db.View(func(tx *bbolt.Tx) error { return read(tx, st) }); err != nil {
		return nil, fmt.Errorf("etcdbackend: read %s: %w", path, err)
	}
	return st, nil
}

// HasChecksum reports whether a file of size bytes ends with a sha256
// sum: etcd's rule (a database is a whole number of 512-byte blocks).
func HasChecksum(size int64) bool { return size%512 == sha256.Size }

// verifyChecksum checks the sha256 sum at the end of path, if it has one.
func verifyChecksum(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("etcdbackend: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("etcdbackend: %w", err)
	}
	if !HasChecksum(fi.Size()) {
		return nil
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, fi.Size()-sha256.Size); err != nil {
		return fmt.Errorf("etcdbackend: read %s: %w", path, err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return fmt.Errorf("etcdbackend: read %s: %w", path, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("etcdbackend: %s: %w: the file ends with %x, its contents hash to %x (damaged or truncated)", path, ErrChecksum, want, got)
	}
	return nil
}

func read(tx *bbolt.Tx, st *State) error {
	var problems []string
	for err := range tx.Check() {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("integrity check failed: %d errors, the first: %s", len(problems), problems[0])
	}
	keys, meta := tx.Bucket(bucketKey), tx.Bucket(bucketMeta)
	if keys == nil || meta == nil {
		return fmt.Errorf("%w: no %q or %q bucket", ErrNotBackend, bucketKey, bucketMeta)
	}
	if v := meta.Get(keyConsistentIndex); len(v) == 8 {
		st.ConsistentIndex = binary.BigEndian.Uint64(v)
	}
	finished, err := metaRev(meta, keyFinishedCompact)
	if err != nil {
		return err
	}
	scheduled, err := metaRev(meta, keyScheduledCompact)
	if err != nil {
		return err
	}
	st.CompactRev = max(finished, scheduled, 0)

	st.Rev = 1
	err = keys.ForEach(func(k, v []byte) error {
		main, _, tombstone, err := parseRevKey(k)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotBackend, err)
		}
		kv := &mvccpb.KeyValue{}
		if err := kv.Unmarshal(v); err != nil {
			return fmt.Errorf("%w: revision %d: %v", ErrNotBackend, main, err)
		}
		ev := &mvccpb.Event{Type: mvccpb.PUT, Kv: kv}
		if tombstone {
			ev.Type, ev.Kv = mvccpb.DELETE, &mvccpb.KeyValue{Key: kv.Key, ModRevision: main}
		} else if kv.ModRevision != main {
			return fmt.Errorf("%w: key %q stored at revision %d says mod revision %d", ErrNotBackend, kv.Key, main, kv.ModRevision)
		}
		st.History = append(st.History, ev)
		st.Rev = main
		return nil
	})
	if err != nil {
		return err
	}
	if scheduled > finished {
		st.History = compactHistory(st.History, scheduled)
	}
	st.Rev = max(st.Rev, st.CompactRev)

	if b := tx.Bucket(bucketLease); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			l, err := unmarshalLease(v)
			if err != nil {
				return fmt.Errorf("%w: lease %x: %v", ErrNotBackend, k, err)
			}
			st.Leases = append(st.Leases, l)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return readAuth(tx, &st.Auth)
}

// metaRev reads a compaction revision from the meta bucket (0 if absent).
func metaRev(meta *bbolt.Bucket, name []byte) (int64, error) {
	v := meta.Get(name)
	if v == nil {
		return 0, nil
	}
	main, _, _, err := parseRevKey(v)
	if err != nil {
		return 0, fmt.Errorf("%w: meta %s: %v", ErrNotBackend, name, err)
	}
	return main, nil
}

// compactHistory drops what etcd's compaction at rev drops: of each key's
// versions at or below rev, all but the one visible at rev, and that one
// too when it is a deletion.
func compactHistory(h []*mvccpb.Event, rev int64) []*mvccpb.Event {
	visible := make(map[string]int)
	for i, ev := range h {
		if ev.Kv.ModRevision > rev {
			break
		}
		visible[string(ev.Kv.Key)] = i
	}
	out := make([]*mvccpb.Event, 0, len(h))
	for i, ev := range h {
		if ev.Kv.ModRevision <= rev && (visible[string(ev.Kv.Key)] != i || ev.Type == mvccpb.DELETE) {
			continue
		}
		out = append(out, ev)
	}
	return out
}

func readAuth(tx *bbolt.Tx, a *Auth) error {
	if b := tx.Bucket(bucketAuth); b != nil {
		a.Enabled = bytes.Equal(b.Get(keyAuthEnabled), authEnabledValue)
		if v := b.Get(keyAuthRevision); len(v) == 8 {
			a.Revision = binary.BigEndian.Uint64(v)
		}
	}
	if b := tx.Bucket(bucketAuthUsers); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			u := &authpb.User{}
			if err := u.Unmarshal(v); err != nil {
				return fmt.Errorf("%w: user %q: %v", ErrNotBackend, k, err)
			}
			a.Users = append(a.Users, u)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if b := tx.Bucket(bucketAuthRoles); b != nil {
		return b.ForEach(func(k, v []byte) error {
			r := &authpb.Role{}
			if err := r.Unmarshal(v); err != nil {
				return fmt.Errorf("%w: role %q: %v", ErrNotBackend, k, err)
			}
			a.Roles = append(a.Roles, r)
			return nil
		})
	}
	return nil
}
