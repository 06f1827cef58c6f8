// Package node runs one etcdsql member: the raft instance that orders every
// write, the fsm.Store it applies them to, the leader's lease expiry, and
// the read paths (linearizable through the leader's commit index, or
// serializable from the local store). It implements rpc.Backend.
package node
