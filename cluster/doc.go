// Package cluster discovers and tracks the members of an etcdsql cluster
// with memberlist: stable member names, addresses and versions in gossip
// metadata.
package cluster
