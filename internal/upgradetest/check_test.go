package upgradetest

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/apisixsim"
)

// convergeWithin bounds the wait for every gateway to hold the truth once
// the writers stopped.
const convergeWithin = 30 * time.Second

// checkAdmin: no Admin write failed.
func checkAdmin(t *testing.T, w *adminWriter, steps []step) {
	t.Helper()
	failed := 0
	for _, op := range w.ops {
		if op.failed() {
			failed++
			if failed <= 5 {
				t.Errorf("Admin %s /routes/%s (op-%d) failed during %s: status %d, %v (%s)",
					op.kind, op.id, op.seq, during(steps, op.begin), op.status, op.err, op.detail)
			}
		}
	}
	t.Logf("Admin writer: %d writes, %d failed", len(w.ops), failed)
	if len(w.ops) < 100 {
		t.Errorf("only %d Admin writes were made", len(w.ops))
	}
}

// checkKV: every acknowledged put is in the cluster and in the database
// with its value, nothing else is there but puts whose outcome is unknown,
// and the acknowledgements' header revisions only grew.
func checkKV(t *testing.T, ctx context.Context, cli *clientv3.Client, dsn string, w *kvWriter, steps []step) {
	t.Helper()
	acked, unknown := map[string]string{}, map[string]bool{}
	var last int64
	for _, p := range w.puts {
		if p.err != nil {
			unknown[p.key] = true
			if len(unknown) <= 3 {
				t.Logf("put %s failed after %v during %s: %v", p.key, ms(p.end.Sub(p.begin)), during(steps, p.begin), p.err)
			}
			continue
		}
		if p.rev <= last {
			t.Errorf("put %s acknowledged at revision %d after one at %d (during %s)", p.key, p.rev, last, during(steps, p.end))
		}
		last = p.rev
		acked[p.key] = p.value
	}
	resp, err := cli.Get(ctx, kvPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("final range: %v", err)
	}
	final := map[string]string{}
	for _, kv := range resp.Kvs {
		final[string(kv.Key)] = string(kv.Value)
	}
	compareTruth(t, "the cluster", final, acked, unknown)
	stored, err := storedKV(ctx, dsn)
	if err != nil {
		t.Fatalf("database: %v", err)
	}
	if !reflect.DeepEqual(stored, final) {
		t.Errorf("the database holds %d keys under %s, the cluster %d, and they differ", len(stored), kvPrefix, len(final))
	}
	t.Logf("clientv3 writer: %d puts, %d acknowledged, %d failed (outcome unknown); cluster and database hold %d",
		len(w.puts), len(acked), len(unknown), len(final))
	if len(acked) < 500 {
		t.Errorf("only %d puts were acknowledged", len(acked))
	}
}

func compareTruth(t *testing.T, where string, final, acked map[string]string, unknown map[string]bool) {
	t.Helper()
	lost := 0
	for k, v := range acked {
		if final[k] != v {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged put %s=%s lost: %s has %q", k, v, where, final[k])
			}
		}
	}
	for k := range final {
		if _, ok := acked[k]; !ok && !unknown[k] {
			t.Errorf("%s holds %s, which no put wrote", where, k)
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged puts lost in %s", lost, where)
	}
}

// storedKV reads the kv table's rows under kvPrefix.
func storedKV(ctx context.Context, dsn string) (map[string]string, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT `key`, value FROM kv WHERE `key` LIKE ?", kvPrefix+"%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[string(k)] = string(v)
	}
	return out, rows.Err()
}

// checkFleet waits until every gateway holds the routes the cluster holds,
// then checks each one's deliveries against the history and APISIX's own
// view (no reload, no revision backwards, nothing it would log). It
// returns the history.
func checkFleet(t *testing.T, ctx context.Context, cli *clientv3.Client, truthCli *apisixsim.Client, f *fleet) []refEvent {
	t.Helper()
	waitConverged(t, ctx, truthCli, f)
	base := f.gws[0].base
	for _, g := range f.gws {
		base = min(base, g.base)
	}
	hist, err := history(ctx, cli, base)
	if err != nil {
		t.Fatal(err)
	}
	bad, opens, replays := 0, 0, 0
	for _, g := range f.gws {
		dp := g.dataPlane()
		opens += dp.WatchOpens()
		g.mu.Lock()
		problems := append([]string(nil), g.errs...)
		if err := compareDelivered(g.fresh, hist, g.base); err != nil {
			problems = append(problems, err.Error())
		}
		replays += g.replayed
		g.mu.Unlock()
		problems = append(problems, simProblems(dp)...)
		if len(problems) > 0 {
			bad++
			if bad <= 5 {
				t.Errorf("%s (via %s): %s", g.name, g.via, strings.Join(problems, "; "))
			}
		}
	}
	t.Logf("%d gateways: %d events in the history after revision %d, %d watch opens in all, %d replayed events on reopened watches; %d gateways with problems",
		len(f.gws), len(hist), base, opens, replays, bad)
	return hist
}

// simProblems is what APISIX itself would have noticed.
func simProblems(dp *apisixsim.DataPlane) []string {
	var out []string
	revs := dp.Revisions()
	for i := 1; i < len(revs); i++ {
		if revs[i] < revs[i-1] {
			out = append(out, fmt.Sprintf("header.revision went backwards: %d after %d", revs[i], revs[i-1]))
			break
		}
	}
	if n := dp.Reloads(); n > 0 {
		out = append(out, fmt.Sprintf("%d full reloads", n))
	}
	if a := dp.Anomalies(); len(a) > 0 {
		out = append(out, fmt.Sprintf("%d anomalies, the first: %s", len(a), a[0]))
	}
	return out
}

// waitConverged waits until every gateway's routes equal the cluster's.
func waitConverged(t *testing.T, ctx context.Context, cli *apisixsim.Client, f *fleet) {
	t.Helper()
	truth, _, err := apisixsim.LoadTables(ctx, cli)
	if err != nil {
		t.Fatalf("truth: %v", err)
	}
	deadline := time.Now().Add(convergeWithin)
	for {
		behind := 0
		var first string
		for _, g := range f.gws {
			if !reflect.DeepEqual(g.dataPlane().Tables()["/routes"], truth["/routes"]) {
				if behind == 0 {
					first = g.name
				}
				behind++
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d gateways (%s first) do not hold the cluster's %d routes %v after the writes stopped",
				behind, first, len(truth["/routes"]), convergeWithin)
		}
		time.Sleep(pollEvery)
	}
}
