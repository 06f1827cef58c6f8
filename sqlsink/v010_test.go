package sqlsink

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
)

// testdata/v0.1.0-mariadb.sql is a database release v0.1.0's sink wrote
// (mysqldump of it): revisions 2 to 8, a compaction at 3, a lease with a
// TTL of 600 s whose key was deleted.

// This release rebuilds from a database v0.1.0 wrote, and writes on in the
// same schema, so that a v0.1.0 leader can take over again (a rollback):
// no table, column or index changes, and the schema version stays 1.
func TestV010DatabaseLoadsAndStaysWritable(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	loadDump(t, dsn, "testdata/v0.1.0-mariadb.sql")
	before := schemaOf(t, dsn)

	cfg := DefaultConfig()
	cfg.MySQLDSN = dsn
	sk, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	rs := newTestStore(t)
	st, err := sk.LoadInto(context.Background(), rs.s)
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != 8 || st.CompactRev != 3 || st.ClusterID != 2101929663167088094 {
		t.Fatalf("loaded %+v, want revision 8, compaction 3 and v0.1.0's cluster ID", st)
	}
	resp, err := rs.s.Range(&pb.RangeRequest{Key: []byte("/apisix/"), RangeEnd: []byte("/apisix0")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range resp.Kvs {
		got = append(got, string(kv.Key)+"@"+string(kv.Value))
	}
	want := `/apisix/consumers/jack@{"username":"jack"} /apisix/routes/1@{"uri":"/a2"} /apisix/ssls/1@x /apisix/upstreams/1@{"nodes":{}}`
	if strings.Join(got, " ") != want {
		t.Fatalf("loaded %q\nwant %q", got, want)
	}
	if ls := rs.s.Leases(); len(ls) != 1 || ls[0].TTL != 600 {
		t.Fatalf("loaded leases %+v, want one of 600 s", ls)
	}

	rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("/apisix/routes/3"), Value: []byte(`{"uri":"/c"}`)}})
	rs.apply(&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("/apisix/ssls/1")}})
	// A rebuilt member leads at a term above the database's fence (2).
	runAtTermUntil(t, 3, 10*time.Second, sk, rs.s, func() bool { return sk.SunkRevision() == rs.s.Rev() })
	kvs, err := sk.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, kv := range kvs {
		got = append(got, string(kv.Key))
	}
	if want := "/apisix/consumers/jack /apisix/routes/1 /apisix/routes/3 /apisix/upstreams/1"; strings.Join(got, " ") != want {
		t.Fatalf("database holds %q after this release wrote, want %q", got, want)
	}
	if after := schemaOf(t, dsn); after != before {
		t.Fatalf("this release changed v0.1.0's schema:\n%s\nwas\n%s", after, before)
	}
}

// loadDump runs a mysqldump file against dsn's database.
func loadDump(t *testing.T, dsn, path string) {
	t.Helper()
	dump, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sql.Open("mysql", dsn+sep+"multiStatements=true")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(string(dump)); err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
}

// schemaOf returns the tables' definitions and the schema version.
func schemaOf(t *testing.T, dsn string) string {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []string
	for _, table := range []string{"kv", "kv_log", "leases", "meta"} {
		var name, def string
		if err := db.QueryRow("SHOW CREATE TABLE "+table).Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		out = append(out, def)
	}
	var version string
	if err := db.QueryRow("SELECT value FROM meta WHERE name = 'schema_version'").Scan(&version); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query("SHOW TABLES")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var table string
		rows.Scan(&table)
		out = append(out, "table "+table)
	}
	return strings.Join(out, "\n") + "\nschema_version " + version
}
