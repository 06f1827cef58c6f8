package upgradetest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// A data dir this release creates holds the wal raft log store, which
// v0.1.0 cannot read: v0.1.0 must stop on it at once, not take it for an
// empty log and start over as a new member.
func TestFirstReleaseStopsOnWALDataDir(t *testing.T) {
	if raceEnabled {
		t.Skip("real processes: it runs in the plain (non-race) pass of make test")
	}
	dir := filepath.Join(t.TempDir(), "data")
	cur := testserver.StartProcess(t, dir, "--raft-log-store", "wal")
	c := testserver.NewClient(t, cur.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	cur.Kill()

	client, peer := testserver.FreePort(t), testserver.FreePort(t)
	cmd := exec.CommandContext(ctx, Release(t, firstRelease), "--name", "p1", "--data-dir", dir,
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		t.Fatalf("v0.1.0 on a wal data dir: %v (want it to exit at once with an error)\n%s", err, out)
	}
	if !strings.Contains(string(out), "open raft log: invalid database") {
		t.Fatalf("v0.1.0 on a wal data dir said:\n%s\nwant 'open raft log: invalid database'", out)
	}
}
