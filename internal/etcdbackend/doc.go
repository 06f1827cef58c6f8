// Package etcdbackend reads and writes etcd 3.4's backend file: the bbolt
// database an etcd member keeps in member/snap/db, which `etcdctl snapshot
// save` fetches (followed by the sha256 sum of its bytes) and `etcdctl
// snapshot restore` turns into a new data directory.
//
// The layout is etcd 3.4's (mvcc/kvstore.go, mvcc/revision.go,
// lease/lessor.go, auth/store.go, etcdserver/api/membership/store.go), one
// bbolt bucket per concern:
//
//	key      every retained version of every key, keyed by its revision:
//	         the main revision (8 bytes, big-endian), '_', the sub revision
//	         (its position in the revision's transaction, 8 bytes), and a
//	         trailing 't' for a deletion (a tombstone). The value is the
//	         mvccpb.KeyValue; a tombstone's holds only the key.
//	meta     consistent_index (the raft index applied, 8 bytes), and
//	         scheduledCompactRev and finishedCompactRev (revision keys).
//	lease    leasepb.Lease {ID, TTL, RemainingTTL} by ID (8 bytes).
//	auth     authEnabled (one byte, 1 when on) and authRevision (8 bytes);
//	authUsers, authRoles: authpb.User and authpb.Role by name.
//	members, members_removed, cluster, alarm: membership and alarms.
//
// etcd rebuilds its index from the key bucket alone: its current revision
// is the last revision there (or the compact revision, when higher), a
// key's create revision and version come from its first retained version,
// and a compaction that was scheduled but not finished is run again when
// the backend is opened. The read side (ReadFile) follows the same rules.
//
// An import from a file takes the leases (State.Leases), the key space at
// the current revision (State.KeysAt(State.Rev)), and, when it wants the
// history too, the versions after the compact revision (State.History).
package etcdbackend
