package etcdimport

import "errors"

// The import's refusals; each error the command prints wraps one of them
// and says what to do.
var (
	// ErrTargetNotEmpty: the target cluster has been written.
	ErrTargetNotEmpty = errors.New("the target cluster is not empty")
	// ErrOtherSource: the target imports from another etcd cluster.
	ErrOtherSource = errors.New("the target cluster is importing from another etcd cluster")
	// ErrCompacted: etcd no longer has a revision the import needs.
	ErrCompacted = errors.New("etcd has compacted a revision the import needs")
	// ErrUnreachable: etcd or the target did not answer in time.
	ErrUnreachable = errors.New("cannot reach")
)
