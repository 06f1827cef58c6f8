package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/etcdsql/etcdsql/fsm"
)

// Bootstrap: a member's first state. A member without raft state over a
// database that holds data loads it (adoptDatabase) and continues the
// database's fence (bootstrap); any other member claims or matches the
// database's cluster ID. A member that loaded the state makes it a raft
// snapshot as it bootstraps (snapshotLoadedState), and a start stopped
// between the two is undone on the next (settleLoadedState); snapshotBase
// takes one as a member first leads when a data dir still lacks it (one a
// release before that left so). Called once, by raft's setup, except
// snapshotBase (the leadership part's gain hook).

// testHookBootstrapped, set by tests only, runs right after raft's
// bootstrap entry is written; an error stops the start there, as a crash
// would.
var testHookBootstrapped func() error

// raftCurrentTerm and raftLastVoteTerm are the stable-store keys under
// which raft keeps its current term and the term of its last vote (part
// of raft's on-disk format).
var (
	raftCurrentTerm  = []byte("CurrentTerm")
	raftLastVoteTerm = []byte("LastVoteTerm")
)

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
	if testHookBootstrapped != nil {
		if err := testHookBootstrapped(); err != nil {
			return err
		}
	}
	if term, err := n.logStore.GetUint64(raftCurrentTerm); err == nil && fence > term {
		if err := n.logStore.SetUint64(raftCurrentTerm, fence); err != nil {
			return fmt.Errorf("node: raise the raft term to the database's fence: %w", err)
		}
		n.log.Info("raft term raised to the database's fence", "term", fence)
	} else if err != nil {
		return fmt.Errorf("node: read the raft term: %w", err)
	}
	if _, err := os.Stat(n.loadedStateMarker()); err == nil {
		if err := n.snapshotLoadedState(snaps, servers); err != nil {
			return err
		}
	}
	n.log.Info("bootstrapped a new cluster", "cluster_id", strconv.FormatUint(n.ClusterID(), 16), "servers", len(servers))
	return nil
}

// snapshotLoadedState makes the state loaded from the database raft's
// snapshot at the bootstrap entry's index (1), and removes that entry,
// before raft starts: a leader then sends a member without the state this
// snapshot, never its log from the start. A member of the forming cluster
// that saw it formed before loading the database waits to be added with
// an empty store; had it received the log from entry 1 (as it did while
// the first leader's snapshot of the loaded state was still to come), it
// would have applied it onto that empty store and answered reads from it.
func (n *Node) snapshotLoadedState(snaps raft.SnapshotStore, servers []raft.Server) error {
	const index, term = 1, 1 // raft.BootstrapCluster's entry
	n.store.ApplyBatch([]fsm.Entry{{Index: index, Skip: true}})
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, raft.Configuration{Servers: servers}, index, n.transport)
	if err != nil {
		return fmt.Errorf("node: snapshot the loaded state: %w", err)
	}
	if err := (fsmSnapshot{n.store.Snapshot()}).Persist(sink); err != nil {
		return fmt.Errorf("node: snapshot the loaded state: %w", err)
	}
	if err := n.logStore.DeleteRange(index, index); err != nil {
		return fmt.Errorf("node: snapshot the loaded state: %w", err)
	}
	os.Remove(n.loadedStateMarker())
	n.log.Info("took a snapshot of the state loaded from the database", "index", index)
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
			// The loaded state is in no raft entry: members without it
			// must get it from a snapshot, which bootstrap takes.
			if err := os.WriteFile(n.loadedStateMarker(), nil, 0o600); err != nil {
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

// loadedStateMarker is the path of this member's baseSnapshotFile.
func (n *Node) loadedStateMarker() string { return filepath.Join(n.cfg.DataDir, baseSnapshotFile) }

// settleLoadedState looks at a data dir that has raft state and still the
// marker of a state loaded from the database (baseSnapshotFile), but no
// raft snapshot. The store is rebuilt from raft's snapshot and log at each
// start, so it came up without the loaded state. A member stopped between
// raft.BootstrapCluster and snapshotLoadedState holds no more than the
// bootstrap entry and has cast no vote: its raft never ran, or (a data dir
// of a release that bootstrapped a running raft) stored nothing and
// promised nothing. That start is undone, and the member enters its
// cluster again as a member without raft state (it loads the database
// again, or waits to be added and receives the leader's snapshot). Any
// other such data dir is left as it is: raft ran on it, and its log is the
// member's. v0.1.0 leaves one on every founder that loaded the database
// (also one that another founder had just claimed, with nothing in it)
// until that member first leads. It returns whether raft state remains.
func (n *Node) settleLoadedState(snaps raft.SnapshotStore) (bool, error) {
	marker := n.loadedStateMarker()
	if _, err := os.Stat(marker); err != nil {
		return true, nil
	}
	list, err := snaps.List()
	if err != nil {
		return true, fmt.Errorf("node: list raft snapshots: %w", err)
	}
	if len(list) > 0 {
		return true, nil // raft restores the snapshot; snapshotBase takes a newer one
	}
	last, err := n.logStore.LastIndex()
	if err != nil {
		return true, fmt.Errorf("node: read the raft log: %w", err)
	}
	vote, err := n.logStore.GetUint64(raftLastVoteTerm)
	if err != nil && err.Error() != "not found" { // raft's own test for a missing key
		return true, fmt.Errorf("node: read the raft vote: %w", err)
	}
	if last > 1 || vote != 0 {
		n.log.Warn("the data dir holds a state loaded from the database that no raft snapshot keeps; the member starts from its raft log",
			"last_index", last, "last_vote_term", vote)
		return true, nil
	}
	if last == 1 {
		if err := n.logStore.DeleteRange(1, 1); err != nil {
			return true, fmt.Errorf("node: undo an unfinished bootstrap: %w", err)
		}
	}
	if err := n.logStore.SetUint64(raftCurrentTerm, 0); err != nil {
		return true, fmt.Errorf("node: undo an unfinished bootstrap: %w", err)
	}
	if err := os.Remove(marker); err != nil {
		return true, fmt.Errorf("node: undo an unfinished bootstrap: %w", err)
	}
	n.log.Warn("undid a bootstrap that stopped before its snapshot of the database's state; entering the cluster again")
	return false, nil
}

// snapshotBase makes the loaded state part of raft's own: a snapshot, and
// no log entry left before it, so that a member added later starts from
// the snapshot and not from an empty store.
func (n *Node) snapshotBase() {
	marker := n.loadedStateMarker()
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
