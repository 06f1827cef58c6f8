// Package e2e holds end-to-end tests that drive etcdsql only as users do:
// through clientv3, etcdctl or raw HTTP, against in-process members over
// real loopback TCP or against real etcdsql processes.
package e2e
