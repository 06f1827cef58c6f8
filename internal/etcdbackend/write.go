package etcdbackend

import (
	"context"
	"fmt"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

const (
	// batchVersions bounds the versions one bbolt transaction writes, so
	// that its dirty pages stay small whatever the size of the state.
	batchVersions = 10000
	// seqFillPercent fills the key bucket's pages as etcd does for keys
	// written in order (its UnsafeSeqPut).
	seqFillPercent = 0.9
)

// WriteDB writes st as a new backend database at path (an empty or absent
// file): what an etcd member keeps in member/snap/db, without the sha256
// sum a snapshot ends with (Stream appends it). Versions in the same
// revision get sub revisions in their order in st.History. The members
// buckets are left empty (`etcdctl snapshot restore` replaces them) and
// so is the cluster version, which etcd sets itself once it runs. ctx
// stops the write between two batches.
func WriteDB(ctx context.Context, path string, st *State) error {
	if err := checkState(st); err != nil {
		return fmt.Errorf("etcdbackend: write %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: true, Timeout: openTimeout})
	if err != nil {
		return fmt.Errorf("etcdbackend: create %s: %w", path, err)
	}
	err = writeDB(ctx, db, st)
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("etcdbackend: write %s: %w", path, err)
	}
	return nil
}

// checkState refuses what etcd would not read back as it was: versions
// out of revision order, or a current revision that neither the last
// version nor the compaction holds (etcd takes its revision from them, so
// it would come back lower).
func checkState(st *State) error {
	var last int64
	for i, ev := range st.History {
		if ev.Kv == nil || len(ev.Kv.Key) == 0 {
			return fmt.Errorf("version %d has no key", i)
		}
		if r := ev.Kv.ModRevision; r < last || r <= 0 {
			return fmt.Errorf("version %d of %q at revision %d is out of order (after %d)", i, ev.Kv.Key, r, last)
		}
		last = ev.Kv.ModRevision
	}
	if restored := max(last, st.CompactRev, 1); restored != st.Rev {
		return fmt.Errorf("current revision %d, but etcd would restore at %d (last version %d, compacted at %d)", st.Rev, restored, last, st.CompactRev)
	}
	return nil
}

func writeDB(ctx context.Context, db *bbolt.DB, st *State) error {
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyConsistentIndex, uint64Bytes(st.ConsistentIndex)); err != nil {
			return err
		}
		if st.CompactRev > 0 {
			rev := revKey(st.CompactRev, 0, false)
			if err := meta.Put(keyScheduledCompact, rev); err != nil {
				return err
			}
			if err := meta.Put(keyFinishedCompact, rev); err != nil {
				return err
			}
		}
		leases := tx.Bucket(bucketLease)
		for _, l := range st.Leases {
			if err := leases.Put(uint64Bytes(uint64(l.ID)), marshalLease(l)); err != nil {
				return err
			}
		}
		return writeAuth(tx, st.Auth)
	})
	if err != nil {
		return err
	}
	var lastRev, sub int64
	for start := 0; start < len(st.History); start += batchVersions {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := st.History[start:min(start+batchVersions, len(st.History))]
		err := db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketKey)
			b.FillPercent = seqFillPercent
			for _, ev := range batch {
				if ev.Kv.ModRevision != lastRev {
					lastRev, sub = ev.Kv.ModRevision, 0
				}
				kv := ev.Kv
				if ev.Type == mvccpb.DELETE {
					kv = &mvccpb.KeyValue{Key: ev.Kv.Key}
				}
				v, err := kv.Marshal()
				if err != nil {
					return err
				}
				if err := b.Put(revKey(lastRev, sub, ev.Type == mvccpb.DELETE), v); err != nil {
					return err
				}
				sub++
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func writeAuth(tx *bbolt.Tx, a Auth) error {
	b := tx.Bucket(bucketAuth)
	enabled := authDisabledValue
	if a.Enabled {
		enabled = authEnabledValue
	}
	if err := b.Put(keyAuthEnabled, enabled); err != nil {
		return err
	}
	if err := b.Put(keyAuthRevision, uint64Bytes(max(a.Revision, 1))); err != nil {
		return err
	}
	users, roles := tx.Bucket(bucketAuthUsers), tx.Bucket(bucketAuthRoles)
	for _, u := range a.Users {
		v, err := u.Marshal()
		if err != nil {
			return err
		}
		if err := users.Put(u.Name, v); err != nil {
			return err
		}
	}
	for _, r := range a.Roles {
		v, err := r.Marshal()
		if err != nil {
			return err
		}
		if err := roles.Put(r.Name, v); err != nil {
			return err
		}
	}
	return nil
}
