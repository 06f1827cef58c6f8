package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// TestMain fails the run if any goroutine started by the tests outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A --quick run of a few loads against the real etcd 3.4 and etcdsql
// prints one table: a row per figure, with both servers' medians and a
// ratio, and etcdsql's leases expire within 500 ms of their TTL.
func TestQuickRunPrintsTable(t *testing.T) {
	bin := testserver.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, log bytes.Buffer
	err := run(ctx, []string{"--quick", "--rounds", "2", "--etcdsql", bin, "--mysql-dsn", "", "--dir", t.TempDir(),
		"--loads", "put1,cas16,watch100,lease"}, &out, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	t.Logf("\n%s", out.String())
	rows := parseTable(t, out.String())
	want := []string{
		"put 256 B, 1 client, ops/s", "put 256 B, 1 client, p50 ms", "txn compare-and-swap, 16 clients, ops/s",
		"put → event, 100 watchers, 200 puts/s, p99 ms",
		"lease expiry, 20 leases of 2 s, TTL → DELETE event, p99 ms",
	}
	for _, name := range want {
		if _, ok := rows[name]; !ok {
			t.Errorf("no row %q", name)
		}
	}
	for name, cells := range rows {
		wantBetter := "lower"
		if strings.HasSuffix(name, "ops/s") {
			wantBetter = "higher"
		}
		if cells[0] != wantBetter {
			t.Errorf("%s: better %q, want %q", name, cells[0], wantBetter)
		}
		etcd, sql := number(t, name, cells[1]), number(t, name, cells[2])
		ratio, err := strconv.ParseFloat(strings.TrimSuffix(cells[3], "x"), 64)
		if err != nil || !strings.HasSuffix(cells[3], "x") {
			t.Errorf("%s: ratio %q", name, cells[3])
			continue
		}
		if etcd > 0 && sql > 0 && (ratio < sql/etcd*0.9-0.01 || ratio > sql/etcd*1.1+0.01) {
			t.Errorf("%s: ratio %v, but %v / %v", name, ratio, sql, etcd)
		}
	}
	if lag := number(t, "lease p99", rows["lease expiry, 20 leases of 2 s, TTL → DELETE event, p99 ms"][2]); lag >= 500 {
		t.Errorf("etcdsql's leases: p99 %v ms from TTL to DELETE event, want under 500", lag)
	}
}

// parseTable reads the Markdown table: figure → [better, etcd, etcdsql,
// ratio].
func parseTable(t *testing.T, out string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	var header []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case header == nil:
			header = cells
			if strings.Join(header, ",") != "figure,better,etcd,etcdsql,etcdsql / etcd" {
				t.Fatalf("header %q", header)
			}
		case cells[0] == "---":
		case len(cells) != len(header):
			t.Fatalf("row %q has %d cells, want %d", line, len(cells), len(header))
		default:
			rows[cells[0]] = cells[1:]
		}
	}
	if len(rows) == 0 {
		t.Fatalf("no table in:\n%s", out)
	}
	return rows
}

func number(t *testing.T, what, cell string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(cell, 64)
	if err != nil || v < 0 {
		t.Errorf("%s: %q is not a measured figure", what, cell)
	}
	return v
}

// Without etcd the command says what to install and fails; --help is
// not a failure.
func TestMissingEtcdAndHelp(t *testing.T) {
	err := run(context.Background(), []string{"--etcd", "/nonexistent/etcd"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "apt-get install etcd-server") {
		t.Errorf("without etcd: %v", err)
	}
	var help bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, io.Discard, &help); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	for _, s := range []string{"--rounds", "--quick", "--mysql-dsn", "cluster-put16", "lease"} {
		if !strings.Contains(help.String(), strings.TrimPrefix(s, "-")) {
			t.Errorf("--help does not mention %s", s)
		}
	}
	if err := run(context.Background(), []string{"--rounds", "1"}, io.Discard, io.Discard); err == nil {
		t.Error("--rounds 1 accepted")
	}
}
