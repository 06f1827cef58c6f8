// Package sqlsink writes every applied revision to the SQL system of record
// (MySQL/MariaDB, or an embedded SQLite file), in revision order,
// idempotently, from the leader only. It reads the store through the
// interfaces it defines (EventSource, Loader). DESIGN.md says why it
// exists, what it owns, who calls it and the invariants it keeps.
package sqlsink
