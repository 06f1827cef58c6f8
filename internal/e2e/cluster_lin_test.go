package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// The register model of one etcd key: its value, "" while absent. Writes
// whose outcome a client could not learn (an error) may or may not have
// happened; the checker tries both.
type linInput struct {
	op  byte // 'g'et, 'p'ut, 'd'elete, 'c'ompare-and-swap
	key string
	val string // put, cas: the new value
	cmp string // cas: the value expected
}

type linOutput struct {
	unknown bool
	val     string // get
	ok      bool   // cas: the compare succeeded
}

var registerModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(linInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{""} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(string), input.(linInput), output.(linOutput)
		next := s
		switch in.op {
		case 'p':
			next = in.val
		case 'd':
			next = ""
		case 'c':
			if s != "" && s == in.cmp {
				next = in.val
			}
		}
		switch {
		case out.unknown:
			return []any{s, next}
		case in.op == 'g':
			if out.val != s {
				return nil
			}
		case in.op == 'c':
			if out.ok != (s != "" && s == in.cmp) {
				return nil
			}
		}
		return []any{next}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		return fmt.Sprintf("%c(%s,%q,%q) -> %+v", in.op, in.key, in.val, in.cmp, out)
	},
}

// The checker must reject what is not linearizable: a read that misses a
// write acknowledged before it began.
func TestRegisterModelRejectsStaleRead(t *testing.T) {
	h := []porcupine.Operation{
		{ClientId: 0, Input: linInput{op: 'p', key: "a", val: "1"}, Call: 0, Output: linOutput{}, Return: 10},
		{ClientId: 1, Input: linInput{op: 'g', key: "a"}, Call: 20, Output: linOutput{val: ""}, Return: 30},
	}
	if porcupine.CheckOperations(registerModel.ToModel(), h) {
		t.Fatal("a stale read passed the check")
	}
	h[1].Output = linOutput{val: "1"}
	if !porcupine.CheckOperations(registerModel.ToModel(), h) {
		t.Fatal("a fresh read failed the check")
	}
	// An unacknowledged write may or may not have happened.
	h[0].Output, h[0].Return = linOutput{unknown: true}, 1<<62
	h[1].Output = linOutput{val: ""}
	if !porcupine.CheckOperations(registerModel.ToModel(), h) {
		t.Fatal("an unknown write was taken as applied")
	}
}

// linHistory records operations from many clients.
type linHistory struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (h *linHistory) now() int64 { return int64(time.Since(h.start)) }

func (h *linHistory) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// linClient issues random operations on a few keys through one member
// until ctx ends.
func linClient(ctx context.Context, id int, cl *clientv3.Client, h *linHistory, up func() bool, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	last := map[string]string{}
	for seq := 0; ctx.Err() == nil; seq++ {
		if !up() {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		key := fmt.Sprintf("lin/%d", rng.IntN(4))
		in := linInput{key: key}
		switch r := rng.IntN(100); {
		case r < 35:
			in.op = 'g'
		case r < 70:
			in.op, in.val = 'p', fmt.Sprintf("c%d-%d", id, seq)
		case r < 80:
			in.op = 'd'
		default:
			in.op, in.val, in.cmp = 'c', fmt.Sprintf("c%d-%d", id, seq), last[key]
			if in.cmp == "" {
				in.cmp = "none"
			}
		}
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		call := h.now()
		var out linOutput
		var err error
		switch in.op {
		case 'g':
			var resp *clientv3.GetResponse
			if resp, err = cl.Get(octx, key); err == nil && len(resp.Kvs) == 1 {
				out.val = string(resp.Kvs[0].Value)
				last[key] = out.val
			}
		case 'p':
			_, err = cl.Put(octx, key, in.val)
		case 'd':
			_, err = cl.Delete(octx, key)
		case 'c':
			var resp *clientv3.TxnResponse
			resp, err = cl.Txn(octx).If(clientv3.Compare(clientv3.Value(key), "=", in.cmp)).Then(clientv3.OpPut(key, in.val)).Commit()
			if err == nil {
				out.ok = resp.Succeeded
			}
		}
		ret := h.now()
		cancel()
		if err != nil {
			if in.op == 'g' || ctx.Err() != nil && in.op == 'g' {
				continue // a failed read changed nothing
			}
			out, ret = linOutput{unknown: true}, 1<<62
			time.Sleep(20 * time.Millisecond)
		}
		h.add(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
	}
}

// Acceptance (cluster 1, 3): clients on all three members run put, get,
// delete and compare-and-swap for 60 s while the leader is crashed and
// restarted every 10 s and a follower is cut off and healed in between;
// the history must be linearizable, and afterwards the database and every
// member agree.
func TestClusterLinearizable(t *testing.T) {
	if raceEnabled {
		t.Skip("scale test: runs in the plain (non-race) pass of make test")
	}
	dsn := mysqltest.NewDatabase(t)
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: dsn})
	h := &linHistory{start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	id := 0
	for m := range c.Members {
		cl := c.Client(m)
		for range 3 {
			wg.Add(1)
			go func(id int) {
				defer wg.Done()
				linClient(ctx, id, cl, h, func() bool { return c.Running(m) != nil }, 42)
			}(id)
			id++
		}
	}
	crashes, partitions := 0, 0
	for cycle := 0; ctx.Err() == nil; cycle++ {
		leader := c.Leader(15 * time.Second)
		c.Crash(leader)
		crashes++
		sleepCtx(ctx, 2*time.Second)
		c.Restart(leader)
		sleepCtx(ctx, 3*time.Second)
		if ctx.Err() != nil {
			break
		}
		follower := (c.Leader(15*time.Second) + 1) % len(c.Members)
		c.Isolate(follower)
		partitions++
		sleepCtx(ctx, 3*time.Second)
		c.Heal()
		sleepCtx(ctx, 2*time.Second)
	}
	wg.Wait()

	ops, unknown := len(h.ops), 0
	for _, op := range h.ops {
		if op.Output.(linOutput).unknown {
			unknown++
		}
	}
	res, info := porcupine.CheckOperationsVerbose(registerModel.ToModel(), h.ops, 3*time.Minute)
	t.Logf("%d operations (%d with unknown outcome), %d leader crashes, %d partitions: %s", ops, unknown, crashes, partitions, res)
	if res != porcupine.Ok {
		if res == porcupine.Illegal {
			for _, part := range info.PartialLinearizationsOperations() {
				if len(part) > 0 {
					t.Logf("longest linearizable prefix of a failing key: %d operations", len(part[0]))
				}
			}
		}
		t.Fatalf("history is %s", res)
	}
	if ops < 1000 {
		t.Fatalf("only %d operations: the run did not exercise the cluster", ops)
	}
	checkClusterAgainstDatabase(t, c, dsn)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// checkClusterAgainstDatabase waits until every member has applied the
// same revision, then runs `etcdsql check` over the database and all
// members: it must find no difference.
func checkClusterAgainstDatabase(t *testing.T, c *testcluster.Cluster, dsn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A write through the leader, then every member past it.
	resp, err := c.Client().Put(ctx, "check/barrier", "x")
	if err != nil {
		t.Fatalf("barrier write: %v", err)
	}
	for i := range c.Members {
		for {
			g, err := c.Client(i).Get(ctx, "check/barrier", clientv3.WithSerializable())
			if err == nil && g.Header.Revision >= resp.Header.Revision {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("member %d did not catch up: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	out, err := runBinary(t, "check", "--mysql-dsn", dsn, "--endpoints", strings.Join(c.Endpoints(), ","))
	if err != nil || !strings.Contains(out, "no differences") {
		t.Fatalf("etcdsql check: %v\n%s", err, out)
	}
	t.Logf("etcdsql check: %s", strings.TrimSpace(strings.Split(out, "\n")[0]))
}

// runBinary runs the etcdsql binary with args and returns its output.
func runBinary(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testserver.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}
