package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/difftest"
	"github.com/etcdsql/etcdsql/internal/freeport"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// The command's refusals of acceptance 4 that come before any copy: an
// etcd that does not answer, a wrong password. The target is unchanged
// (still empty, open).
func TestImportCommandRefusals(t *testing.T) {
	srv := testserver.Start(t)
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	var out bytes.Buffer
	err = runImport(context.Background(), []string{"--from-etcd", dead, "--endpoints", srv.URL, "--dial-timeout", "1s"}, &out)
	want := fmt.Sprintf("import: cannot reach etcd at %s within 1s", dead)
	if err == nil || err.Error() != want {
		t.Fatalf("unreachable etcd: %v, want %q", err, want)
	}

	etcdURL := difftest.StartEtcd(t)
	etcdctl := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/usr/bin/etcdctl", append([]string{"--endpoints", etcdURL}, args...)...)
		cmd.Env = append(cmd.Environ(), "ETCDCTL_API=3")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("etcdctl %v: %v\n%s", args, err, out)
		}
	}
	etcdctl("put", "/apisix/routes/1", "{}")
	etcdctl("user", "add", "root:secret")
	etcdctl("auth", "enable")
	err = runImport(context.Background(), []string{"--from-etcd", etcdURL, "--user", "root:wrong", "--endpoints", srv.URL}, &out)
	want = "import: etcd: etcdserver: authentication failed, invalid user ID or password"
	if err == nil || err.Error() != want {
		t.Fatalf("wrong password: %v, want %q", err, want)
	}
	// The right one goes through, and finishes.
	out.Reset()
	if err := runImport(context.Background(), []string{"--from-etcd", etcdURL, "--user", "root", "--password", "secret", "--endpoints", srv.URL, "--finish"}, &out); err != nil {
		t.Fatalf("import with etcd's root: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "import finished") {
		t.Fatalf("summary line: %q", out.String())
	}

	// --follow ends cleanly on the first signal (the context main cancels
	// on SIGINT or SIGTERM): it catches up and finishes.
	srv2 := testserver.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	var followOut bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runImport(ctx, []string{"--from-etcd", etcdURL, "--user", "root:secret", "--endpoints", srv2.URL, "--follow"}, &followOut)
	}()
	c := testserver.NewClient(t, srv2.URL)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := c.Get(context.Background(), "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
		if err == nil && r.Header.Revision > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the follow copied nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil || !strings.Contains(followOut.String(), "import finished") {
		t.Fatalf("--follow stopped: %v\n%s", err, followOut.String())
	}
	if _, err := c.Put(context.Background(), "/after", "1"); err != nil {
		t.Fatalf("write after the follow finished: %v", err)
	}
}

// `etcdsql import --from-snapshot`: a damaged file and --follow are
// refused before the target is touched; a good file is imported and the
// cluster opened with --finish.
func TestImportCommandFromSnapshot(t *testing.T) {
	e := difftest.SnapshotEtcd(t, "/backup/")
	src, b, path := e.Client, e.Backup, e.Path
	srv := testserver.Start(t)
	var out bytes.Buffer

	err := runImport(context.Background(), []string{"--from-snapshot", path, "--endpoints", srv.URL, "--follow"}, &out)
	if want := "import: --follow needs --from-etcd: a snapshot has no revisions after its own"; err == nil || err.Error() != want {
		t.Fatalf("--follow from a snapshot: %v, want %q", err, want)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	bad := filepath.Join(t.TempDir(), "bad.db")
	if err := os.WriteFile(bad, data, 0o600); err != nil {
		t.Fatal(err)
	}
	err = runImport(context.Background(), []string{"--from-snapshot", bad, "--endpoints", srv.URL}, &out)
	if err == nil || !strings.Contains(err.Error(), "sha256 checksum mismatch") {
		t.Fatalf("damaged snapshot: %v", err)
	}

	if err := runImport(context.Background(), []string{"--from-snapshot", path, "--endpoints", srv.URL, "--finish"}, &out); err != nil {
		t.Fatalf("import from the snapshot: %v\n%s", err, out.String())
	}
	kvs, rev := difftest.RangeAt(t, testserver.NewClient(t, srv.URL), b.Prefix, 0)
	want, _ := difftest.RangeAt(t, src, b.Prefix, 0)
	if rev != b.Rev || fmt.Sprint(kvs) != fmt.Sprint(want) {
		t.Fatalf("imported key space at revision %d:\n got %v\nwant %v", rev, kvs, want)
	}
}
