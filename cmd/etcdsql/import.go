package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsql/etcdsql/internal/etcdbackend"
	"github.com/etcdsql/etcdsql/internal/etcdimport"
)

// importSide is one side's connection flags: the source's named as
// etcdctl names them, the target's with a "target-" prefix.
type importSide struct {
	endpoints, user, password, cacert, cert, key string
}

func (s *importSide) flags(fs *flag.FlagSet, prefix, what string) {
	fs.StringVar(&s.user, prefix+"user", "", what+": username[:password] (as etcdctl's --user)")
	fs.StringVar(&s.password, prefix+"password", "", what+": password (as etcdctl's --password)")
	fs.StringVar(&s.cacert, prefix+"cacert", "", what+": CA bundle that verifies its TLS certificates")
	fs.StringVar(&s.cert, prefix+"cert", "", what+": client certificate for TLS")
	fs.StringVar(&s.key, prefix+"key", "", what+": client key for TLS")
}

// runImport is `etcdsql import`: it copies a live etcd into an empty
// etcdsql cluster with the same revisions, and with --follow keeps
// applying etcd's revisions until SIGINT or SIGTERM, which finishes it.
func runImport(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("etcdsql import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var src, dst importSide
	fs.StringVar(&src.endpoints, "from-etcd", "", "comma-separated client URLs of the etcd cluster to import from")
	fromSnapshot := fs.String("from-snapshot", "", "an etcd snapshot file (etcdctl snapshot save) to import from, instead of --from-etcd")
	src.flags(fs, "", "etcd")
	fs.StringVar(&dst.endpoints, "endpoints", "http://127.0.0.1:2379", "comma-separated client URLs of the etcdsql cluster to import into")
	dst.flags(fs, "target-", "etcdsql")
	follow := fs.Bool("follow", false, "after the copy, keep applying etcd's revisions until SIGINT or SIGTERM, then finish")
	finish := fs.Bool("finish", false, "catch up with etcd's current revision and open the cluster for writes")
	restart := fs.Bool("restart", false, "wipe an import in progress (keys, leases, revisions, and the database's copy) and start over")
	dialTimeout := fs.Duration("dial-timeout", 5*time.Second, "how long to wait for either cluster to answer")
	pageKeys := fs.Int("page-keys", 1000, "keys per replicated entry of the key copy")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: etcdsql import --from-etcd URLS | --from-snapshot FILE [--endpoints URLS] [--follow] [--finish] [--restart] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (src.endpoints == "") == (*fromSnapshot == "") || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("import: one of --from-etcd and --from-snapshot is required")
	}
	var source etcdimport.Source
	if *fromSnapshot != "" {
		if *follow {
			return errors.New("import: --follow needs --from-etcd: a snapshot has no revisions after its own")
		}
		st, err := etcdbackend.ReadFile(*fromSnapshot)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		source = &etcdimport.SnapshotSource{State: st}
	} else {
		c, err := dialSide(src, *dialTimeout, "etcd")
		if err != nil {
			return err
		}
		defer c.Close()
		source = &etcdimport.EtcdSource{C: c}
	}
	target, err := dialSide(dst, *dialTimeout, "the target cluster")
	if err != nil {
		return err
	}
	defer target.Close()

	// With --follow the first signal is the clean stop (catch up, then
	// finish) and a second one cuts the run short; without, the first
	// cuts it short (run again to resume).
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stop <-chan struct{}
	if *follow {
		stop = ctx.Done()
		go func() {
			<-ctx.Done()
			again := make(chan os.Signal, 1)
			signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(again)
			select {
			case <-again:
				cancel()
			case <-runCtx.Done():
			}
		}()
	} else {
		go func() {
			select {
			case <-ctx.Done():
				cancel()
			case <-runCtx.Done():
			}
		}()
	}
	cfg := etcdimport.Config{
		Source:   source,
		Target:   target.ActiveConnection(),
		Follow:   *follow,
		Stop:     stop,
		Finish:   *finish,
		Restart:  *restart,
		PageKeys: *pageKeys,
	}
	if isTerminal(stderr) {
		cfg.Progress = stderr
	}
	sum, err := etcdimport.Run(runCtx, cfg)
	fmt.Fprintln(stderr, sum)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("import: interrupted; run it again to resume")
		}
		return fmt.Errorf("import: %w", err)
	}
	return nil
}

// dialSide connects to one side; the errors say which side.
func dialSide(s importSide, timeout time.Duration, what string) (*clientv3.Client, error) {
	user, password := s.user, s.password
	if u, p, ok := strings.Cut(user, ":"); ok && password == "" {
		user, password = u, p
	}
	cfg := clientv3.Config{
		Endpoints:   splitList(s.endpoints),
		Username:    user,
		Password:    password,
		DialTimeout: timeout,
		Logger:      zap.NewNop(),
	}
	if s.cacert != "" || s.cert != "" {
		tlsInfo := transport.TLSInfo{TrustedCAFile: s.cacert, CertFile: s.cert, KeyFile: s.key}
		tc, err := tlsInfo.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("import: %s: TLS: %w", what, err)
		}
		cfg.TLS = tc
	} else if anyHTTPS(cfg.Endpoints) {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("import: %w %s at %s within %v", etcdimport.ErrUnreachable, what, s.endpoints, timeout)
		}
		return nil, fmt.Errorf("import: %s: %w", what, err)
	}
	// Without credentials nothing is sent yet: one call within the
	// timeout says whether the side answers at all.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := c.Get(ctx, "\x00", clientv3.WithCountOnly()); err != nil && ctx.Err() != nil {
		c.Close()
		return nil, fmt.Errorf("import: %w %s at %s within %v", etcdimport.ErrUnreachable, what, s.endpoints, timeout)
	}
	return c, nil
}

func anyHTTPS(urls []string) bool {
	for _, u := range urls {
		if strings.HasPrefix(u, "https://") {
			return true
		}
	}
	return false
}

// isTerminal reports whether w is a terminal (progress lines only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
