package sqlsink

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
)

// refusal classifies an error the database returned for a batch: nil for
// errors a retry may cure (the database unreachable, a timeout, a lock
// wait, a deadlock), or an error wrapping ErrRefused when the database
// refuses the data itself (a value too long for its column, NULL in a NOT
// NULL column, a number out of range, a constraint): only an operator
// (fixing the schema) can make such an entry writable.
func refusal(err error, from, to int64) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && refusedByMySQL(me) {
		return fmt.Errorf("%w: revisions %d-%d: MySQL error %d: %s", ErrRefused, from, to, me.Number, redactValues(me.Message))
	}
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqliteConstraint {
		return fmt.Errorf("%w: revisions %d-%d: SQLite: %s", ErrRefused, from, to, redactValues(se.Error()))
	}
	return nil
}

// sqliteConstraint is SQLITE_CONSTRAINT, the primary code of every
// constraint failure (extended codes keep it in their low byte).
const sqliteConstraint = 19

// refusedByMySQL reports MySQL's data errors: SQLSTATE class 22 (data
// exception) and 23 (integrity constraint violation), and the data errors
// that MySQL reports under the generic HY000.
func refusedByMySQL(me *mysql.MySQLError) bool {
	switch me.Number {
	case 1048, // column cannot be null
		1062, // duplicate entry
		1264, // out of range value
		1265, // data truncated
		1292, // incorrect value (truncated)
		1364, // field has no default value
		1366, // incorrect value for column
		1406: // data too long for column
		return true
	}
	class := string(me.SQLState[:2])
	return class == "22" || class == "23"
}

// quotedValue matches the value a data error quotes ("Incorrect string
// value: '\xF0...' for column"): values must not reach logs or /health.
var quotedValue = regexp.MustCompile(`(?i)((?:value|entry):?) '(?:[^'\\]|\\.)*'`)

func redactValues(msg string) string {
	return quotedValue.ReplaceAllString(msg, "$1 '...'")
}
