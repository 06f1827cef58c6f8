package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsql/etcdsql/sqlsink"
)

// errDifferent makes check exit 1 without another message.
var errDifferent = errors.New("the database and the member differ")

// runCheck compares a member's state with the database at the database's
// high-water mark and prints every difference.
func runCheck(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("etcdsql check", flag.ContinueOnError)
	fs.SetOutput(out)
	dsn := fs.String("mysql-dsn", "", "MySQL/MariaDB DSN of the system of record")
	sqlitePath := fs.String("sqlite", "", "path of a SQLite system of record (instead of --mysql-dsn)")
	endpoints := fs.String("endpoints", "http://127.0.0.1:2379", "comma-separated client URLs of the member(s) to compare")
	timeout := fs.Duration("timeout", time.Minute, "overall time limit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*dsn == "") == (*sqlitePath == "") {
		return errors.New("check: give exactly one of --mysql-dsn and --sqlite")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	sink, err := sqlsink.OpenReadOnly(sqlsink.Config{MySQLDSN: *dsn, SQLitePath: *sqlitePath})
	if err != nil {
		return err
	}
	defer sink.Close()
	st, err := sink.State(ctx)
	if err != nil {
		return err
	}
	dbKVs, err := sink.Current(ctx)
	if err != nil {
		return err
	}
	diffs, err := sink.CheckHistory(ctx)
	if err != nil {
		return err
	}
	for _, ep := range splitList(*endpoints) {
		memberKVs, err := rangeAll(ctx, ep, st.Revision)
		if err != nil {
			return fmt.Errorf("check: %s: %w", ep, err)
		}
		for _, d := range sqlsink.CompareKVs(dbKVs, memberKVs) {
			diffs = append(diffs, ep+": "+d)
		}
	}
	fmt.Fprintf(out, "database revision %d, compact revision %d, %d keys; members: %s\n",
		st.Revision, st.CompactRev, len(dbKVs), strings.Join(splitList(*endpoints), ", "))
	for _, d := range diffs {
		fmt.Fprintln(out, d)
	}
	if len(diffs) > 0 {
		fmt.Fprintf(out, "%d differences\n", len(diffs))
		return errDifferent
	}
	fmt.Fprintln(out, "no differences")
	return nil
}

// rangeAll reads every key of one member at revision rev.
func rangeAll(ctx context.Context, endpoint string, rev int64) ([]*mvccpb.KeyValue, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	resp, err := c.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(rev), clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	return resp.Kvs, nil
}
