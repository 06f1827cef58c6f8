package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// Node is one running member. Its methods are safe for concurrent use.
type Node struct {
	cfg       Config
	baseLog   *slog.Logger
	log       *slog.Logger
	store     *fsm.Store
	raft      *raft.Raft
	transport *raft.NetworkTransport
	raftTrans *snapTransport // transport as raft uses it
	peer      *rpc.PeerPort
	logStore  *snapLog // the raft log and stable store
	snaps     raft.SnapshotStore
	lessor    *lessor
	sink      *sqlsink.Sink    // nil without a system of record
	gossip    *cluster.Cluster // nil without gossip (a lone member)

	evictedMu sync.Mutex
	evicted   map[string]time.Time // removed by an operator, on this leader

	sinks *sinkSupervisor // nil without a system of record

	clusterID atomic.Uint64
	memberID  uint64
	readIndex *coalescer
	lead      *leadership
	requests  inflight // requests waiting on raft
	proposals proposals
	versions  versionGate

	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
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
	if err := n.openSink(); err != nil {
		return nil, err
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

// wireLeadership gives the leader's duties what they act on: winning an
// election starts the database snapshot (if pending), the sink and the
// lease clock; any change stops the lease clock and the sink first.
func (n *Node) wireLeadership() {
	n.lead = newLeadership(n.cfg.Name, n.cfg.RequestTimeout, n.log, n.stop)
	n.lead.peers = n.peerCount
	n.lead.lose = func() {
		n.lessor.demote()
		if n.sinks != nil {
			n.sinks.stop()
		}
	}
	n.lead.gain = func() {
		n.snapshotBase()
		if n.sinks != nil {
			n.sinks.start()
		}
		n.lessor.promote()
	}
}

// requestContext bounds ctx by the request timeout.
func (n *Node) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.RequestTimeout)
}

// Rev returns the revision this member's store has applied.
func (n *Node) Rev() int64 { return n.store.Rev() }

// Close stops the node: raft first (so nothing more is applied), then the
// stores. Safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.stopOnce.Do(func() {
		close(n.stop)
		// Requests waiting on raft finish while it still runs.
		n.requests.closeAndWait(n.cfg.RequestTimeout)
		if n.raft != nil {
			err = n.raft.Shutdown().Error()
		}
		n.wg.Wait()
		if n.sinks != nil {
			n.sinks.stop()
		}
		n.closeStores()
	})
	return err
}

func (n *Node) closeStores() {
	if n.raftTrans != nil {
		n.raftTrans.Close()
	}
	if n.transport != nil {
		// Close this member's connections to the others too: their
		// handlers would otherwise wait on them for ever.
		n.transport.CloseStreams()
		n.transport.Close()
	}
	if n.peer != nil {
		n.peer.Close()
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

// openSink opens the system of record, if the member has one.
func (n *Node) openSink() error {
	if n.cfg.Sink == nil {
		return nil
	}
	sc := *n.cfg.Sink
	if sc.Logger == nil {
		sc.Logger = n.baseLog
	}
	if sc.Registry == nil {
		sc.Registry = n.cfg.Registry
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if n.sink, err = sqlsink.Open(ctx, sc); err != nil {
		return err
	}
	n.sinks = &sinkSupervisor{sink: n.sink, store: n.store, proposals: &n.proposals, raft: func() *raft.Raft { return n.raft }, log: n.log}
	return nil
}
