package sqlsink

import "github.com/etcdsql/etcdsql/fsm"

// The store is what the sink reads from and what a member loads into.
var (
	_ EventSource = (*fsm.Store)(nil)
	_ Loader      = (*fsm.Store)(nil)
)
