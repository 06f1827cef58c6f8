// Package etcdimport moves an etcd cluster's data into an etcdsql cluster
// with the same revisions: the leases, the key space at one source
// revision S (each key with its own create and mod revision, version and
// lease), then, revision by revision, what etcd applies after S, each
// source revision becoming the target revision of the same number. It
// drives the import service of the target's client port (rpc's
// importsvc.go), whose entries the target replicates (fsm's
// importentry.go); the target refuses client writes until the import
// finishes. `etcdsql import` is its command.
//
// The source is anything that yields leases, a key space at a revision and
// then events (Source); a live etcd is one (EtcdSource), an etcd
// snapshot file another (SnapshotSource, read with etcdbackend.ReadFile).
package etcdimport
