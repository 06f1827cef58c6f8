// Package testcluster runs clusters of etcdsql members for tests: each
// member in-process over real loopback TCP (client, peer and gossip
// ports), with crash, restart, and network partitions between chosen
// members on the peer path.
package testcluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/internal/freeport"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// ClusterKey is the key members of test clusters share (in-process and
// processes alike), unless a test configures its own.
const ClusterKey = "testcluster shared secret 0123456789"

// Options shape a cluster.
type Options struct {
	// Size is how many voters form the cluster (default 3).
	Size int
	// MySQLDSN, if set, is the shared system of record.
	MySQLDSN string
	// SinkAck is sqlsink.AckSync (default) or AckAsync.
	SinkAck string
	// ElectionTimeout is raft's heartbeat and election timeout (default
	// 300 ms; node.DefaultConfig's 1 s when DefaultTiming).
	ElectionTimeout time.Duration
	DefaultTiming   bool
	// Configure, if set, adjusts each member's configuration.
	Configure func(i int, c *node.MemberConfig)
}

// Member is one member's slot: its configuration survives restarts.
type Member struct {
	*node.Member // nil while stopped
	Name         string
	URL          string // client URL
	PeerAddr     string
	GossipAddr   string
	DataDir      string
	cfg          node.MemberConfig
	log          *tailLog // the end of its log, for a failing test's output
}

// tailLog keeps the last tailLogBytes of a member's log (Info and above):
// a test that fails prints each member's (unless ETCDSQL_TEST_LOG sends
// the logs to stderr as they come). Safe for concurrent use.
type tailLog struct {
	mu  sync.Mutex
	buf []byte
}

const tailLogBytes = 16 << 10

func (l *tailLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - tailLogBytes; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
	}
	return len(p), nil
}

func (l *tailLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// Cluster is a running cluster.
type Cluster struct {
	t       testing.TB
	base    string
	opts    Options
	Net     *Network
	mu      sync.Mutex
	Members []*Member
}

// freePorts picks n distinct loopback ports (see freeport.Ports).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freeport.Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// Start forms a cluster of opts.Size voters with --bootstrap-expect, and
// stops it when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Size == 0 {
		opts.Size = 3
	}
	if opts.ElectionTimeout == 0 {
		opts.ElectionTimeout = 300 * time.Millisecond
	}
	// Data dirs live under one directory made before the cleanup that
	// stops the members, so that it is removed after they stopped.
	c := &Cluster{t: t, opts: opts, Net: newNetwork(), base: t.TempDir()}
	t.Cleanup(c.dumpLogs) // after Close, below: cleanups run last first
	t.Cleanup(c.Close)
	for i := 0; i < opts.Size; i++ {
		c.newSlot(false, opts.Size)
	}
	var wg sync.WaitGroup
	errs := make([]error, opts.Size)
	for i := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.start(i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start member %d: %v", i, err)
		}
	}
	for _, m := range c.Members {
		testserver.WaitReady(t, m.URL, 20*time.Second)
	}
	return c
}

// newSlot prepares member i's configuration.
func (c *Cluster) newSlot(nonvoter bool, expect int) *Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := len(c.Members)
	ports := freePorts(c.t, 3)
	m := &Member{
		Name:       "n" + strconv.Itoa(i+1),
		URL:        "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		PeerAddr:   "127.0.0.1:" + strconv.Itoa(ports[1]),
		GossipAddr: "127.0.0.1:" + strconv.Itoa(ports[2]),
		DataDir:    c.dataDir(i),
		log:        &tailLog{},
	}
	var join []string
	for _, o := range c.Members {
		join = append(join, o.GossipAddr)
	}
	if len(c.Members) < expect {
		join = nil // the founders find each other below
	}
	nc := node.DefaultConfig()
	nc.Name = m.Name
	nc.LogStore = node.TestLogStore()
	nc.DataDir = m.DataDir
	nc.PeerAddr = m.PeerAddr
	nc.ClientURLs = []string{m.URL}
	nc.PeerURLs = []string{"http://" + m.PeerAddr}
	if !c.opts.DefaultTiming {
		nc.HeartbeatTimeout = c.opts.ElectionTimeout
		nc.ElectionTimeout = c.opts.ElectionTimeout
	}
	nc.LeaseRetryInterval = 100 * time.Millisecond
	nc.Nonvoter = nonvoter
	nc.BootstrapExpect = expect
	if nonvoter || len(c.Members) >= expect {
		nc.BootstrapExpect = 0
	}
	nc.Gossip = &cluster.Config{BindAddr: m.GossipAddr, Join: join, Local: true}
	nc.ClusterKey = []byte(ClusterKey)
	nc.PeerDialer = c.Net.dialer(i)
	var logTo io.Writer = m.log
	if os.Getenv("ETCDSQL_TEST_LOG") != "" {
		logTo = os.Stderr
	}
	nc.Logger = slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelInfo})).With("member", m.Name)
	if c.opts.MySQLDSN != "" {
		sc := sqlsink.DefaultConfig()
		sc.MySQLDSN = c.opts.MySQLDSN
		if c.opts.SinkAck != "" {
			sc.Ack = c.opts.SinkAck
		}
		nc.Sink = &sc
	}
	rc := rpc.DefaultConfig()
	rc.LeaderLossTimeout = 3 * nc.ElectionTimeout
	m.cfg = node.MemberConfig{Node: nc, RPC: rc, ListenClientURLs: []string{m.URL}}
	if c.opts.Configure != nil {
		c.opts.Configure(i, &m.cfg)
	}
	c.Net.mu.Lock()
	c.Net.addrs[m.PeerAddr] = i
	c.Net.mu.Unlock()
	c.Members = append(c.Members, m)
	return m
}

func (c *Cluster) dataDir(i int) string {
	d, err := os.MkdirTemp(c.base, fmt.Sprintf("m%d-", i+1))
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// founders' gossip addresses, for members that form the cluster together.
func (c *Cluster) gossipAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.Members {
		out = append(out, m.GossipAddr)
	}
	return out
}

func (c *Cluster) start(i int) error {
	m := c.Members[i]
	cfg := m.cfg
	gc := *cfg.Node.Gossip
	if len(gc.Join) == 0 {
		gc.Join = c.gossipAddrs()
	}
	cfg.Node.Gossip = &gc
	reg := prometheus.NewRegistry()
	cfg.Node.Registry, cfg.RPC.Registry, cfg.RPC.Gatherer = reg, reg, reg
	nm, err := node.StartMember(cfg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	m.Member = nm
	c.mu.Unlock()
	return nil
}

// Add starts one more member that joins the running cluster.
func (c *Cluster) Add(nonvoter bool) int {
	c.t.Helper()
	m := c.newSlot(nonvoter, c.opts.Size)
	i := len(c.Members) - 1
	if err := c.start(i); err != nil {
		c.t.Fatalf("add member %s: %v", m.Name, err)
	}
	return i
}

// Crash stops member i as a dying process would (no handover, no leave).
func (c *Cluster) Crash(i int) {
	if nm := c.take(i); nm != nil {
		nm.Crash()
	}
}

// Stop stops member i gracefully (leadership handed over).
func (c *Cluster) Stop(i int) {
	if nm := c.take(i); nm != nil {
		nm.Close()
	}
}

// take marks member i stopped and returns it, if it ran.
func (c *Cluster) take(i int) *node.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	nm := c.Members[i].Member
	c.Members[i].Member = nil
	return nm
}

// Restart starts a stopped member i again on its data dir and ports.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	var err error
	for try := 0; try < 50; try++ {
		if err = c.start(i); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // ports still held
	}
	c.t.Fatalf("restart member %d: %v", i, err)
}

// RestartTogether starts the given stopped members again at once and waits
// until each serves: members with empty data dirs form the cluster anew,
// and each waits, gossiping, for the others.
func (c *Cluster) RestartTogether(members ...int) {
	c.t.Helper()
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for k, i := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for try := 0; try < 50; try++ {
				if errs[k] = c.start(i); errs[k] == nil {
					return
				}
				time.Sleep(100 * time.Millisecond) // ports still held
			}
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			c.t.Fatalf("restart member %d: %v", members[k], err)
		}
	}
	for _, i := range members {
		testserver.WaitReady(c.t, c.Members[i].URL, 20*time.Second)
	}
}

// Isolate cuts member i off from every other member.
func (c *Cluster) Isolate(i int) {
	var pairs [][2]int
	for j := range c.Members {
		if j != i {
			pairs = append(pairs, [2]int{i, j})
		}
	}
	c.Net.cut(pairs...)
}

// Partition cuts the given pairs apart.
func (c *Cluster) Partition(pairs ...[2]int) { c.Net.cut(pairs...) }

// Heal ends every partition.
func (c *Cluster) Heal() { c.Net.heal() }

// Running returns member i if it runs.
func (c *Cluster) Running(i int) *node.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Members[i].Member
}

// Leader waits until the running members agree on one leader and returns
// its index.
func (c *Cluster) Leader(timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		leader := -1
		agree := true
		for i := range c.Members {
			nm := c.Running(i)
			if nm == nil {
				continue
			}
			st, err := nm.Node.Status(context.Background())
			if err != nil || st.Leader == 0 {
				agree = false
				break
			}
			li := c.indexOf(st.Leader)
			if leader == -1 {
				leader = li
			} else if li != leader {
				agree = false
			}
		}
		if agree && leader >= 0 && c.Running(leader) != nil && c.Running(leader).Node.IsLeader() {
			return leader
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader agreed on within %v", timeout)
	return -1
}

func (c *Cluster) indexOf(memberID uint64) int {
	for i, m := range c.Members {
		if node.MemberID(m.Name) == memberID {
			return i
		}
	}
	return -1
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.URL)
	}
	return out
}

// Client returns a client of the given members (all when none given).
func (c *Cluster) Client(members ...int) *clientv3.Client {
	eps := c.Endpoints()
	if len(members) > 0 {
		eps = nil
		for _, i := range members {
			eps = append(eps, c.Members[i].URL)
		}
	}
	return testserver.NewClient(c.t, eps...)
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.Members {
		c.Crash(i)
	}
}

// dumpLogs prints the end of each member's log when the test failed.
func (c *Cluster) dumpLogs() {
	if !c.t.Failed() {
		return
	}
	for _, m := range c.Members {
		c.t.Logf("log of member %s (end):\n%s", m.Name, m.log)
	}
}

// String names the members for failure messages.
func (c *Cluster) String() string {
	s := ""
	for i, m := range c.Members {
		s += fmt.Sprintf("[%d %s %s] ", i, m.Name, m.URL)
	}
	return s
}
