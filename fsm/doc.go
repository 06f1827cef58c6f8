// Package fsm is the deterministic state machine every etcdsql node holds:
// an in-memory MVCC key-value store with etcd's revision rules, the leases
// that keys attach to, the event history that watches replay from, and the
// watch streams that read it.
//
// Every change enters through Apply, one committed raft entry at a time.
// Apply reads no clock, no random source and no network: two stores fed the
// same entries hold the same state, byte for byte (see Digest). Reads
// (Range, WatchStream) run concurrently with Apply under a read lock and
// share the immutable key-value records Apply creates.
//
// validate.go holds etcd's request checks, which every door runs before it
// proposes; Apply refuses on its own only what would break the system of
// record (an empty or too long key, a lease TTL out of bounds).
//
// Lock order: Store.mu is the only lock in the package. Nothing sends on a
// channel, calls back or performs I/O while holding it.
package fsm
