// Command etcdsql serves the etcd v3 API (gRPC and the HTTP/JSON gateway)
// from a raft-replicated store whose system of record is a SQL database.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gopkg.in/yaml.v3"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/internal/release"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// exitCannotApply is the exit status of a member that stopped before a
// committed entry it cannot apply.
const exitCannotApply = 3

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "check":
		err = runCheck(ctx, os.Args[2:], os.Stdout)
	case len(os.Args) > 1 && os.Args[1] == "member":
		err = runMember(ctx, os.Args[2:], os.Stdout)
	case len(os.Args) > 1 && os.Args[1] == "import":
		err = runImport(ctx, os.Args[2:], os.Stderr)
	default:
		err = run(ctx, os.Args[1:], os.Stderr)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errDifferent) {
			fmt.Fprintln(os.Stderr, "etcdsql:", err)
		}
		os.Exit(1)
	}
}

// options are the command-line settings, named as etcd names them.
type options struct {
	name                   string
	dataDir                string
	listenClientURLs       string
	advertiseClientURLs    string
	listenPeerURLs         string
	advertisePeerURLs      string
	logLevel               string
	logFormat              string
	configFile             string
	maxRequestBytes        int
	electionTimeoutMs      int
	snapshotCount          uint64
	raftLogStore           string
	progressNotifyInterval time.Duration
	enablePprof            bool
	mysqlDSN               string
	sinkAck                string
	autoCompactionMode     string
	autoCompactionRet      string
	gossipAddr             string
	advertiseGossipAddr    string
	join                   string
	bootstrapExpect        int
	role                   string
	deadServerCleanup      time.Duration
	leaveOnTerminate       bool
	drainTimeout           time.Duration
	peerCertFile           string
	peerKeyFile            string
	peerTrustedCAFile      string
	clusterKeyFile         string
	trustedPeerNetwork     bool
	gossipKey              string
	maxVoters              int
	certFile               string
	keyFile                string
	trustedCAFile          string
	clientCertAuth         bool
	bcryptCost             int
}

// defaultAck is the ack mode --sink-ack names, or the database's default:
// async on SQLite, whose file lives in the data dir beside the raft log (a
// write in the fsync'd raft log is as durable as one in that file, which
// synchronous=NORMAL commits without an fsync anyway), sync on MySQL, the
// system of record that outlives every member's disk.
func defaultAck(flag, mysqlDSN string) string {
	switch {
	case flag != "":
		return flag
	case mysqlDSN != "":
		return sqlsink.AckSync
	}
	return sqlsink.AckAsync
}

func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("etcdsql", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.name, "name", "default", "human-readable name for this member (its stable raft ID)")
	fs.StringVar(&o.dataDir, "data-dir", "", "path to the data directory (default \"${name}.etcdsql\")")
	fs.StringVar(&o.listenClientURLs, "listen-client-urls", "http://localhost:2379", "URL to listen on for client traffic (gRPC and HTTP/JSON)")
	fs.StringVar(&o.advertiseClientURLs, "advertise-client-urls", "", "comma-separated client URLs to advertise to the cluster (default: the listen URL)")
	fs.StringVar(&o.listenPeerURLs, "listen-peer-urls", "http://localhost:2380", "URL to listen on for raft traffic")
	fs.StringVar(&o.advertisePeerURLs, "initial-advertise-peer-urls", "", "peer URL to advertise to the cluster (default: the listen peer URL)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&o.configFile, "config-file", "", "path to a YAML file whose keys are these flag names")
	fs.IntVar(&o.maxRequestBytes, "max-request-bytes", 1572864, "maximum client request size in bytes")
	fs.IntVar(&o.electionTimeoutMs, "election-timeout", 1000, "raft election timeout in milliseconds")
	fs.Uint64Var(&o.snapshotCount, "snapshot-count", 8192, "committed entries that trigger a raft snapshot")
	fs.StringVar(&o.raftLogStore, "raft-log-store", node.LogStoreWAL, "raft log store of a new data dir: wal (raft-wal, one fsync per append) or boltdb (raft-boltdb); an existing data dir keeps its own")
	fs.DurationVar(&o.progressNotifyInterval, "experimental-watch-progress-notify-interval", 10*time.Minute,
		"interval of watch progress notifications for watchers that ask for them")
	fs.StringVar(&o.mysqlDSN, "mysql-dsn", "", "MySQL/MariaDB DSN of the system of record (user:pass@tcp(host:3306)/db); empty: SQLite under --data-dir")
	fs.StringVar(&o.sinkAck, "sink-ack", "", "sync: answer writes once in the database; async: answer on raft commit (fsync'd raft log), the database trailing by up to 100 ms (default: async on the embedded SQLite file, which sits beside the raft log; sync on MySQL)")
	fs.StringVar(&o.autoCompactionMode, "auto-compaction-mode", "periodic", "periodic: keep --auto-compaction-retention of history; revision: keep that many revisions")
	fs.StringVar(&o.autoCompactionRet, "auto-compaction-retention", "0",
		"history to keep: a duration (\"72h\") or hours (\"1\") in periodic mode, a revision count in revision mode; 0 turns auto-compaction off")
	fs.BoolVar(&o.enablePprof, "enable-pprof", false, "serve Go's profiler under /debug/pprof/ on the client port")
	fs.StringVar(&o.gossipAddr, "gossip-addr", "", "host:port for membership gossip (TCP and UDP), e.g. 127.0.0.1:7946; empty: a lone member")
	fs.StringVar(&o.advertiseGossipAddr, "advertise-gossip-addr", "", "gossip host:port the other members reach (default: --gossip-addr)")
	fs.StringVar(&o.join, "join", "", "comma-separated gossip addresses of members to join")
	fs.IntVar(&o.bootstrapExpect, "bootstrap-expect", 0, "voters that form a new cluster together once they see each other in gossip")
	fs.StringVar(&o.role, "role", "voter", "voter, or nonvoter: a read and watch replica that never votes")
	fs.DurationVar(&o.deadServerCleanup, "dead-server-cleanup", 0, "remove a member that has been failed this long (0: only `etcdsql member remove` does)")
	fs.BoolVar(&o.leaveOnTerminate, "leave-on-terminate", false, "on SIGTERM leave the cluster (removed from the raft configuration) instead of just stopping")
	fs.StringVar(&o.certFile, "cert-file", "", "certificate of the client port, served on https:// client URLs (re-read when the file changes)")
	fs.StringVar(&o.keyFile, "key-file", "", "key of --cert-file")
	fs.StringVar(&o.trustedCAFile, "trusted-ca-file", "", "CA bundle client certificates are checked against")
	fs.BoolVar(&o.clientCertAuth, "client-cert-auth", false, "https:// clients must present a certificate signed by --trusted-ca-file")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM, the longest the member takes to drain (hand leadership over, "+
		"move clients and watches to other members, finish calls in flight) and stop; past it, or on a second signal, it exits at once")
	fs.StringVar(&o.peerCertFile, "peer-cert-file", "", "certificate of the peer port (raft and internal service); with the next two, mTLS between members")
	fs.StringVar(&o.peerKeyFile, "peer-key-file", "", "key of --peer-cert-file")
	fs.StringVar(&o.peerTrustedCAFile, "peer-trusted-ca-file", "", "CA bundle members' certificates are checked against")
	fs.StringVar(&o.clusterKeyFile, "cluster-key-file", "", "file holding the secret every member shares (at least 16 bytes): "+
		"without --peer-* files the peer port runs mutual TLS derived from it; gossip is encrypted with it")
	fs.StringVar(&o.gossipKey, "gossip-key", "", "base64 of a 16, 24 or 32-byte key that encrypts gossip (memberlist's keyring); "+
		"with --cluster-key-file gossip is encrypted with a key derived from it instead")
	fs.BoolVar(&o.trustedPeerNetwork, "trusted-peer-network", false,
		"run a cluster without --cluster-key-file or --peer-* files: only members can reach the peer and gossip ports")
	fs.IntVar(&o.bcryptCost, "bcrypt-cost", 10, "cost of the bcrypt hash of the passwords this member takes (etcd's --bcrypt-cost), from 4 to 31")
	fs.IntVar(&o.maxVoters, "max-voters", 0, "voters the leader promotes members up to; the others stay non-voters "+
		"(0: --bootstrap-expect, or 3 for a member started with only --join)")
	return fs
}

// parse reads flags, then fills every flag not given on the command line
// from the environment (ETCDSQL_DATA_DIR for --data-dir), then from the
// config file: flags > env > file > defaults.
func parse(args []string, out io.Writer) (*options, error) {
	o := &options{}
	fs := newFlagSet(o, out)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["config-file"] {
		if v, ok := os.LookupEnv(envName("config-file")); ok {
			o.configFile = v
		}
	}
	file := map[string]any{}
	if o.configFile != "" {
		b, err := os.ReadFile(o.configFile)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		if err := yaml.Unmarshal(b, &file); err != nil {
			return nil, fmt.Errorf("config file %s: %w", o.configFile, err)
		}
		for k := range file {
			if fs.Lookup(k) == nil {
				return nil, fmt.Errorf("config file %s: unknown key %q", o.configFile, k)
			}
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config-file" {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := f.Value.Set(yamlScalar(v)); err != nil {
				errs = append(errs, fmt.Errorf("config file key %s: %w", f.Name, err))
			}
		}
	})
	if o.dataDir == "" {
		o.dataDir = o.name + ".etcdsql"
	}
	return o, errors.Join(errs...)
}

func envName(flagName string) string {
	return "ETCDSQL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func yamlScalar(v any) string {
	if l, ok := v.([]any); ok {
		parts := make([]string, len(l))
		for i, x := range l {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format: want json or text, got %q", o.logFormat)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// memberConfig turns options into the member's configuration.
func memberConfig(o *options, log *slog.Logger, reg *prometheus.Registry) (node.MemberConfig, error) {
	listen := splitList(o.listenClientURLs)
	clientTLS, err := clientTLS(o, listen, log)
	if err != nil {
		return node.MemberConfig{}, err
	}
	peerListen := splitList(o.listenPeerURLs)
	if len(peerListen) != 1 {
		return node.MemberConfig{}, fmt.Errorf("--listen-peer-urls: exactly one URL is supported, got %d", len(peerListen))
	}
	peerAddr, err := node.HostPort(peerListen[0])
	if err != nil {
		return node.MemberConfig{}, fmt.Errorf("--listen-peer-urls: %w", err)
	}
	nc := node.DefaultConfig()
	nc.Name = o.name
	nc.DataDir = o.dataDir
	nc.PeerAddr = peerAddr
	nc.PeerURLs = peerListen
	if adv := splitList(o.advertisePeerURLs); len(adv) > 0 {
		if nc.AdvertisePeerAddr, err = node.HostPort(adv[0]); err != nil {
			return node.MemberConfig{}, fmt.Errorf("--initial-advertise-peer-urls: %w", err)
		}
		nc.PeerURLs = adv
	}
	nc.ClientURLs = splitList(o.advertiseClientURLs)
	if len(nc.ClientURLs) == 0 {
		nc.ClientURLs = listen
	}
	nc.MaxRequestBytes = o.maxRequestBytes
	nc.ElectionTimeout = time.Duration(o.electionTimeoutMs) * time.Millisecond
	nc.HeartbeatTimeout = nc.ElectionTimeout
	nc.SnapshotThreshold = o.snapshotCount
	nc.LogStore = o.raftLogStore
	if nc.AutoCompaction, err = autoCompaction(o.autoCompactionMode, o.autoCompactionRet); err != nil {
		return node.MemberConfig{}, err
	}
	nc.Logger = log
	nc.Registry = reg
	// A committed entry this release cannot apply: node has logged why;
	// exit before anything after it is applied.
	nc.Fatal = func(error) { os.Exit(exitCannotApply) }
	if nc.Gossip, err = gossipConfig(o, log); err != nil {
		return node.MemberConfig{}, err
	}
	switch o.role {
	case cluster.RoleVoter:
	case cluster.RoleNonvoter:
		nc.Nonvoter = true
	default:
		return node.MemberConfig{}, fmt.Errorf("--role: want voter or nonvoter, got %q", o.role)
	}
	if o.drainTimeout <= 0 {
		return node.MemberConfig{}, fmt.Errorf("--drain-timeout: want a positive duration, got %s", o.drainTimeout)
	}
	nc.BootstrapExpect = o.bootstrapExpect
	nc.MaxVoters = o.maxVoters
	nc.BcryptCost = o.bcryptCost
	nc.DeadServerCleanup = o.deadServerCleanup
	if nc.PeerTLS, err = peerTLS(o); err != nil {
		return node.MemberConfig{}, err
	}
	if nc.ClusterKey, err = clusterKey(o.clusterKeyFile); err != nil {
		return node.MemberConfig{}, err
	}
	nc.TrustedPeerNetwork = o.trustedPeerNetwork
	// Every member of a cluster must write to the same database: a file
	// of each member's own cannot be the system of record.
	if o.mysqlDSN != "" || nc.Gossip == nil {
		sc := sqlsink.DefaultConfig()
		sc.MySQLDSN = o.mysqlDSN
		sc.SQLitePath = filepath.Join(o.dataDir, "etcdsql.db")
		sc.Ack = defaultAck(o.sinkAck, o.mysqlDSN)
		nc.Sink = &sc
	}

	rc := rpc.DefaultConfig()
	rc.MaxRequestBytes = o.maxRequestBytes
	rc.WatchProgressNotifyInterval = o.progressNotifyInterval
	rc.LeaderLossTimeout = 3 * nc.ElectionTimeout
	rc.EnablePprof = o.enablePprof
	rc.Logger = log
	rc.Registry = reg
	rc.Gatherer = reg
	return node.MemberConfig{Node: nc, RPC: rc, ListenClientURLs: listen, ClientTLS: clientTLS}, nil
}

// autoCompaction reads etcd's auto-compaction flags.
func autoCompaction(mode, retention string) (node.AutoCompaction, error) {
	if retention == "" || retention == "0" {
		return node.AutoCompaction{}, nil
	}
	switch mode {
	case node.CompactionPeriodic:
		if h, err := strconv.Atoi(retention); err == nil {
			return node.AutoCompaction{Mode: mode, Period: time.Duration(h) * time.Hour}, nil
		}
		d, err := time.ParseDuration(retention)
		if err != nil || d <= 0 {
			return node.AutoCompaction{}, fmt.Errorf("--auto-compaction-retention: want a duration or whole hours, got %q", retention)
		}
		return node.AutoCompaction{Mode: mode, Period: d}, nil
	case node.CompactionRevision:
		n, err := strconv.ParseInt(retention, 10, 64)
		if err != nil || n <= 0 {
			return node.AutoCompaction{}, fmt.Errorf("--auto-compaction-retention: want a revision count, got %q", retention)
		}
		return node.AutoCompaction{Mode: mode, Revisions: n}, nil
	}
	return node.AutoCompaction{}, fmt.Errorf("--auto-compaction-mode: want periodic or revision, got %q", mode)
}

// versionLine says which release and commit this binary is.
func versionLine() string {
	return fmt.Sprintf("etcdsql %s (commit %s, etcd API %s, %s)", release.Name, release.Commit(), rpc.ServerVersion, runtime.Version())
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(stderr, versionLine())
		return nil
	}
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	mc, err := memberConfig(o, log, reg)
	if err != nil {
		return err
	}
	database, ack := "none (a cluster without --mysql-dsn keeps no SQL system of record)", ""
	if mc.Node.Sink != nil {
		database, ack = mc.Node.Sink.Redacted(), mc.Node.Sink.Ack
	}
	log.Info("starting etcdsql", "release", release.Name, "commit", release.Commit(), "name", o.name, "data_dir", o.dataDir,
		"listen_client_urls", o.listenClientURLs, "advertise_client_urls", mc.Node.ClientURLs,
		"listen_peer_urls", o.listenPeerURLs, "election_timeout_ms", o.electionTimeoutMs,
		"max_request_bytes", o.maxRequestBytes, "snapshot_count", o.snapshotCount,
		"database", database, "sink_ack", ack, "gossip_addr", o.gossipAddr, "join", o.join,
		"bootstrap_expect", o.bootstrapExpect, "role", o.role, "drain_timeout", o.drainTimeout, "member_auth", memberAuth(mc.Node))
	// A member forming a cluster waits for the others before it serves;
	// a signal meanwhile stops it.
	started := make(chan error, 1)
	var m *node.Member
	go func() {
		var err error
		m, err = node.StartMember(mc)
		started <- err
	}()
	select {
	case err := <-started:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return errors.New("interrupted while starting")
	}
	log.Info("serving clients", "address", m.ClientAddr)
	select {
	case <-ctx.Done():
		return stopMember(m, o.drainTimeout, o.leaveOnTerminate, log)
	case err := <-m.Done():
		log.Error("client server stopped", "err", err)
	}
	return m.Close()
}

// buildInfo is the etcdsql_build_info gauge: always 1, its labels name the
// release and commit (a dashboard sees a rolling upgrade progress).
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "etcdsql_build_info",
		Help:        "The release and commit this member runs (always 1).",
		ConstLabels: prometheus.Labels{"release": release.Name, "commit": release.Commit(), "go_version": runtime.Version()},
	})
	g.Set(1)
	return g
}
