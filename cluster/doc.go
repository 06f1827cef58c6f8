// Package cluster discovers the members of an etcdsql cluster with
// hashicorp/memberlist. Each member gossips under its stable name (its raft
// server ID) with its addresses, version and role in metadata; the package
// keeps every member it has heard of, alive, failed or left, so that the
// leader can add newcomers and report failures. Gossip only informs: it
// never removes a raft voter by itself.
//
// The package imports nothing of etcdsql's.
package cluster
