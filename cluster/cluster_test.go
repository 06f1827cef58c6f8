package cluster

import (
	"fmt"
	"net"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startN(t *testing.T, n int) []*Cluster {
	t.Helper()
	var out []*Cluster
	var seeds []string
	for i := 0; i < n; i++ {
		addr := freeAddr(t)
		c, err := Start(Config{
			Name: fmt.Sprintf("n%d", i), BindAddr: addr, Join: seeds, Local: true,
			Meta: Meta{RaftAddr: fmt.Sprintf("127.0.0.1:%d", 2380+i), ClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", 2379+i)}, Version: "test", Role: RoleVoter},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		seeds = append(seeds, c.LocalAddr())
		out = append(out, c)
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func states(c *Cluster) map[string]State {
	m := map[string]State{}
	for _, mem := range c.Members() {
		m[mem.Name] = mem.State
	}
	return m
}

func TestMembersSeeEachOtherWithMeta(t *testing.T) {
	cs := startN(t, 3)
	for i, c := range cs {
		waitFor(t, 5*time.Second, fmt.Sprintf("member %d to see 3 alive", i), func() bool {
			st := states(c)
			return len(st) == 3 && st["n0"] == StateAlive && st["n1"] == StateAlive && st["n2"] == StateAlive
		})
	}
	for _, m := range cs[0].Members() {
		if m.Meta.Role != RoleVoter || m.Meta.Version != "test" || len(m.Meta.ClientURLs) != 1 || m.Meta.RaftAddr == "" {
			t.Fatalf("member %s: metadata not carried: %+v", m.Name, m.Meta)
		}
	}
}

func TestLeaveIsTold(t *testing.T) {
	cs := startN(t, 3)
	waitFor(t, 5*time.Second, "3 members", func() bool { return len(states(cs[0])) == 3 })
	changed := cs[0].Changed()
	if err := cs[1].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed not signalled after a leave")
	}
	for _, c := range []*Cluster{cs[0], cs[2]} {
		waitFor(t, 5*time.Second, "n1 left", func() bool { return states(c)["n1"] == StateLeft })
	}
	cs[0].Forget("n1")
	if _, ok := states(cs[0])["n1"]; ok {
		t.Fatal("Forget kept the member")
	}
}

func TestFailureIsTold(t *testing.T) {
	cs := startN(t, 3)
	waitFor(t, 5*time.Second, "3 members", func() bool { return len(states(cs[0])) == 3 })
	cs[2].Close() // no goodbye
	for _, c := range cs[:2] {
		waitFor(t, 15*time.Second, "n2 failed", func() bool { return states(c)["n2"] == StateFailed })
	}
	if st := states(cs[0]); st["n0"] != StateAlive || st["n1"] != StateAlive {
		t.Fatalf("survivors: %v", st)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{BindAddr: "127.0.0.1:0", Meta: Meta{Role: RoleVoter}},
		{Name: "a", BindAddr: "nope", Meta: Meta{Role: RoleVoter}},
		{Name: "a", BindAddr: "127.0.0.1:0", Meta: Meta{Role: "leader"}},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("accepted %+v", cfg)
		}
	}
}
