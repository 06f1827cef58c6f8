package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// Config configures a node.
type Config struct {
	// Name is the member's stable name, also its raft server ID.
	Name string
	// DataDir holds the raft log, stable store and snapshots.
	DataDir string
	// PeerAddr is the host:port the raft transport listens on.
	PeerAddr string
	// AdvertisePeerAddr is the host:port other members reach PeerAddr at;
	// empty means PeerAddr.
	AdvertisePeerAddr string
	// ClientURLs are the advertised client URLs (for Cluster.MemberList).
	ClientURLs []string
	// PeerURLs are the advertised peer URLs (for Cluster.MemberList).
	PeerURLs []string
	// PeerTLS, if set, secures the peer port (raft and the internal
	// service) both ways: it serves as the server's and the client's
	// configuration, so give it certificates and a CA pool for mTLS.
	PeerTLS *tls.Config
	// ClusterKey, when PeerTLS is nil, is the secret members share: the
	// peer port runs mutual TLS with certificates derived from it, and
	// gossip is encrypted with it (see peerauth.go). At least
	// MinClusterKeyBytes long.
	ClusterKey []byte
	// TrustedPeerNetwork lets a member with gossip run without PeerTLS or
	// ClusterKey: only members can reach its peer and gossip ports.
	TrustedPeerNetwork bool
	// PeerDialer dials another member's peer port; nil dials TCP. Tests
	// inject network faults here.
	PeerDialer func(ctx context.Context, addr string) (net.Conn, error)

	// MaxRequestBytes bounds an encoded request (etcd's --max-request-bytes).
	MaxRequestBytes int
	// RequestTimeout bounds a proposal when the caller has no deadline.
	RequestTimeout time.Duration
	// HeartbeatTimeout and ElectionTimeout are raft's.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// SnapshotThreshold and TrailingLogs control raft log compaction.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	// LeaseCheckInterval is how often the leader looks for expired leases.
	LeaseCheckInterval time.Duration
	// AutoCompaction compacts old revisions automatically (off when its
	// Mode is empty).
	AutoCompaction AutoCompaction

	// Gossip, if set, runs memberlist discovery (its Name, addresses and
	// role are filled in from this config). Without it the member is
	// alone.
	Gossip *cluster.Config
	// BootstrapExpect is how many voters, seen in gossip, form a new
	// cluster together. 0 or 1 with no gossip join addresses: a member
	// without raft state bootstraps alone.
	BootstrapExpect int
	// MaxVoters bounds the voters the leader promotes members to; others
	// stay non-voters. 0: BootstrapExpect if set, else 3 for a member that
	// joins a cluster (Gossip.Join), else 1 (a member that started alone).
	MaxVoters int
	// Nonvoter members replicate and serve reads and watches but never
	// vote or lead.
	Nonvoter bool
	// DeadServerCleanup, if positive, removes a member gossip has seen
	// failed for that long; otherwise failed members stay until removed
	// by an operator.
	DeadServerCleanup time.Duration

	FSM fsm.Config
	// Sink configures the SQL system of record; nil runs without one.
	Sink     *sqlsink.Config
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// DefaultConfig returns the defaults etcd users expect.
func DefaultConfig() Config {
	return Config{
		Name:               "default",
		DataDir:            "default.etcdsql",
		PeerAddr:           "127.0.0.1:2380",
		MaxRequestBytes:    1572864,
		RequestTimeout:     5 * time.Second,
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		SnapshotInterval:   2 * time.Minute,
		LeaseCheckInterval: 500 * time.Millisecond,
		FSM:                fsm.DefaultConfig(),
	}
}

// Validate reports a configuration the node cannot start with.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is empty"))
	}
	if _, _, err := net.SplitHostPort(c.PeerAddr); err != nil {
		errs = append(errs, fmt.Errorf("peer address %q: %w", c.PeerAddr, err))
	}
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, errors.New("max request bytes must be positive"))
	}
	if c.RequestTimeout <= 0 || c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0 || c.LeaseCheckInterval <= 0 {
		errs = append(errs, errors.New("timeouts and intervals must be positive"))
	}
	if err := c.FSM.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch ac := c.AutoCompaction; ac.Mode {
	case "":
	case CompactionPeriodic:
		if ac.Period <= 0 {
			errs = append(errs, errors.New("periodic auto-compaction needs a positive retention period"))
		}
	case CompactionRevision:
		if ac.Revisions <= 0 {
			errs = append(errs, errors.New("revision auto-compaction needs a positive number of revisions"))
		}
	default:
		errs = append(errs, fmt.Errorf("auto-compaction mode must be %q or %q, got %q", CompactionPeriodic, CompactionRevision, ac.Mode))
	}
	if len(c.ClusterKey) > 0 && len(c.ClusterKey) < MinClusterKeyBytes {
		errs = append(errs, errShortClusterKey)
	}
	if c.Gossip != nil && c.PeerTLS == nil && len(c.ClusterKey) == 0 && !c.TrustedPeerNetwork {
		errs = append(errs, errNoMemberAuth)
	}
	if c.MaxVoters < 0 {
		errs = append(errs, errors.New("max voters must not be negative"))
	}
	if c.Sink != nil {
		if err := c.Sink.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node: config: %w", err)
	}
	return nil
}

// Node is one running member. Its methods are safe for concurrent use.
type Node struct {
	cfg       Config
	baseLog   *slog.Logger
	log       *slog.Logger
	store     *fsm.Store
	raft      *raft.Raft
	transport *raft.NetworkTransport
	peer      *peerPort
	logStore  *raftboltdb.BoltStore
	lessor    *lessor
	sink      *sqlsink.Sink    // nil without a system of record
	gossip    *cluster.Cluster // nil without gossip (a lone member)

	evictedMu sync.Mutex
	evicted   map[string]time.Time // removed by an operator, on this leader

	sinkMu     sync.Mutex
	sinkCancel context.CancelFunc
	sinkDone   chan struct{}
	// sinkFatal holds why the sink cannot run (fenced, database ahead of
	// or behind the store): it needs an operator.
	sinkFatal atomic.Pointer[error]

	clusterID atomic.Uint64
	memberID  uint64
	readIndex *coalescer
	lead      *leadership

	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

// MemberID derives the stable member ID of a member name.
func MemberID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte("etcdsql/member/" + name))
	return h.Sum64() &^ (1 << 63)
}

// New opens the data dir and starts raft. A data dir without raft state
// bootstraps a one-member cluster.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	store, err := fsm.New(cfg.FSM)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:      cfg,
		baseLog:  log,
		log:      log.With("component", "node"),
		store:    store,
		memberID: MemberID(cfg.Name),
		stop:     make(chan struct{}),
	}
	n.lessor = newLessor(store)
	n.readIndex = newCoalescer(n.fetchReadIndex, cfg.RequestTimeout)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	if cfg.Sink != nil {
		sc := *cfg.Sink
		if sc.Logger == nil {
			sc.Logger = log
		}
		if sc.Registry == nil {
			sc.Registry = cfg.Registry
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n.sink, err = sqlsink.Open(ctx, sc)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	if err := n.startGossip(); err != nil {
		n.closeStores()
		return nil, err
	}
	if err := n.openRaft(); err != nil {
		n.closeStores()
		return nil, err
	}
	if cfg.Registry != nil {
		n.registerMetrics(cfg.Registry)
	}
	n.wg.Add(4)
	go func() { defer n.wg.Done(); n.lead.run() }()
	go func() { defer n.wg.Done(); n.lead.observe() }()
	go n.expireLeases()
	go n.reconcileMembers()
	if cfg.AutoCompaction.Mode != "" {
		n.wg.Add(1)
		go n.autoCompact()
	}
	return n, nil
}

func (n *Node) openRaft() error {
	dir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	var err error
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.Name)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.HeartbeatTimeout / 2
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.TrailingLogs = n.cfg.TrailingLogs
	if n.cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = n.cfg.SnapshotInterval
	}
	rc.BatchApplyCh = true
	rc.Logger = newHCLogger(n.baseLog.With("component", "raft"), "raft")

	// The freelist is rebuilt on open instead of written on every commit,
	// and a large initial mmap avoids remapping (which stalls writers) as
	// the log grows.
	n.logStore, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(dir, "raft.db"),
		BoltOptions: &bbolt.Options{
			Timeout:         time.Second,
			NoFreelistSync:  true,
			FreelistType:    bbolt.FreelistMapType,
			InitialMmapSize: 256 << 20,
		},
	})
	if err != nil {
		return fmt.Errorf("node: open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLogger(n.baseLog.With("component", "raft"), "snapshot"))
	if err != nil {
		return fmt.Errorf("node: open snapshots: %w", err)
	}
	advertise := n.cfg.AdvertisePeerAddr
	if advertise == "" {
		advertise = n.cfg.PeerAddr
	}
	advAddr, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return fmt.Errorf("node: advertise peer address: %w", err)
	}
	peerTLS, err := n.cfg.peerTLSConfig()
	if err != nil {
		return err
	}
	n.peer, err = listenPeer(n.cfg.PeerAddr, peerTLS, n.cfg.PeerDialer)
	if err != nil {
		return fmt.Errorf("node: listen on peer address %s: %w", n.cfg.PeerAddr, err)
	}
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: n.peer.raftL, advertise: advAddr, dial: n.peer.dial},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  newHCLogger(n.baseLog.With("component", "raft"), "transport"),
	})
	n.peer.route()
	has, err := raft.HasExistingState(n.logStore, n.logStore, snaps)
	if err != nil {
		return fmt.Errorf("node: inspect raft state: %w", err)
	}
	// servers, when set, are who a new cluster is bootstrapped with;
	// fence is the database's fence when this member loaded its state
	// from the database.
	var servers []raft.Server
	var fence uint64
	switch {
	case has:
		_, err = n.adoptDatabase(true, 0)
	case n.gossip == nil || (n.cfg.BootstrapExpect <= 1 && len(n.cfg.Gossip.Join) == 0):
		if n.cfg.Nonvoter {
			return errors.New("node: a non-voter cannot start a cluster: give it --join")
		}
		servers = []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(advertise)}}
		fence, err = n.adoptDatabase(false, 0)
	default:
		var f formation
		if f, err = n.awaitFormation(); err != nil {
			return err
		}
		if f.join {
			err = n.adoptClusterID(f.clusterID)
		} else {
			servers = f.servers
			fence, err = n.adoptDatabase(false, f.clusterID)
		}
	}
	if err != nil {
		return err
	}
	if servers != nil {
		if err := n.bootstrap(rc, snaps, servers, fence); err != nil {
			return err
		}
	}
	n.raft, err = raft.NewRaft(rc, raftFSM{n}, n.logStore, n.logStore, snaps, n.transport)
	if err != nil {
		return fmt.Errorf("node: start raft: %w", err)
	}
	n.wireLeadership()
	n.peer.serve(leaderSide{n})
	return nil
}

// wireLeadership gives the leader's duties what they act on: winning an
// election starts the database snapshot (if pending), the sink and the
// lease clock; any change stops the lease clock and the sink first.
func (n *Node) wireLeadership() {
	n.lead = newLeadership(n.raft, n.cfg.Name, n.cfg.RequestTimeout, n.log, n.stop)
	n.lead.peers = n.peerCount
	n.lead.lose = func() {
		n.lessor.demote()
		n.stopSink()
	}
	n.lead.gain = func() {
		n.snapshotBase()
		n.startSink()
		n.lessor.promote()
	}
}

// raftCurrentTerm is the stable-store key under which raft keeps its
// current term (part of raft's on-disk format).
var raftCurrentTerm = []byte("CurrentTerm")

// bootstrap writes a new cluster's first configuration into the empty raft
// state, before raft starts. A member that loaded its state from the
// database also starts its raft at the database's fence: the raft term is
// the fence, and a rebuilt cluster's raft would otherwise count terms from
// 1 again, below the fence of the cluster whose data it carries on, and
// its first leader would be fenced off for good. From a term at the fence
// the first election wins a term above it.
func (n *Node) bootstrap(rc *raft.Config, snaps raft.SnapshotStore, servers []raft.Server, fence uint64) error {
	err := raft.BootstrapCluster(rc, n.logStore, n.logStore, snaps, n.transport, raft.Configuration{Servers: servers})
	if errors.Is(err, raft.ErrCantBootstrap) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: bootstrap: %w", err)
	}
	if term, err := n.logStore.GetUint64(raftCurrentTerm); err == nil && fence > term {
		if err := n.logStore.SetUint64(raftCurrentTerm, fence); err != nil {
			return fmt.Errorf("node: raise the raft term to the database's fence: %w", err)
		}
		n.log.Info("raft term raised to the database's fence", "term", fence)
	} else if err != nil {
		return fmt.Errorf("node: read the raft term: %w", err)
	}
	n.log.Info("bootstrapped a new cluster", "cluster_id", strconv.FormatUint(n.ClusterID(), 16), "servers", len(servers))
	return nil
}

// adoptDatabase settles the cluster ID with the system of record. A member
// with no raft state over a database that holds data starts from that data
// (same revisions, leases, compact revision) and joins its cluster; any
// other member claims an unclaimed database or must match its cluster. A
// new cluster's ID is fresh when members forming it agreed on one. It
// returns the database's fence when the member loaded the database's state.
func (n *Node) adoptDatabase(hasRaftState bool, fresh uint64) (fence uint64, err error) {
	idPath := filepath.Join(n.cfg.DataDir, "cluster_id")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n.sink != nil && !hasRaftState {
		st, err := n.sink.State(ctx)
		if err != nil {
			return 0, err
		}
		if st.ClusterID != 0 {
			if st, err = n.sink.LoadInto(ctx, n.store); err != nil {
				return 0, err
			}
			n.log.Info("loaded state from the database", "rev", st.Revision, "compact_rev", st.CompactRev,
				"fence", st.LeaderTerm, "cluster_id", strconv.FormatUint(st.ClusterID, 16))
			// The loaded state is in no raft entry: members added later
			// must get it from a snapshot, so the first leader compacts
			// the whole log once.
			if err := os.WriteFile(filepath.Join(n.cfg.DataDir, baseSnapshotFile), nil, 0o600); err != nil {
				return 0, fmt.Errorf("node: %w", err)
			}
			return st.LeaderTerm, n.adoptClusterID(st.ClusterID)
		}
	}
	id := fresh
	if id == 0 || hasRaftState {
		if id, err = loadOrCreateClusterID(idPath); err != nil {
			return 0, err
		}
	}
	if n.sink != nil {
		if err := n.sink.SetClusterID(ctx, id); err != nil {
			return 0, fmt.Errorf("node: %w: point the member at its own database, or remove its data dir to rebuild it from this one", err)
		}
	}
	return 0, n.adoptClusterID(id)
}

// baseSnapshotFile marks a store loaded from the database whose state no
// raft snapshot holds yet.
const baseSnapshotFile = "base-snapshot-pending"

// snapshotBase makes the loaded state part of raft's own: a snapshot, and
// no log entry left before it, so that a member added later starts from
// the snapshot and not from an empty store.
func (n *Node) snapshotBase() {
	marker := filepath.Join(n.cfg.DataDir, baseSnapshotFile)
	if _, err := os.Stat(marker); err != nil {
		return
	}
	orig := n.raft.ReloadableConfig()
	rc := orig
	rc.TrailingLogs = 0
	if err := n.raft.ReloadConfig(rc); err != nil {
		n.log.Warn("snapshot of the loaded state", "err", err)
		return
	}
	err := n.raft.Snapshot().Error()
	if rerr := n.raft.ReloadConfig(orig); rerr != nil {
		n.log.Warn("restore raft settings", "err", rerr)
	}
	if err != nil {
		n.log.Warn("snapshot of the loaded state", "err", err)
		return
	}
	os.Remove(marker)
	n.log.Info("took a snapshot of the state loaded from the database")
}

func loadOrCreateClusterID(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		id, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
		if perr != nil {
			return 0, fmt.Errorf("node: cluster id file %s: %w", path, perr)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("node: cluster id: %w", err)
	}
	var buf [8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return 0, fmt.Errorf("node: cluster id: %w", err)
	}
	id := binary.BigEndian.Uint64(buf[:]) &^ (1 << 63)
	if err := os.WriteFile(path, []byte(strconv.FormatUint(id, 16)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("node: cluster id: %w", err)
	}
	return id, nil
}

// requestContext bounds ctx by the request timeout.
func (n *Node) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.RequestTimeout)
}

// Store returns the node's state machine.
func (n *Node) Store() *fsm.Store { return n.store }

// Close stops the node: raft first (so nothing more is applied), then the
// stores. Safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.stopOnce.Do(func() {
		close(n.stop)
		if n.raft != nil {
			err = n.raft.Shutdown().Error()
		}
		n.wg.Wait()
		n.stopSink()
		n.closeStores()
	})
	return err
}

// startSink runs the system-of-record writer while this member leads.
func (n *Node) startSink() {
	if n.sink == nil {
		return
	}
	n.sinkMu.Lock()
	defer n.sinkMu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.sinkCancel, n.sinkDone = cancel, done
	term := n.raft.CurrentTerm()
	n.sinkFatal.Store(nil)
	go func() {
		defer close(done)
		err := n.sink.Run(ctx, n.store, term)
		switch {
		case err == nil:
		case errors.Is(err, sqlsink.ErrFenced) && (n.raft.CurrentTerm() != term || n.raft.State() != raft.Leader):
			n.log.Info("sink stopped: a newer leader writes to the database", "term", term)
		default:
			n.sinkFatal.Store(&err)
			n.log.Error("sink stopped: writes are refused until it is fixed", "err", err)
		}
	}()
}

// SinkFatal returns why the sink cannot run, or nil.
func (n *Node) SinkFatal() error {
	if p := n.sinkFatal.Load(); p != nil {
		return *p
	}
	return nil
}

// stopSink stops the writer and waits for it: a deposed leader writes no
// more.
func (n *Node) stopSink() {
	n.sinkMu.Lock()
	cancel, done := n.sinkCancel, n.sinkDone
	n.sinkCancel, n.sinkDone = nil, nil
	n.sinkMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (n *Node) closeStores() {
	if n.transport != nil {
		n.transport.Close()
	}
	if n.peer != nil {
		n.peer.close()
	}
	if n.logStore != nil {
		n.logStore.Close()
	}
	if n.sink != nil {
		n.sink.Close()
	}
	if n.gossip != nil {
		n.gossip.Close()
	}
}
