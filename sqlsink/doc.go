// Package sqlsink writes every applied revision to the SQL system of record
// (MySQL/MariaDB, or an embedded SQLite file), in revision order,
// idempotently, from the leader only.
package sqlsink
