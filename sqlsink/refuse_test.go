package sqlsink

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestRefusalClassifiesDataErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		refused bool
		reason  string // in the refusal; quoted values never are
	}{
		{"data too long", &mysql.MySQLError{Number: 1406, SQLState: [5]byte{'2', '2', '0', '0', '1'}, Message: "Data too long for column 'value' at row 1"}, true, "MySQL error 1406: Data too long for column 'value' at row 1"},
		{"null", &mysql.MySQLError{Number: 1048, SQLState: [5]byte{'2', '3', '0', '0', '0'}, Message: "Column 'value' cannot be null"}, true, "1048"},
		{"out of range", &mysql.MySQLError{Number: 1264, SQLState: [5]byte{'2', '2', '0', '0', '3'}, Message: "Out of range value for column 'lease' at row 1"}, true, "1264"},
		{"incorrect value", &mysql.MySQLError{Number: 1366, SQLState: [5]byte{'H', 'Y', '0', '0', '0'}, Message: `Incorrect string value: '\xF0\x9F\x98\x80' for column ` + "`d`.`kv`.`key`" + ` at row 1`}, true, "Incorrect string value: '...' for column"},
		{"truncated", &mysql.MySQLError{Number: 1292, SQLState: [5]byte{'2', '2', '0', '0', '7'}, Message: "Truncated incorrect DOUBLE value: 'secret'"}, true, "value: '...'"},
		{"duplicate", &mysql.MySQLError{Number: 1062, SQLState: [5]byte{'2', '3', '0', '0', '0'}, Message: "Duplicate entry 'k' for key 'PRIMARY'"}, true, "Duplicate entry '...' for key"},
		{"wrapped", fmt.Errorf("sqlsink: write batch: %w", &mysql.MySQLError{Number: 1406, Message: "Data too long"}), true, "1406"},
		{"lock wait", &mysql.MySQLError{Number: 1205, SQLState: [5]byte{'H', 'Y', '0', '0', '0'}, Message: "Lock wait timeout exceeded"}, false, ""},
		{"deadlock", &mysql.MySQLError{Number: 1213, SQLState: [5]byte{'4', '0', '0', '0', '1'}, Message: "Deadlock found"}, false, ""},
		{"server gone", &mysql.MySQLError{Number: 2006, Message: "MySQL server has gone away"}, false, ""},
		{"bad connection", mysql.ErrInvalidConn, false, ""},
		{"timeout", fmt.Errorf("%w after 5s: %w", errBatchTimeout, context.DeadlineExceeded), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := refusal(tc.err, 7, 9)
			if (r != nil) != tc.refused {
				t.Fatalf("refusal(%v) = %v, want refused %v", tc.err, r, tc.refused)
			}
			if r == nil {
				return
			}
			if !errors.Is(r, ErrRefused) || !strings.Contains(r.Error(), "revisions 7-9") || !strings.Contains(r.Error(), tc.reason) {
				t.Errorf("refusal = %q, want ErrRefused, revisions 7-9 and %q", r, tc.reason)
			}
			for _, secret := range []string{`\xF0`, "secret", "'k'"} {
				if strings.Contains(r.Error(), secret) {
					t.Errorf("refusal %q shows the value %s", r, secret)
				}
			}
		})
	}
}

// SQLite refuses a constraint violation: a NOT NULL constraint the
// operator added to kv.
func TestRefusalOnSQLiteConstraint(t *testing.T) {
	sk := openSQLite(t, filepath.Join(t.TempDir(), "db"))
	defer sk.Close()
	_, err := sk.DB().Exec("CREATE TABLE t (v INTEGER NOT NULL)")
	if err == nil {
		_, err = sk.DB().Exec("INSERT INTO t (v) VALUES (NULL)")
	}
	if err == nil {
		t.Fatal("insert of NULL into a NOT NULL column succeeded")
	}
	if r := refusal(err, 1, 1); !errors.Is(r, ErrRefused) {
		t.Errorf("refusal(%v) = %v, want ErrRefused", err, r)
	}
}

// The database's applied index may belong to another raft log, one from
// before the cluster was rebuilt from the database. A sink must not ack
// entries by it: only a running sink that passed its checks (which read
// the database again) acks.
func TestWaitIndexWaitsForACheckedSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	sk := openSQLite(t, path)
	if _, err := sk.DB().Exec("UPDATE meta SET value = 500 WHERE name = ?", metaApplied); err != nil {
		t.Fatal(err)
	}
	sk.Close()
	sk = openSQLite(t, path) // reads applied index 500
	defer sk.Close()
	rs := newTestStore(t)
	for i := 0; i < 3; i++ {
		rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}})
	}
	done, cancel := context.WithCancel(context.Background())
	cancel() // WaitIndex answers from what it knows, without waiting
	if err := sk.WaitIndex(done, 3); err == nil {
		t.Fatal("WaitIndex(3) acked by the database's applied index 500 before any sink ran")
	}
	// A sink that fails its checks (fenced) acks nothing either.
	if _, err := sk.DB().Exec("UPDATE meta SET value = 10 WHERE name = ?", metaLeaderTerm); err != nil {
		t.Fatal(err)
	}
	if err := sk.Run(context.Background(), rs.s, 1); !errors.Is(err, ErrFenced) {
		t.Fatalf("run at term 1 over fence 10: %v, want ErrFenced", err)
	}
	if err := sk.WaitIndex(done, 3); err == nil {
		t.Fatal("WaitIndex(3) acked after the sink was fenced")
	}
	if _, err := sk.DB().Exec("UPDATE meta SET value = 1 WHERE name = ?", metaLeaderTerm); err != nil {
		t.Fatal(err)
	}
	sk.setHealth(nil)
	runUntil(t, sk, rs.s, func() bool { return sk.WaitIndex(done, 3) == nil && sk.SunkRevision() == rs.s.Rev() })
}
