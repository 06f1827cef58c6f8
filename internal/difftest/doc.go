// Package difftest is a differential test harness for etcd-compatible
// servers. It runs the same deterministic sequence of requests against a
// reference (a real etcd 3.4) and a subject, over clientv3/gRPC and over the
// HTTP/JSON gateway exactly as APISIX's lua-resty-etcd sends them, and
// compares the answers field by field after masking the header fields that
// differ between any two clusters (cluster_id, member_id, raft_term).
//
// Targets may be https with client certificates required (StartEtcdWith,
// Target.TLS, TestDifferentialTLS); the TLS cases compare what each side
// answers to refused clients by outcome class.
//
// The pieces: StartEtcd runs a real etcd; Runner pairs two Targets and runs
// Cases on both; a Case records observations (Conn.Post, Conn.GRPC, Stream
// windows) and states expectations (Conn.Want) that must hold on both
// targets; Diff reports every difference by path.
package difftest
