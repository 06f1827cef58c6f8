package node_test

import (
	"strings"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// configCase is one row of TestConfigValidate.
type configCase struct {
	name   string
	change func(*node.Config)
	want   string // a part of the error; "" for valid
}

// sinkConfig returns a valid sink config, changed by f.
func sinkConfig(f func(*sqlsink.Config)) *sqlsink.Config {
	c := sqlsink.DefaultConfig()
	c.SQLitePath = "etcdsql.db"
	f(&c)
	return &c
}

// configValidateCases are the rows of TestConfigValidate.
func configValidateCases() []configCase {
	return []configCase{
		{"defaults", func(*node.Config) {}, ""},
		{"no name", func(c *node.Config) { c.Name = "" }, "name is empty"},
		{"no data dir", func(c *node.Config) { c.DataDir = "" }, "data dir is empty"},
		{"peer address without port", func(c *node.Config) { c.PeerAddr = "127.0.0.1" }, `peer address "127.0.0.1"`},
		{"zero max request bytes", func(c *node.Config) { c.MaxRequestBytes = 0 }, "max request bytes must be positive"},
		{"zero request timeout", func(c *node.Config) { c.RequestTimeout = 0 }, "timeouts and intervals must be positive"},
		{"negative election timeout", func(c *node.Config) { c.ElectionTimeout = -time.Second }, "timeouts and intervals must be positive"},
		{"zero lease retry interval", func(c *node.Config) { c.LeaseRetryInterval = 0 }, "timeouts and intervals must be positive"},
		{"fsm min lease ttl", func(c *node.Config) { c.FSM.MinLeaseTTL = 0 }, "min lease TTL"},
		{"periodic without period", func(c *node.Config) { c.AutoCompaction = node.AutoCompaction{Mode: node.CompactionPeriodic} },
			"periodic auto-compaction needs a positive retention period"},
		{"periodic", func(c *node.Config) {
			c.AutoCompaction = node.AutoCompaction{Mode: node.CompactionPeriodic, Period: time.Hour}
		}, ""},
		{"revision without revisions", func(c *node.Config) { c.AutoCompaction = node.AutoCompaction{Mode: node.CompactionRevision} },
			"revision auto-compaction needs a positive number of revisions"},
		{"revision", func(c *node.Config) {
			c.AutoCompaction = node.AutoCompaction{Mode: node.CompactionRevision, Revisions: 1000}
		}, ""},
		{"unknown compaction mode", func(c *node.Config) { c.AutoCompaction = node.AutoCompaction{Mode: "hourly"} },
			`auto-compaction mode must be "periodic" or "revision", got "hourly"`},
		{"short cluster key", func(c *node.Config) { c.ClusterKey = []byte("short") }, "the cluster key must be at least 16 bytes"},
		{"gossip without member authentication", func(c *node.Config) { c.Gossip = &cluster.Config{} }, "members of a cluster must authenticate each other"},
		{"gossip on a trusted network", func(c *node.Config) { c.Gossip = &cluster.Config{}; c.TrustedPeerNetwork = true }, ""},
		{"gossip with a cluster key", func(c *node.Config) {
			c.Gossip = &cluster.Config{}
			c.ClusterKey = []byte("0123456789abcdef")
		}, ""},
		{"lone member's peer port on every address", func(c *node.Config) { c.PeerAddr = "0.0.0.0:2380" }, "reachable from other hosts"},
		{"lone member's peer port on a trusted network", func(c *node.Config) { c.PeerAddr = ":2380"; c.TrustedPeerNetwork = true }, ""},
		{"lone member's peer port on localhost", func(c *node.Config) { c.PeerAddr = "localhost:2380" }, ""},
		{"negative max voters", func(c *node.Config) { c.MaxVoters = -1 }, "max voters must not be negative"},
		{"sink without a database", func(c *node.Config) { c.Sink = sinkConfig(func(s *sqlsink.Config) { s.SQLitePath = "" }) },
			"sqlsink: neither a MySQL DSN nor a SQLite path"},
		{"sink with a bad ack", func(c *node.Config) { c.Sink = sinkConfig(func(s *sqlsink.Config) { s.Ack = "later" }) }, "sqlsink: ack must be"},
		{"sink", func(c *node.Config) { c.Sink = sinkConfig(func(*sqlsink.Config) {}) }, ""},
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range configValidateCases() {
		t.Run(tt.name, func(t *testing.T) {
			c := node.DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error with %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate() = %v, want an error with %q", err, tt.want)
			case err != nil && !strings.HasPrefix(err.Error(), "node: config: "):
				t.Fatalf("Validate() = %v, want the prefix %q", err, "node: config: ")
			}
		})
	}

	// Every problem is reported at once.
	c := node.DefaultConfig()
	c.Name, c.DataDir, c.MaxVoters = "", "", -1
	err := c.Validate()
	for _, want := range []string{"name is empty", "data dir is empty", "max voters must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}

func TestStartMemberRefusesBadConfig(t *testing.T) {
	valid := func() node.MemberConfig {
		nc := node.DefaultConfig()
		nc.DataDir = t.TempDir()
		nc.PeerAddr = "127.0.0.1:0"
		return node.MemberConfig{Node: nc, RPC: rpc.DefaultConfig(), ListenClientURLs: []string{"http://127.0.0.1:0"}}
	}
	tests := []struct {
		name   string
		change func(*node.MemberConfig)
		want   string
	}{
		{"client URL without port", func(c *node.MemberConfig) { c.ListenClientURLs = []string{"http://127.0.0.1"} }, "no port"},
		{"client URL scheme", func(c *node.MemberConfig) { c.ListenClientURLs = []string{"unix://127.0.0.1:1"} }, "scheme must be http or https"},
		{"client URL does not parse", func(c *node.MemberConfig) { c.ListenClientURLs = []string{"http://[::1"} }, "parse URL"},
		{"key bounds differ", func(c *node.MemberConfig) { c.RPC.MaxKeyBytes = 10; c.Node.FSM.MaxKeyBytes = 20 },
			"client port max key bytes 10 differs from the store's 20"},
		{"invalid node config", func(c *node.MemberConfig) { c.Node.Name = "" }, "name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			m, err := node.StartMember(c)
			if err == nil {
				m.Close()
				t.Fatalf("StartMember() started, want an error with %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("StartMember() = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestHostPort(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"http://127.0.0.1:2379", "127.0.0.1:2379", true},
		{"https://example.com:443", "example.com:443", true},
		{"http://[::1]:2379", "[::1]:2379", true},
		{"http://127.0.0.1", "", false},
		{"tcp://127.0.0.1:2379", "", false},
		{"%zz", "", false},
	}
	for _, tt := range tests {
		got, err := node.HostPort(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("HostPort(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
