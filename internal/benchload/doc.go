// Package benchload holds the project's load generators: puts, point
// reads, compare-and-swap transactions, put → watch event latency, lease
// expiry lag and APISIX's full load, each against any etcd v3 endpoints
// (etcdsql or a real etcd; internal/serverproc starts either). The
// testing.B benchmarks and `make bench-compare`
// (internal/benchcompare) share them, so both measure the same thing.
//
// Every load is bounded in count and in time: it stops at whichever of
// its Ops and Duration comes first, and within its context.
package benchload
