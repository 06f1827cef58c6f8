package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Snapshot formats. Version 2 (release v0.1.0's) holds the keys and the
// leases; version 3 adds the auth section after them; version 4 (a store
// importing, or with imported leases) adds the import section after the
// auth section (snapshotimport.go). A store with no user
// and no role writes version 2, byte for byte as v0.1.0 does, so v0.1.0
// members still restore it; only a store with auth state writes version 3,
// which v0.1.0 refuses as "not a snapshot" instead of dropping the users
// and roles. The reader takes both.
var (
	snapshotMagic       = []byte("ETCDSQL\x02")
	snapshotMagicAuth   = []byte("ETCDSQL\x03")
	snapshotMagicImport = []byte("ETCDSQL\x04")
)

// Snapshot is a point-in-time copy of the store's state. Taking one is
// cheap (it shares the immutable records); WriteTo does the I/O and may run
// concurrently with Apply.
type Snapshot struct {
	applied         uint64
	rev, compactRev int64
	leases          []LeaseInfo
	versions        []*version // every retained version, in (rev, sub) order
	auth            AuthState
	imp             *importState
	wipes           uint64
}

// Snapshot captures the current state. Safe for concurrent use.
func (s *Store) Snapshot() *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := &Snapshot{applied: s.applied.Load(), rev: s.rev, compactRev: s.compactRev, auth: s.authState()}
	if s.imp != nil {
		imp := *s.imp
		snap.imp = &imp
	}
	snap.wipes = s.wipes
	for _, l := range s.leases {
		snap.leases = append(snap.leases, LeaseInfo{ID: l.id, TTL: l.ttl, GrantIndex: l.grantIndex, Remaining: l.remaining})
	}
	sort.Slice(snap.leases, func(i, j int) bool { return snap.leases[i].ID < snap.leases[j].ID })
	s.keys.Ascend(func(kr *keyRecord) bool {
		snap.versions = append(snap.versions, kr.versions...)
		return true
	})
	sort.Slice(snap.versions, func(i, j int) bool {
		a, b := snap.versions[i], snap.versions[j]
		if a.kv.ModRevision != b.kv.ModRevision {
			return a.kv.ModRevision < b.kv.ModRevision
		}
		return a.sub < b.sub
	})
	return snap
}

// Rev returns the revision the snapshot was taken at.
func (snap *Snapshot) Rev() int64 { return snap.rev }

// Export is a snapshot's state, for other formats (etcd's backend file):
// the pieces Load takes back. The records are shared and read-only.
type Export struct {
	// AppliedIndex is the raft index the snapshot was taken at.
	AppliedIndex uint64
	// Rev is the current revision; CompactRev the compact revision (-1
	// when the store was never compacted).
	Rev, CompactRev int64
	// Leases is every lease, by ID (Keys unset).
	Leases []LeaseInfo
	// Changes is every retained version in (revision, sub) order.
	Changes []Change
	Auth    AuthState
}

// Export returns the snapshot's state. Safe for concurrent use.
func (snap *Snapshot) Export() Export {
	e := Export{AppliedIndex: snap.applied, Rev: snap.rev, CompactRev: snap.compactRev, Leases: snap.leases, Auth: snap.auth,
		Changes: make([]Change, len(snap.versions))}
	for i, v := range snap.versions {
		e.Changes[i] = Change{KV: v.kv, Sub: v.sub, Deleted: v.tombstone()}
	}
	return e
}

// WriteTo writes the snapshot in its stable binary form.
func (snap *Snapshot) WriteTo(w io.Writer) (int64, error) { return snap.write(w, true) }

// write writes the snapshot; the applied index is left out of digests,
// which compare state only.
func (snap *Snapshot) write(w io.Writer, withApplied bool) (int64, error) {
	bw := bufio.NewWriter(w)
	cw := &countWriter{w: bw}
	var scratch [binary.MaxVarintLen64]byte
	putU := func(v uint64) {
		n := binary.PutUvarint(scratch[:], v)
		cw.Write(scratch[:n])
	}
	withImport := snap.importSection()
	switch {
	case withImport:
		cw.Write(snapshotMagicImport)
	case snap.auth.Empty():
		cw.Write(snapshotMagic)
	default:
		cw.Write(snapshotMagicAuth)
	}
	if withApplied {
		putU(snap.applied)
	}
	putU(uint64(snap.rev))
	n := binary.PutVarint(scratch[:], snap.compactRev)
	cw.Write(scratch[:n])
	putU(uint64(len(snap.leases)))
	for _, l := range snap.leases {
		putU(uint64(l.ID))
		putU(uint64(l.TTL))
		putU(l.GrantIndex)
	}
	putU(uint64(len(snap.versions)))
	var buf []byte
	for _, v := range snap.versions {
		ev := mvccpb.Event{Type: v.ev.Type, Kv: v.kv}
		n := ev.Size()
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		if _, err := ev.MarshalTo(buf[:n]); err != nil {
			return cw.n, fmt.Errorf("fsm: snapshot: %w", err)
		}
		putU(uint64(n))
		cw.Write(buf[:n])
	}
	if withImport || !snap.auth.Empty() {
		if err := writeAuth(cw, putU, snap.auth); err != nil {
			return cw.n, err
		}
	}
	if withImport {
		snap.writeImport(putU)
	}
	if cw.err != nil {
		return cw.n, fmt.Errorf("fsm: snapshot: %w", cw.err)
	}
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("fsm: snapshot: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// Restore replaces the whole state with the one read from r, including the
// applied index the snapshot was taken at. Apply goroutine only (raft calls
// it in place of Apply).
func (s *Store) Restore(r io.Reader) error {
	br := bufio.NewReader(r)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil ||
		(string(magic) != string(snapshotMagic) && string(magic) != string(snapshotMagicAuth) && string(magic) != string(snapshotMagicImport)) {
		return errors.New("fsm: restore: not a snapshot")
	}
	withImport := string(magic) == string(snapshotMagicImport)
	withAuth := withImport || string(magic) == string(snapshotMagicAuth)
	getU := func() uint64 {
		v, err := binary.ReadUvarint(br)
		if err != nil {
			panic(err)
		}
		return v
	}
	fresh := &Store{cfg: s.cfg}
	fresh.reset()
	var appliedIndex uint64
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("fsm: restore: %v", p)
			}
		}()
		appliedIndex = getU()
		fresh.rev = int64(getU())
		c, err := binary.ReadVarint(br)
		if err != nil {
			return err
		}
		fresh.compactRev = c
		for n := getU(); n > 0; n-- {
			id, ttl, gi := int64(getU()), int64(getU()), getU()
			fresh.leases[id] = &lease{id: id, ttl: ttl, grantIndex: gi, keys: make(map[string]struct{})}
		}
		var buf []byte
		var sub int32
		lastRev := int64(0)
		for n := getU(); n > 0; n-- {
			size := getU()
			if uint64(cap(buf)) < size {
				buf = make([]byte, size)
			}
			if _, err := io.ReadFull(br, buf[:size]); err != nil {
				return err
			}
			ev := &mvccpb.Event{}
			if err := ev.Unmarshal(buf[:size]); err != nil {
				return err
			}
			if ev.Kv.ModRevision != lastRev {
				lastRev, sub = ev.Kv.ModRevision, 0
			}
			fresh.restoreVersion(ev, sub)
			sub++
		}
		if withAuth {
			a, err := readAuth(br, getU)
			if err == nil {
				err = a.check()
			}
			if err != nil {
				return err
			}
			fresh.setAuth(a)
		}
		if withImport {
			fresh.readImport(getU)
		}
		return nil
	}()
	if err != nil {
		return err
	}

	s.swapIn(fresh, appliedIndex)
	return nil
}

// swapIn replaces the state with fresh's.
func (s *Store) swapIn(fresh *Store, appliedIndex uint64) {
	s.mu.Lock()
	s.keys, s.history, s.rev, s.compactRev, s.leases = fresh.keys, fresh.history, fresh.rev, fresh.compactRev, fresh.leases
	s.users, s.roles = fresh.users, fresh.roles
	s.authRev, s.authKey = fresh.authRev, fresh.authKey
	s.setAuthOn(fresh.authOn)
	s.setImport(fresh.imp)
	s.wipes = fresh.wipes
	s.leaseVersion++
	s.authVersion++
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.lastChange.Store(appliedIndex)
	s.setApplied(appliedIndex)
}

// Load replaces the whole state with one read from the system of record:
// every retained version in (revision, sub) order, the leases, the current
// and compact revisions, the users and roles. The applied index is reset to 0: the raft log
// that follows starts afresh. Apply goroutine only, before raft starts.
func (s *Store) Load(rev, compactRev int64, leases []LeaseInfo, changes []Change, auth AuthState) error {
	if err := auth.check(); err != nil {
		return err
	}
	fresh := &Store{cfg: s.cfg}
	fresh.reset()
	fresh.setAuth(auth)
	fresh.rev, fresh.compactRev = rev, compactRev
	for _, l := range leases {
		fresh.leases[l.ID] = &lease{id: l.ID, ttl: l.TTL, keys: make(map[string]struct{})}
	}
	var lastRev int64
	for i, c := range changes {
		if c.KV.ModRevision < lastRev || c.KV.ModRevision > rev {
			return fmt.Errorf("fsm: load: change %d at revision %d out of order (after %d, current %d)", i, c.KV.ModRevision, lastRev, rev)
		}
		lastRev = c.KV.ModRevision
		typ := mvccpb.PUT
		if c.Deleted {
			typ = mvccpb.DELETE
		}
		fresh.restoreVersion(&mvccpb.Event{Type: typ, Kv: c.KV}, c.Sub)
	}
	s.swapIn(fresh, 0)
	return nil
}

func (s *Store) restoreVersion(ev *mvccpb.Event, sub int32) {
	w := writeTxn{s: s}
	kr := w.record(ev.Kv.Key)
	del := ev.Type == mvccpb.DELETE
	var prev *version
	if l := kr.latest(); l != nil && !l.tombstone() {
		prev = l
		s.detach(l.kv.Lease, kr.key)
	}
	v := &version{kv: ev.Kv, ev: mkEvent(ev.Kv, del), sub: sub, prev: prev}
	kr.versions = append(kr.versions, v)
	if !del {
		s.attach(ev.Kv.Lease, kr.key)
	}
	if ev.Kv.ModRevision >= s.compactRev {
		s.history = append(s.history, v)
	}
}

// Digest returns a hash of the whole state: equal digests mean equal
// stores. Safe for concurrent use.
func (s *Store) Digest() [32]byte {
	h := sha256.New()
	if _, err := s.Snapshot().write(h, false); err != nil {
		panic(err) // a hash never fails to write
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}
