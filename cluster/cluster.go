package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Roles a member can have.
const (
	RoleVoter    = "voter"
	RoleNonvoter = "nonvoter"
)

// MetaFormat is the format of Meta this release gossips. Meta travels as
// JSON: a later format may add fields, which an older member ignores, and
// never changes the meaning of one. Format 0 (the field absent) is the
// first release's, which gossiped no release name.
const MetaFormat = 1

// Meta is what a member says about itself in gossip.
type Meta struct {
	// Format is the format of this metadata (MetaFormat).
	Format       int      `json:"format,omitempty"`
	RaftAddr     string   `json:"raft"`
	InternalAddr string   `json:"internal,omitempty"`
	ClientURLs   []string `json:"client,omitempty"`
	PeerURLs     []string `json:"peer,omitempty"`
	// Version is the release the member runs ("" for the first
	// release, which did not say).
	Version string `json:"version"`
	Role    string `json:"role"`
	// Leaving is set just before a graceful leave, so that the others can
	// tell a member that left from one that failed.
	Leaving bool `json:"leaving,omitempty"`
	// ClusterID (hex) is set once the member belongs to a formed cluster;
	// a new member seeing it joins that cluster instead of forming one.
	ClusterID string `json:"cluster,omitempty"`
	// Nonce is random per start; members forming a cluster together
	// derive its ID from their names and nonces.
	Nonce string `json:"nonce,omitempty"`
}

// State is what gossip knows of a member.
type State string

// Member states.
const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateFailed  State = "failed" // stopped answering; not removed
	StateLeft    State = "left"   // left gracefully
)

// Member is one member as gossip sees it.
type Member struct {
	Name  string
	Addr  string // gossip address
	Meta  Meta
	State State
}

// Config configures gossip.
type Config struct {
	// Name is the member's stable name; it must be unique in the cluster.
	Name string
	// BindAddr is the gossip host:port (TCP and UDP); AdvertiseAddr, if
	// set, is what others use.
	BindAddr      string
	AdvertiseAddr string
	// Join lists gossip addresses of members to join; unreachable ones
	// are skipped.
	Join []string
	Meta Meta
	// SecretKey, if set, encrypts gossip (AES, 16, 24 or 32 bytes);
	// messages from members without it are dropped.
	SecretKey []byte
	// Local selects memberlist's loopback timing (tests, one host).
	Local  bool
	Logger *slog.Logger
}

// Validate reports a configuration gossip cannot start with.
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("cluster: name is empty")
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("cluster: gossip address %q: %w", c.BindAddr, err)
	}
	if c.Meta.Role != RoleVoter && c.Meta.Role != RoleNonvoter {
		return fmt.Errorf("cluster: role must be %q or %q, got %q", RoleVoter, RoleNonvoter, c.Meta.Role)
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("cluster: gossip key must be 16, 24 or 32 bytes, got %d", len(c.SecretKey))
	}
	return nil
}

// Cluster is this member's view of the cluster. Safe for concurrent use.
type Cluster struct {
	ml  *memberlist.Memberlist
	log *slog.Logger

	metaMu sync.Mutex
	meta   Meta

	mu      sync.Mutex
	members map[string]Member
	changed chan struct{} // closed and replaced on every change
}

// Start starts gossip and joins whichever of cfg.Join answer.
func Start(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if meta, err := json.Marshal(cfg.Meta); err != nil || len(meta) > memberlist.MetaMaxSize-32 {
		return nil, fmt.Errorf("cluster: meta must encode to at most %d bytes (%d): %v", memberlist.MetaMaxSize-32, len(meta), err)
	}
	c := &Cluster{log: logger.With("component", "cluster"), meta: cfg.Meta, members: map[string]Member{}, changed: make(chan struct{})}
	var err error

	mc := memberlist.DefaultLANConfig()
	if cfg.Local {
		mc = memberlist.DefaultLocalConfig()
	}
	mc.Name = cfg.Name
	host, port, _ := net.SplitHostPort(cfg.BindAddr)
	mc.BindAddr = host
	mc.BindPort, _ = strconv.Atoi(port)
	mc.AdvertisePort = mc.BindPort
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := net.SplitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
		// memberlist wants an IP; a name (a container's, a pod's) is
		// resolved once here.
		if net.ParseIP(ah) == nil {
			ips, err := net.LookupIP(ah)
			if err != nil || len(ips) == 0 {
				return nil, fmt.Errorf("cluster: advertise address %q: %v", cfg.AdvertiseAddr, err)
			}
			ah = ips[0].String()
		}
		mc.AdvertiseAddr = ah
		mc.AdvertisePort, _ = strconv.Atoi(ap)
	}
	mc.SecretKey = cfg.SecretKey
	mc.Delegate = delegate{c}
	mc.Events = events{c}
	mc.Logger = log.New(&logBridge{log: c.log}, "", 0)
	c.ml, err = memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", cfg.BindAddr, err)
	}
	if len(cfg.Join) > 0 {
		n, err := c.ml.Join(cfg.Join)
		if n == 0 && err != nil {
			c.log.Warn("no member to join answered yet", "join", strings.Join(cfg.Join, ","), "err", err)
		}
	}
	return c, nil
}

// Join contacts more members; it returns how many answered.
func (c *Cluster) Join(addrs []string) (int, error) { return c.ml.Join(addrs) }

// LocalAddr is this member's gossip address.
func (c *Cluster) LocalAddr() string {
	n := c.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Members returns every member heard of, by name.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Changed returns a channel closed at the next change of Members.
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Forget drops a member that has left or failed from the list (after an
// operator removed it).
func (c *Cluster) Forget(name string) {
	c.mu.Lock()
	delete(c.members, name)
	c.mu.Unlock()
	c.notify()
}

// Leave tells the others this member leaves (first marking itself as
// leaving, so they do not take it for failed), then stops gossip.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.metaMu.Lock()
	c.meta.Leaving = true
	c.metaMu.Unlock()
	err := c.ml.UpdateNode(timeout)
	return errors.Join(err, c.ml.Leave(timeout), c.ml.Shutdown())
}

// UpdateMeta changes what this member says about itself and spreads it.
func (c *Cluster) UpdateMeta(update func(*Meta), timeout time.Duration) error {
	c.metaMu.Lock()
	update(&c.meta)
	c.metaMu.Unlock()
	return c.ml.UpdateNode(timeout)
}

// Close stops gossip without a goodbye (others will see it fail).
func (c *Cluster) Close() error { return c.ml.Shutdown() }

func (c *Cluster) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *Cluster) set(n *memberlist.Node, st State) {
	m := Member{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), State: st}
	if err := json.Unmarshal(n.Meta, &m.Meta); err != nil && len(n.Meta) > 0 {
		c.log.Warn("member with unreadable metadata", "peer", n.Name, "err", err)
	}
	c.mu.Lock()
	c.members[n.Name] = m
	c.mu.Unlock()
	c.notify()
}

type delegate struct{ c *Cluster }

func (d delegate) NodeMeta(limit int) []byte {
	d.c.metaMu.Lock()
	defer d.c.metaMu.Unlock()
	b, _ := json.Marshal(d.c.meta) // checked for size at Start
	return b
}
func (d delegate) NotifyMsg([]byte)                           {}
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d delegate) LocalState(join bool) []byte                { return nil }
func (d delegate) MergeRemoteState(buf []byte, join bool)     {}

type events struct{ c *Cluster }

func (e events) NotifyJoin(n *memberlist.Node)   { e.c.set(n, StateAlive) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.c.set(n, stateOf(n)) }

// NotifyLeave: memberlist does not say here whether the member left or
// failed; the Leaving flag it gossiped before leaving does.
func (e events) NotifyLeave(n *memberlist.Node) {
	e.c.mu.Lock()
	prev, known := e.c.members[n.Name]
	e.c.mu.Unlock()
	if known && prev.Meta.Leaving {
		e.c.set(n, StateLeft)
		return
	}
	e.c.set(n, StateFailed)
}

func stateOf(n *memberlist.Node) State {
	switch n.State {
	case memberlist.StateSuspect:
		return StateSuspect
	case memberlist.StateDead:
		return StateFailed
	case memberlist.StateLeft:
		return StateLeft
	}
	return StateAlive
}

// logBridge turns memberlist's "[LEVEL] memberlist: ..." lines into slog.
type logBridge struct{ log *slog.Logger }

func (b *logBridge) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	switch {
	case strings.HasPrefix(line, "[ERR]"):
		level = slog.LevelError
	case strings.HasPrefix(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.HasPrefix(line, "[INFO]"):
		level = slog.LevelInfo
	}
	if i := strings.Index(line, "] "); i >= 0 {
		line = line[i+2:]
	}
	b.log.Log(context.Background(), level, line)
	return len(p), nil
}
