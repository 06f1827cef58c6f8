package sqlsink

import (
	"fmt"
	"strings"
)

// dialect is what differs between the SQL databases the sink writes.
// Adding PostgreSQL means adding one of these.
type dialect interface {
	// driver is the database/sql driver name.
	driver() string
	// migrations are the schema versions, in order; each is a list of
	// statements that must be idempotent.
	migrations() [][]string
	// q quotes an identifier.
	q(name string) string
	// rowsPerStatement bounds the rows of one insert (0: only by
	// maxParams and maxStatementBytes); fixedRows says that an insert has
	// either that many rows or one. SQLite prepares each statement once
	// and runs it for every batch, so its inserts come in two shapes, 32
	// rows and one (a statement of 32 rows costs far less than 32 runs of
	// one, and parsing a new shape every batch more than both); MySQL
	// takes as many rows as fit, to spare round trips.
	rowsPerStatement() int
	fixedRows() bool
	// insertIgnore starts an insert that skips rows whose key exists.
	insertIgnore(table string) string
	// upsertKV is the suffix that makes an insert into kv update a row
	// only with a newer mod_revision.
	upsertKV() string
	// sessionSetup runs on the writer's own session: a lock wait short
	// enough to notice, within a batch's timeout, a deposed writer that
	// holds the fence. Empty: nothing to run.
	sessionSetup() string
	// sessionID returns the session's id; empty: sessions cannot be
	// ended by another (SQLite has one writer, in one process).
	sessionID() string
	// killSession ends another session (its transaction rolls back);
	// %d is the session id (KILL takes no placeholder).
	killSession() string
	// compactLog returns the statements that drop from kv_log every
	// version a read at the compact revision can no longer see, in the
	// order they must run: first versions superseded at or below it
	// (arguments: the compact revision twice), then deletions below it
	// (argument: the compact revision). The other order would keep the
	// last put of a key deleted before the compact revision.
	compactLog() []string
	// maxParams bounds placeholders in one statement.
	maxParams() int
	// authTables creates the auth store's tables (auth.go); idempotent.
	authTables() []string
}

// placeholders returns "(?,?,...),(?,...)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(row+",", rows), ",")
}

type mysqlDialect struct{}

func (mysqlDialect) driver() string               { return "mysql" }
func (mysqlDialect) q(name string) string         { return "`" + name + "`" }
func (mysqlDialect) maxParams() int               { return 60000 }
func (mysqlDialect) rowsPerStatement() int        { return 0 }
func (mysqlDialect) fixedRows() bool              { return false }
func (mysqlDialect) sessionSetup() string         { return "SET SESSION innodb_lock_wait_timeout = 1" }
func (mysqlDialect) sessionID() string            { return "SELECT CONNECTION_ID()" }
func (mysqlDialect) killSession() string          { return "KILL CONNECTION %d" }
func (mysqlDialect) insertIgnore(t string) string { return "INSERT IGNORE INTO " + t }
func (mysqlDialect) upsertKV() string {
	newer := "VALUES(mod_revision) > mod_revision"
	return fmt.Sprintf(" ON DUPLICATE KEY UPDATE value = IF(%[1]s, VALUES(value), value),"+
		" create_revision = IF(%[1]s, VALUES(create_revision), create_revision),"+
		" version = IF(%[1]s, VALUES(version), version), lease = IF(%[1]s, VALUES(lease), lease),"+
		" mod_revision = GREATEST(mod_revision, VALUES(mod_revision))", newer)
}

func (mysqlDialect) migrations() [][]string {
	return [][]string{{
		"CREATE TABLE IF NOT EXISTS meta (name VARCHAR(64) NOT NULL PRIMARY KEY, value BIGINT NOT NULL) ENGINE=InnoDB",
		// The key is binary: case-sensitive, compared byte by byte, as
		// etcd orders keys.
		"CREATE TABLE IF NOT EXISTS kv (`key` VARBINARY(3072) NOT NULL PRIMARY KEY, value LONGBLOB NOT NULL," +
			" create_revision BIGINT NOT NULL, mod_revision BIGINT NOT NULL, version BIGINT NOT NULL, lease BIGINT NOT NULL) ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS kv_log (revision BIGINT NOT NULL, sub INT NOT NULL, deleted TINYINT NOT NULL," +
			" `key` VARBINARY(3072) NOT NULL, value LONGBLOB NOT NULL, create_revision BIGINT NOT NULL, version BIGINT NOT NULL," +
			" lease BIGINT NOT NULL, PRIMARY KEY (revision, sub), KEY kv_log_key (`key`(255), revision)) ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS leases (id BIGINT NOT NULL PRIMARY KEY, ttl BIGINT NOT NULL) ENGINE=InnoDB",
	}}
}

func (mysqlDialect) compactLog() []string {
	return []string{
		"DELETE l FROM kv_log l JOIN kv_log n ON n.`key` = l.`key` AND (n.revision > l.revision OR (n.revision = l.revision AND n.sub > l.sub))" +
			" AND n.revision <= ? WHERE l.revision < ?",
		"DELETE FROM kv_log WHERE revision < ? AND deleted = 1",
	}
}

type sqliteDialect struct{}

func (sqliteDialect) driver() string               { return "sqlite" }
func (sqliteDialect) q(name string) string         { return `"` + name + `"` }
func (sqliteDialect) maxParams() int               { return 30000 }
func (sqliteDialect) rowsPerStatement() int        { return 32 }
func (sqliteDialect) fixedRows() bool              { return true }
func (sqliteDialect) sessionSetup() string         { return "" }
func (sqliteDialect) sessionID() string            { return "" }
func (sqliteDialect) killSession() string          { return "" }
func (sqliteDialect) insertIgnore(t string) string { return "INSERT OR IGNORE INTO " + t }
func (sqliteDialect) upsertKV() string {
	return ` ON CONFLICT("key") DO UPDATE SET value = excluded.value, create_revision = excluded.create_revision,` +
		` mod_revision = excluded.mod_revision, version = excluded.version, lease = excluded.lease` +
		` WHERE excluded.mod_revision > kv.mod_revision`
}

func (sqliteDialect) migrations() [][]string {
	return [][]string{{
		"CREATE TABLE IF NOT EXISTS meta (name TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL)",
		`CREATE TABLE IF NOT EXISTS kv ("key" BLOB NOT NULL PRIMARY KEY, value BLOB NOT NULL,` +
			` create_revision INTEGER NOT NULL, mod_revision INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL) WITHOUT ROWID`,
		`CREATE TABLE IF NOT EXISTS kv_log (revision INTEGER NOT NULL, sub INTEGER NOT NULL, deleted INTEGER NOT NULL,` +
			` "key" BLOB NOT NULL, value BLOB NOT NULL, create_revision INTEGER NOT NULL, version INTEGER NOT NULL,` +
			` lease INTEGER NOT NULL, PRIMARY KEY (revision, sub)) WITHOUT ROWID`,
		`CREATE INDEX IF NOT EXISTS kv_log_key ON kv_log ("key", revision)`,
		"CREATE TABLE IF NOT EXISTS leases (id INTEGER NOT NULL PRIMARY KEY, ttl INTEGER NOT NULL)",
	}}
}

func (sqliteDialect) compactLog() []string {
	return []string{
		`DELETE FROM kv_log WHERE revision < ?2 AND EXISTS (SELECT 1 FROM kv_log n WHERE n."key" = kv_log."key"` +
			` AND (n.revision > kv_log.revision OR (n.revision = kv_log.revision AND n.sub > kv_log.sub)) AND n.revision <= ?1)`,
		"DELETE FROM kv_log WHERE revision < ? AND deleted = 1",
	}
}
