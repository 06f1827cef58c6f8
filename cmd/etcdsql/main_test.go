package main

import (
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdsql/etcdsql/internal/release"
	"github.com/etcdsql/etcdsql/internal/testpki"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/sqlsink"
)

func TestAutoCompactionFlags(t *testing.T) {
	for _, tc := range []struct {
		mode, retention string
		want            node.AutoCompaction
		bad             bool
	}{
		{"periodic", "0", node.AutoCompaction{}, false},
		{"periodic", "1", node.AutoCompaction{Mode: "periodic", Period: time.Hour}, false},
		{"periodic", "90m", node.AutoCompaction{Mode: "periodic", Period: 90 * time.Minute}, false},
		{"revision", "1000", node.AutoCompaction{Mode: "revision", Revisions: 1000}, false},
		{"revision", "1h", node.AutoCompaction{}, true},
		{"periodic", "soon", node.AutoCompaction{}, true},
		{"weekly", "1", node.AutoCompaction{}, true},
	} {
		got, err := autoCompaction(tc.mode, tc.retention)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("autoCompaction(%q, %q) = %+v, %v", tc.mode, tc.retention, got, err)
		}
	}
}

func TestFlagsEnvAndFilePrecedence(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/etcdsql.yaml"
	if err := writeFile(file, "name: fromfile\ndata-dir: /file/dir\nlog-level: warn\n"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ETCDSQL_DATA_DIR", "/env/dir")
	o, err := parse([]string{"--config-file", file, "--log-level", "debug"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.name != "fromfile" || o.dataDir != "/env/dir" || o.logLevel != "debug" {
		t.Fatalf("precedence: name=%q data-dir=%q log-level=%q", o.name, o.dataDir, o.logLevel)
	}
	if err := writeFile(file, "nope: 1\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := parse([]string{"--config-file", file}, nil); err == nil {
		t.Fatal("unknown config file key accepted")
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func TestClusterKeyFile(t *testing.T) {
	dir := t.TempDir()
	good, short := dir+"/good", dir+"/short"
	if err := writeFile(good, "0123456789abcdef\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(short, "0123456789abcde\n"); err != nil {
		t.Fatal(err)
	}
	if k, err := clusterKey(good); err != nil || string(k) != "0123456789abcdef" {
		t.Fatalf("good key: %q %v", k, err)
	}
	if _, err := clusterKey(short); err == nil {
		t.Fatal("a 15-byte key was accepted")
	}
	if _, err := clusterKey(dir + "/missing"); err == nil {
		t.Fatal("a missing key file was accepted")
	}
	if k, err := clusterKey(""); err != nil || k != nil {
		t.Fatalf("no key file: %q %v", k, err)
	}
}

func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(buildInfo())
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "etcdsql_build_info" {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	m := mfs[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if m.GetGauge().GetValue() != 1 || labels["release"] != release.Name || labels["commit"] != release.Commit() {
		t.Fatalf("etcdsql_build_info: %v %v", m.GetGauge().GetValue(), labels)
	}
	if line := versionLine(); !strings.Contains(line, release.Name) || !strings.Contains(line, release.Commit()) {
		t.Fatalf("--version: %q", line)
	}
}

// Client TLS follows etcd's flags: https URLs need a certificate and key,
// several listen URLs may mix http and https, and TLS files given with only
// http URLs are ignored (with a warning) as etcd ignores them.
func TestClientTLSFlags(t *testing.T) {
	ca := testpki.NewCA(t, "clients")
	leaf := ca.Issue(t, "member")
	for _, c := range []struct {
		args    []string
		wantErr string
		wantTLS bool
	}{
		{[]string{"--listen-client-urls", "https://127.0.0.1:2379"}, "TLS key/cert (--cert-file, --key-file) must be provided", false},
		{[]string{"--listen-client-urls", "http://127.0.0.1:2379,https://127.0.0.1:2381", "--cert-file", leaf.CertFile, "--key-file", leaf.KeyFile}, "", true},
		{[]string{"--listen-client-urls", "https://127.0.0.1:2379", "--cert-file", leaf.CertFile, "--key-file", leaf.KeyFile, "--client-cert-auth"}, "--client-cert-auth needs --trusted-ca-file", false},
		{[]string{"--listen-client-urls", "https://127.0.0.1:2379", "--cert-file", leaf.CertFile, "--key-file", leaf.CertFile}, "client certificate", false},
		{[]string{"--cert-file", leaf.CertFile, "--key-file", leaf.KeyFile}, "", false},
	} {
		o, err := parse(c.args, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		mc, err := memberConfig(o, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		switch {
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%v: error %v, want %q", c.args, err, c.wantErr)
		case c.wantErr == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.wantErr == "" && (mc.ClientTLS != nil) != c.wantTLS:
			t.Errorf("%v: TLS configured %v, want %v", c.args, mc.ClientTLS != nil, c.wantTLS)
		}
	}
}

// --gossip-key sets memberlist's key; it and the cluster key exclude each
// other, and a key of the wrong size or encoding is refused.
func TestGossipKeyFlag(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := writeFile(keyFile, "0123456789abcdef0123456789abcdef\n"); err != nil {
		t.Fatal(err)
	}
	key32 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	base := []string{"--gossip-addr", "127.0.0.1:7946", "--trusted-peer-network"}
	for _, c := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--gossip-key", key32}, ""},
		{[]string{"--gossip-key", base64.StdEncoding.EncodeToString([]byte("short"))}, "must be 16, 24 or 32 bytes, got 5"},
		{[]string{"--gossip-key", "not base64!"}, "not base64"},
		{[]string{"--gossip-key", key32, "--cluster-key-file", keyFile}, "give one"},
	} {
		o, err := parse(append(base, c.args...), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		mc, err := memberConfig(o, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		switch {
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%v: error %v, want %q", c.args, err, c.wantErr)
		case c.wantErr == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.wantErr == "" && len(mc.Node.Gossip.SecretKey) != 32:
			t.Errorf("%v: gossip key of %d bytes", c.args, len(mc.Node.Gossip.SecretKey))
		}
	}
}

// The ack mode follows the database unless --sink-ack names one: async on
// the embedded SQLite file, sync on MySQL.
func TestSinkAckDefault(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, sqlsink.AckAsync},
		{[]string{"--sink-ack", "sync"}, sqlsink.AckSync},
		{[]string{"--mysql-dsn", "root@tcp(127.0.0.1:3306)/test"}, sqlsink.AckSync},
		{[]string{"--mysql-dsn", "root@tcp(127.0.0.1:3306)/test", "--sink-ack", "async"}, sqlsink.AckAsync},
	} {
		o, err := parse(append([]string{"--data-dir", t.TempDir()}, tc.args...), nil)
		if err != nil {
			t.Fatal(err)
		}
		mc, err := memberConfig(o, slog.Default(), prometheus.NewRegistry())
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if mc.Node.Sink == nil || mc.Node.Sink.Ack != tc.want {
			t.Errorf("%v: sink %+v; want ack %q", tc.args, mc.Node.Sink, tc.want)
		}
	}
}
