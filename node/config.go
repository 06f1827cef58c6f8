package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"time"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/sqlsink"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
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
	// LogStore names the raft log store of a new data dir (LogStoreWAL or
	// LogStoreBoltDB); a data dir keeps the one it holds.
	LogStore string
	// WALSegmentBytes is the size of the wal store's segment files (0:
	// raft-wal's default, 64 MiB). The wal store drops log entries a
	// snapshot made unneeded a whole sealed segment at a time, and serves
	// those of its open segment until it fills.
	WALSegmentBytes int
	// SnapshotThreshold and TrailingLogs control raft log compaction.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	// LeaseRetryInterval is how long the leader waits before it tries
	// again to revoke an expired lease whose revoke failed (the lease
	// clock otherwise sleeps until the next deadline; it never polls).
	LeaseRetryInterval time.Duration
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

	// Fatal is called when the member cannot go on without its copy
	// diverging from the others': a committed entry it cannot apply (from
	// a newer release, or corrupt). The member has applied nothing from
	// that entry on and applies nothing more; Fatal should end the process
	// (etcdsql exits with status 3). nil: the member only stops applying.
	Fatal func(error)

	// BcryptCost is the cost a member hashes the passwords its clients
	// send with (etcd's --bcrypt-cost); 0: bcrypt's default, 10, as etcd's.
	BcryptCost int

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
		LogStore:           LogStoreWAL,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		SnapshotInterval:   2 * time.Minute,
		LeaseRetryInterval: 500 * time.Millisecond,
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
	if c.RequestTimeout <= 0 || c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0 || c.LeaseRetryInterval <= 0 {
		errs = append(errs, errors.New("timeouts and intervals must be positive"))
	}
	if c.LogStore != LogStoreWAL && c.LogStore != LogStoreBoltDB {
		errs = append(errs, fmt.Errorf("raft log store %q: want %s or %s", c.LogStore, LogStoreWAL, LogStoreBoltDB))
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
	unauthenticated := c.PeerTLS == nil && len(c.ClusterKey) == 0 && !c.TrustedPeerNetwork
	if c.Gossip != nil && unauthenticated {
		errs = append(errs, errNoMemberAuth)
	}
	if c.Gossip == nil && unauthenticated && !loopbackAddr(c.PeerAddr) {
		errs = append(errs, fmt.Errorf("the peer port %s is reachable from other hosts and nothing authenticates its callers: "+
			"keep a lone member's peer port on loopback (the default, localhost:2380), or give a cluster key, peer certificates or --trusted-peer-network", c.PeerAddr))
	}
	if c.MaxVoters < 0 {
		errs = append(errs, errors.New("max voters must not be negative"))
	}
	if c.BcryptCost != 0 && (c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost) {
		errs = append(errs, fmt.Errorf("bcrypt cost must be from %d to %d, got %d", bcrypt.MinCost, bcrypt.MaxCost, c.BcryptCost))
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

// MemberID derives the stable member ID of a member name.
func MemberID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte("etcdsql/member/" + name))
	return h.Sum64() &^ (1 << 63)
}

// voterLimit is how many voters the leader promotes members up to.
func (c Config) voterLimit() int {
	switch {
	case c.MaxVoters > 0:
		return c.MaxVoters
	case c.BootstrapExpect > 0:
		return c.BootstrapExpect
	case c.Gossip != nil && len(c.Gossip.Join) > 0:
		return 3
	}
	return 1
}

// loopbackAddr reports whether host:port listens on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
