package sqlsink

import "errors"

var (
	// ErrFenced: a member with a newer raft term has written to the
	// database; this sink must stop writing.
	ErrFenced = errors.New("sqlsink: fenced by a newer leader")
	// ErrUnhealthy: the last write or probe failed; the database is
	// unreachable or refusing writes.
	ErrUnhealthy = errors.New("sqlsink: database unavailable")
	// ErrGap: the store no longer holds revisions the database lacks.
	ErrGap = errors.New("sqlsink: database is behind the retained history")
	// ErrAhead: the database holds revisions this member does not.
	ErrAhead = errors.New("sqlsink: database is ahead of this member's state")
	// ErrClusterMismatch: the database belongs to another cluster.
	ErrClusterMismatch = errors.New("sqlsink: database belongs to another cluster")
	// ErrRefused: the database refuses the data of an entry (too long
	// for its column, out of range, a constraint), which no retry cures:
	// the sink keeps retrying, but an operator must fix the schema.
	ErrRefused = errors.New("sqlsink: database refuses an entry")
)
