package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/etcdsql/etcdsql/rpc"
	"github.com/hashicorp/raft"
)

// Raft's setup: the log and stable store (raft-boltdb/v2), snapshots on
// disk, the transport over the peer port, and how a member without raft
// state enters a cluster (alone, by formation, or by being added). Called
// once, by New.

func (n *Node) raftConfig() *raft.Config {
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
	return rc
}

// openLog opens the raft log and stable store, and the snapshot store.
func (n *Node) openLog(dir string) (raft.SnapshotStore, error) {
	store, kind, err := openLogStore(dir, n.cfg.LogStore, n.cfg.WALSegmentBytes)
	if err != nil {
		return nil, err
	}
	cached, err := withLogCache(store)
	if err != nil {
		store.Close()
		return nil, err
	}
	n.logStore = newSnapLog(cached, n.log.With("component", "raft-log"))
	if kind != n.cfg.LogStore && n.cfg.LogStore != "" {
		n.log.Warn("the data dir holds another raft log store than --raft-log-store names; keeping the data dir's", "store", kind, "flag", n.cfg.LogStore)
	}
	n.log.Info("raft log opened", "store", kind)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLogger(n.baseLog.With("component", "raft"), "snapshot"))
	if err != nil {
		return nil, fmt.Errorf("node: open snapshots: %w", err)
	}
	n.snaps = snaps
	return snaps, nil
}

// openTransport listens on the peer port and gives raft its share of it.
func (n *Node) openTransport() error {
	advAddr, err := net.ResolveTCPAddr("tcp", n.advertisePeer())
	if err != nil {
		return fmt.Errorf("node: advertise peer address: %w", err)
	}
	peerTLS, err := n.cfg.peerTLSConfig()
	if err != nil {
		return err
	}
	n.peer, err = rpc.ListenPeer(n.cfg.PeerAddr, peerTLS, n.cfg.PeerDialer)
	if err != nil {
		return fmt.Errorf("node: listen on peer address %s: %w", n.cfg.PeerAddr, err)
	}
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: n.peer.RaftListener(), advertise: advAddr, dial: n.peer.Dial},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  newHCLogger(n.baseLog.With("component", "raft"), "transport"),
	})
	n.raftTrans = newSnapTransport(n.transport, n.logStore)
	n.peer.Route()
	return nil
}

func (n *Node) openRaft() error {
	dir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	rc := n.raftConfig()
	snaps, err := n.openLog(dir)
	if err != nil {
		return err
	}
	if err := n.openTransport(); err != nil {
		return err
	}
	has, err := raft.HasExistingState(n.logStore, n.logStore, snaps)
	if err != nil {
		return fmt.Errorf("node: inspect raft state: %w", err)
	}
	if has {
		if has, err = n.settleLoadedState(snaps); err != nil {
			return err
		}
	}
	servers, fence, err := n.enter(has)
	if err != nil {
		return err
	}
	if servers != nil {
		if err := n.bootstrap(rc, snaps, servers, fence); err != nil {
			return err
		}
	}
	n.wireLeadership()
	n.logStore.beforeStart(snaps)
	n.raft, err = raft.NewRaft(rc, raftFSM{n}, n.logStore, n.logStore, snaps, n.raftTrans)
	if err != nil {
		return fmt.Errorf("node: start raft: %w", err)
	}
	n.lead.attach(n.raft)
	n.logStore.attach(n.raft)
	n.peer.Serve(leaderSide{n})
	return nil
}

// enter settles how this member enters its cluster. servers, when set, are
// who a new cluster is bootstrapped with; fence is the database's fence
// when this member loaded its state from the database.
func (n *Node) enter(hasRaftState bool) (servers []raft.Server, fence uint64, err error) {
	switch {
	case hasRaftState:
		_, err = n.adoptDatabase(true, 0)
		return nil, 0, err
	case n.gossip == nil || (n.cfg.BootstrapExpect <= 1 && len(n.cfg.Gossip.Join) == 0):
		if n.cfg.Nonvoter {
			return nil, 0, errors.New("node: a non-voter cannot start a cluster: give it --join")
		}
		servers = []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.Name), Address: raft.ServerAddress(n.advertisePeer())}}
		fence, err = n.adoptDatabase(false, 0)
		return servers, fence, err
	}
	f, err := n.awaitFormation()
	if err != nil {
		return nil, 0, err
	}
	if f.join {
		return nil, 0, n.adoptClusterID(f.clusterID)
	}
	fence, err = n.adoptDatabase(false, f.clusterID)
	return f.servers, fence, err
}

// streamLayer gives raft its share of the peer port.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      func(ctx context.Context, addr string) (net.Conn, error)
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dial(ctx, string(addr))
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }
