// Package node runs one etcdsql member: the raft instance that orders every
// write, the fsm.Store it applies them to, and everything a member does
// around them. It implements rpc.Backend (what the client services need)
// and, through leaderSide, rpc.PeerBackend (what the other members call).
//
// Node wires parts that each own their state, one or two files each:
//
//   - config.go: Config, its defaults and validation.
//   - raft.go: raft's setup (log, snapshots, transport, how a member
//     enters its cluster); raftfsm.go adapts the store to raft.FSM;
//     logstore.go opens the log store a data dir holds, and snaplog.go
//     is that store as raft sees it.
//   - formation.go: how a member without raft state joins or forms a
//     cluster (decideFormation, a pure function).
//   - bootstrap.go: database adoption, the fence across rebuilds, the
//     base snapshot, the cluster ID.
//   - leader.go: leadership: readiness, the no-op of a new term, hand-over,
//     the commit nudge, and the signal every wait for leadership uses.
//   - signal.go: the one wait primitive (waitFor).
//   - sinksup.go: the sink supervisor (the SQL writer while leading).
//   - forward.go: client writes and lease calls, run on the leader
//     (forwarded over the peer port when another member leads).
//   - leaderside.go: the leader's answers, for its own clients and for the
//     other members; the only place that proposes.
//   - readindex.go, coalesce.go: reads: the read index and its coalescer.
//   - lessor.go: the leader's lease clock; compactor.go: auto-compaction.
//   - gossip.go, membership.go: gossip, and the leader's reconciliation of
//     gossip with raft (planReconcile, a pure function), member removal.
//   - peerauth.go: members' authentication on the peer port (the port
//     itself, listener, mux, service and client, is rpc.PeerPort).
//   - status.go: health, status, member list, metrics.
//   - member.go: a node with its client server (StartMember).
//
// DESIGN.md says why each part exists and what it must never do.
package node
