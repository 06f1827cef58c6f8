package etcdbackend

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Bucket and key names, as etcd 3.4 spells them.
var (
	bucketKey            = []byte("key")
	bucketMeta           = []byte("meta")
	bucketLease          = []byte("lease")
	bucketAlarm          = []byte("alarm")
	bucketAuth           = []byte("auth")
	bucketAuthUsers      = []byte("authUsers")
	bucketAuthRoles      = []byte("authRoles")
	bucketCluster        = []byte("cluster")
	bucketMembers        = []byte("members")
	bucketMembersRemoved = []byte("members_removed")

	keyConsistentIndex  = []byte("consistent_index")
	keyScheduledCompact = []byte("scheduledCompactRev")
	keyFinishedCompact  = []byte("finishedCompactRev")
	keyAuthEnabled      = []byte("authEnabled")
	keyAuthRevision     = []byte("authRevision")
	authEnabledValue    = []byte{1}
	authDisabledValue   = []byte{0}
	allBuckets          = [][]byte{bucketKey, bucketMeta, bucketLease, bucketAlarm, bucketAuth, bucketAuthUsers, bucketAuthRoles, bucketCluster, bucketMembers, bucketMembersRemoved}
)

const (
	// revBytes is the length of a revision key: main, '_', sub.
	revBytes = 17
	// markTombstone ends the key of a deletion (18 bytes).
	markTombstone = 't'
)

// revKey encodes a revision as a key of the key bucket.
func revKey(main, sub int64, tombstone bool) []byte {
	b := make([]byte, revBytes, revBytes+1)
	binary.BigEndian.PutUint64(b, uint64(main))
	b[8] = '_'
	binary.BigEndian.PutUint64(b[9:], uint64(sub))
	if tombstone {
		b = append(b, markTombstone)
	}
	return b
}

// parseRevKey decodes a key of the key bucket.
func parseRevKey(b []byte) (main, sub int64, tombstone bool, err error) {
	switch {
	case len(b) == revBytes+1 && b[revBytes] == markTombstone:
		tombstone = true
	case len(b) != revBytes:
		return 0, 0, false, fmt.Errorf("revision key %x: %d bytes", b, len(b))
	}
	if b[8] != '_' {
		return 0, 0, false, fmt.Errorf("revision key %x: no '_' separator", b)
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[9:])), tombstone, nil
}

// uint64Bytes is an 8-byte big-endian number, as etcd stores IDs, indexes
// and the auth revision.
func uint64Bytes(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

// Lease is one lease: its ID, its granted TTL and the seconds it has left
// (in a backend file, the TTL itself unless etcd checkpointed the lease).
type Lease struct{ ID, TTL, RemainingTTL int64 }

// leasepb.Lease's field numbers (etcd's lease/leasepb/lease.proto).
const (
	leaseFieldID           = 1
	leaseFieldTTL          = 2
	leaseFieldRemainingTTL = 3
)

// marshalLease encodes l as etcd's leasepb.Lease; RemainingTTL is written
// only when it differs from the TTL (etcd writes 0: not checkpointed).
func marshalLease(l Lease) []byte {
	var b []byte
	for _, f := range []struct {
		num protowire.Number
		v   int64
	}{{leaseFieldID, l.ID}, {leaseFieldTTL, l.TTL}, {leaseFieldRemainingTTL, remainingToStore(l)}} {
		if f.v != 0 {
			b = protowire.AppendTag(b, f.num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(f.v))
		}
	}
	return b
}

func remainingToStore(l Lease) int64 {
	if l.RemainingTTL == l.TTL {
		return 0
	}
	return l.RemainingTTL
}

// unmarshalLease decodes etcd's leasepb.Lease; a lease never checkpointed
// has its whole TTL left.
func unmarshalLease(b []byte) (Lease, error) {
	var l Lease
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.VarintType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return l, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case leaseFieldID:
			l.ID = int64(v)
		case leaseFieldTTL:
			l.TTL = int64(v)
		case leaseFieldRemainingTTL:
			l.RemainingTTL = int64(v)
		}
	}
	if l.RemainingTTL <= 0 {
		l.RemainingTTL = l.TTL
	}
	return l, nil
}
