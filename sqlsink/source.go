package sqlsink

import "github.com/etcdsql/etcdsql/fsm"

// EventSource is the store the leader's sink copies to the database: what
// Check compares the database with, and what Run reads, batch by batch,
// from the high-water mark on. fsm.Store implements it. Implementations
// are safe for concurrent use: the sink reads while raft applies.
type EventSource interface {
	// Revs returns the current and the compact revision, read together.
	Revs() (rev, compactRev int64)
	// AppliedIndex returns the raft index of the last applied entry.
	AppliedIndex() uint64
	// AppliedWait returns a channel closed after the next apply; taken
	// before a read, it wakes the sink for whatever that read missed.
	AppliedWait() <-chan struct{}
	// ChangesSince reads, in one consistent read, the versions after
	// revision after (bounded by maxRevs revisions and maxBytes of keys
	// and values), the lease set if it changed since leaseVersion, the
	// users and roles if they changed since authVersion, the compact
	// revision and the applied index. It fails with fsm.ErrCompacted when
	// compaction dropped revisions after after.
	ChangesSince(after int64, maxRevs, maxBytes int, leaseVersion, authVersion uint64) (fsm.Changes, error)
	// ImportWipes counts the import resets the store applied; a database
	// that counted fewer is wiped before anything else is written.
	ImportWipes() uint64
}

// Proposer is what an EventSource may also report: the entries the
// leader proposed, and how many of them are settled (applied, or failed
// without being appended), each counted from any start. A sink with sync
// acks that finds entries proposed but not settled waits a little for them
// (Config.SyncLinger) before it starts a batch: a batch's commit costs
// nearly the same for one revision as for sixteen, and an entry that just
// misses a batch waits for that batch and then its own.
type Proposer interface {
	Proposals() (proposed, settled uint64)
}

// Loader is the store LoadInto fills from the database: a member's store
// before raft starts, with nothing else touching it. fsm.Store implements
// it.
type Loader interface {
	// Load replaces the whole state: the current and compact revisions,
	// the leases, every retained version in (revision, sub) order, and
	// the users and roles.
	Load(rev, compactRev int64, leases []fsm.LeaseInfo, changes []fsm.Change, auth fsm.AuthState) error
	// MinLeaseTTL returns the shortest TTL the store grants a lease: what
	// a lease the database lost gets (see repairLeases).
	MinLeaseTTL() int64
	// LoadImport gives the loaded store the database's import state: the
	// import mode (from the source cluster with this ID, its key space
	// read at source revision base) and the count of import resets.
	LoadImport(importing bool, source uint64, base int64, wipes uint64)
}
