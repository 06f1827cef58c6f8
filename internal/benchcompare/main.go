// Command benchcompare runs the same loads on a real etcd 3.4 and on
// etcdsql, interleaved, and prints one table of the medians and their
// ratios (`make bench-compare`). Run it with --help for its flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/etcdsql/etcdsql/internal/serverproc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	etcd, etcdsql, mysqlDSN, dir string
	rounds                       int
	quick                        bool
	loads                        []string
}

const usage = `Usage: go run ./internal/benchcompare [flags]   (or: make bench-compare)

Runs the same loads on a real etcd 3.4 and on etcdsql (embedded SQLite, the
default; and MariaDB with --sink-ack=sync when a DSN is given), each on
fresh processes on loopback, interleaved (etcd, etcdsql, etcd, etcdsql...),
for --rounds rounds, and prints one Markdown table: the median of each
figure per server and the ratio etcdsql/etcd, with the direction that is
better. Progress goes to stderr, the table to stdout.

Loads (names for --loads):
`

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchcompare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.etcd, "etcd", "/usr/bin/etcd", "the etcd 3.4 binary (Debian's etcd-server package)")
	fs.StringVar(&o.etcdsql, "etcdsql", "", "the etcdsql binary (default: go build ./cmd/etcdsql into --dir)")
	fs.StringVar(&o.mysqlDSN, "mysql-dsn", os.Getenv("MYSQL_DSN"), "MariaDB/MySQL DSN (default $MYSQL_DSN); each run gets a fresh database on this server; empty: no MariaDB runs and no three-member loads")
	fs.StringVar(&o.dir, "dir", "", "where data directories and logs go (default: a new temporary directory, removed at the end)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of every load on every server (at least 2)")
	fs.BoolVar(&o.quick, "quick", false, "a short run: smaller and shorter loads (figures are rougher)")
	loads := fs.String("loads", "", "comma-separated load names to run (default: all)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		for _, l := range allLoads() {
			fmt.Fprintf(fs.Output(), "  %-16s %s\n", l.name, l.about)
		}
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.rounds < 2 {
		return o, fmt.Errorf("--rounds %d: at least 2", o.rounds)
	}
	if *loads != "" {
		o.loads = strings.Split(*loads, ",")
		for _, name := range o.loads {
			if !slices.ContainsFunc(allLoads(), func(l load) bool { return l.name == name }) {
				return o, fmt.Errorf("--loads: no load %q (see --help)", name)
			}
		}
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(o.etcd); err != nil {
		return fmt.Errorf("no etcd 3.4 at %s (%v): install Debian's etcd-server package (apt-get install etcd-server) or pass --etcd PATH", o.etcd, err)
	}
	etcdVersion, err := exec.Command(o.etcd, "--version").Output()
	if err != nil || !strings.Contains(string(etcdVersion), "etcd Version: 3.4.") {
		return fmt.Errorf("%s is not etcd 3.4 (%v): %s", o.etcd, err, strings.TrimSpace(string(etcdVersion)))
	}
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "benchcompare-"); err != nil {
			return err
		}
		defer os.RemoveAll(o.dir)
	}
	if o.etcdsql == "" {
		o.etcdsql = filepath.Join(o.dir, "etcdsql")
		fmt.Fprintln(stderr, "building etcdsql")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", o.etcdsql, "github.com/etcdsql/etcdsql/cmd/etcdsql").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/etcdsql: %v\n%s", err, out)
		}
	}
	b := &bench{o: o, log: stderr, figures: map[string]map[string][]float64{}}
	b.servers = []server{{name: "etcd", start: b.startEtcd}, {name: "etcdsql", start: b.startEtcdsql(false)}}
	if o.mysqlDSN != "" {
		b.servers = append(b.servers, server{name: "etcdsql MariaDB sync", start: b.startEtcdsql(true)})
	}
	started := time.Now()
	load1, _ := os.ReadFile("/proc/loadavg")
	if err := b.run(ctx); err != nil {
		return err
	}
	sqlVersion, _ := exec.Command(o.etcdsql, "--version").CombinedOutput()
	loadavg := strings.Fields(string(load1))
	fmt.Fprintf(stdout, "%s beside etcd %s: %s, %d rounds%s, %d CPUs, load average at start %s\n\n",
		firstLine(sqlVersion), strings.TrimPrefix(firstLine(etcdVersion), "etcd Version: "),
		started.UTC().Format("2006-01-02 15:04 UTC"), o.rounds, map[bool]string{true: " (--quick)"}[o.quick],
		runtime.NumCPU(), strings.Join(loadavg[:min(3, len(loadavg))], " "))
	b.table(stdout)
	return nil
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// server is one kind of server the loads run on.
type server struct {
	name  string
	start func(ctx context.Context, dir string, members int) (*serverproc.Server, func(), error)
}

func (b *bench) startEtcd(_ context.Context, dir string, members int) (*serverproc.Server, func(), error) {
	s, err := serverproc.StartEtcd(b.o.etcd, dir, members)
	if err != nil {
		return nil, nil, err
	}
	return s, s.Stop, nil
}

// startEtcdsql starts etcdsql members, on a fresh MariaDB database with
// sync acks when mariadb is set.
func (b *bench) startEtcdsql(mariadb bool) func(ctx context.Context, dir string, members int) (*serverproc.Server, func(), error) {
	return func(ctx context.Context, dir string, members int) (*serverproc.Server, func(), error) {
		var extra []string
		drop := func() {}
		if mariadb {
			dsn, dropDB, err := freshDatabase(ctx, b.o.mysqlDSN, filepath.Base(dir))
			if err != nil {
				return nil, nil, err
			}
			extra, drop = []string{"--mysql-dsn", dsn, "--sink-ack", "sync"}, dropDB
		}
		s, err := serverproc.StartEtcdsql(b.o.etcdsql, dir, members, extra...)
		if err != nil {
			drop()
			return nil, nil, err
		}
		return s, func() { s.Stop(); drop() }, nil
	}
}

// bench runs the loads and collects their figures.
type bench struct {
	o       options
	log     io.Writer
	servers []server
	// figures: figure name → server name → one value per round.
	figures map[string]map[string][]float64
	order   []figure // the figures in the order first measured
	runs    int
	failed  []string // runs that failed twice
}

// run runs every round: in each, every load on every server in turn
// (the servers' order reversed every other round), each load on servers
// started for it.
func (b *bench) run(ctx context.Context) error {
	var loads []load
	for _, l := range allLoads() {
		if len(b.o.loads) == 0 || slices.Contains(b.o.loads, l.name) {
			loads = append(loads, l)
		}
	}
	for round := range b.o.rounds {
		for _, l := range loads {
			servers := b.servers
			if l.members > 1 {
				servers = slices.DeleteFunc(slices.Clone(servers), func(s server) bool { return s.name == "etcdsql" })
				if b.o.mysqlDSN == "" {
					if round == 0 {
						fmt.Fprintf(b.log, "skipping %s: it needs MariaDB (--mysql-dsn or MYSQL_DSN)\n", l.name)
					}
					continue
				}
			}
			if round%2 == 1 {
				servers = slices.Clone(servers)
				slices.Reverse(servers)
			}
			for _, s := range servers {
				// A run that fails (a request timed out on a busy
				// machine, say) is tried once more on fresh processes,
				// then left out of the medians and listed under the table.
				err := b.runOne(ctx, round, l, s)
				if err != nil && ctx.Err() == nil {
					fmt.Fprintf(b.log, "round %d, %s on %s failed (%v); trying again\n", round+1, l.name, s.name, err)
					err = b.runOne(ctx, round, l, s)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					b.failed = append(b.failed, fmt.Sprintf("round %d, %s on %s: %v", round+1, l.name, s.name, err))
				}
			}
		}
	}
	return nil
}

// runOne starts the server, runs one load on it and stops it.
func (b *bench) runOne(ctx context.Context, round int, l load, s server) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.runs++
	dir := filepath.Join(b.o.dir, fmt.Sprintf("run%03d", b.runs))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	srv, stop, err := s.start(ctx, dir, l.members)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer stop()
	fmt.Fprintf(b.log, "round %d: %s on %s", round+1, l.name, s.name)
	figs, err := l.run(ctx, srv.Endpoints, b.o.quick)
	if err != nil {
		fmt.Fprintln(b.log)
		return err
	}
	if len(figs) == 0 || figs[0].value == 0 {
		fmt.Fprintln(b.log)
		return errors.New("measured nothing")
	}
	for _, f := range figs {
		fmt.Fprintf(b.log, "; %s %.4g", f.name, f.value)
		byServer, ok := b.figures[f.name]
		if !ok {
			byServer = map[string][]float64{}
			b.figures[f.name] = byServer
			b.order = append(b.order, f)
		}
		byServer[s.name] = append(byServer[s.name], f.value)
	}
	fmt.Fprintln(b.log)
	return nil
}

// table prints the medians and ratios as Markdown.
func (b *bench) table(w io.Writer) {
	head := []string{"figure", "better", "etcd"}
	for _, s := range b.servers[1:] {
		head = append(head, s.name, s.name+" / etcd")
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat(" --- |", len(head)))
	for _, f := range b.order {
		byServer := b.figures[f.name]
		better := "lower"
		if f.higher {
			better = "higher"
		}
		etcd, ok := median(byServer["etcd"])
		row := []string{f.name, better, format(etcd, ok)}
		for _, s := range b.servers[1:] {
			v, vok := median(byServer[s.name])
			ratio := "-"
			if ok && vok && etcd != 0 {
				ratio = fmt.Sprintf("%.2fx", v/etcd)
				if v/etcd < 0.1 {
					ratio = fmt.Sprintf("%.3fx", v/etcd)
				}
			}
			row = append(row, format(v, vok), ratio)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	if len(b.failed) > 0 {
		fmt.Fprintf(w, "\nLeft out of the medians (failed twice):\n")
		for _, f := range b.failed {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
}

func median(v []float64) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

func format(v float64, ok bool) string {
	switch {
	case !ok:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
