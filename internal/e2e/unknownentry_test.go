package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// A member whose raft log holds a committed entry it cannot apply (as one
// from a newer release would be) exits with status 3 and a log line that
// says why, before applying it (node's TestUnknownEntryStopsBeforeApplying
// shows that nothing after it is applied).
func TestMemberExitsOnAnEntryItCannotApply(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	// The boltdb log store, which the test appends to directly; the entry
	// is what matters, not the store.
	p := testserver.StartProcess(t, dir, "--raft-log-store", "boltdb")
	c := testserver.NewClient(t, p.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	p.Kill()

	// Append, as a newer leader would have, an entry with an envelope
	// version this release does not know.
	logs, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var prev raft.Log
	if err := logs.GetLog(last, &prev); err != nil {
		t.Fatal(err)
	}
	future := &raft.Log{Index: last + 1, Term: prev.Term, Type: raft.LogCommand, Data: []byte{2, 0x0a, 0x00}}
	if err := logs.StoreLog(future); err != nil {
		t.Fatal(err)
	}
	logs.Close()

	client, peer := testserver.FreePort(t), testserver.FreePort(t)
	cmd := exec.CommandContext(ctx, testserver.Build(t), "--name", "p1", "--data-dir", dir,
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer), "--election-timeout", "200")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("exit: %v, want status 3\n%s", err, out)
	}
	if !strings.Contains(string(out), "cannot apply a committed entry") || !strings.Contains(string(out), fmt.Sprintf(`"index":%d`, last+1)) {
		t.Fatalf("no log line saying why:\n%s", out)
	}
}
