package etcdimport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/rpc"
)

// Config is one run of an import.
type Config struct {
	Source Source
	// Target is a connection to the etcdsql cluster's client port (a
	// clientv3.Client's ActiveConnection carries its credentials).
	Target grpc.ClientConnInterface
	// Follow keeps applying the source's revisions until Stop is closed.
	Follow bool
	// Stop asks a follow to end cleanly: it catches up with the source's
	// revision at that moment and finishes.
	Stop <-chan struct{}
	// Finish opens the target for writes once it has the source's current
	// revision (a follow always finishes when stopped).
	Finish bool
	// Restart wipes an import in progress (from any source) and starts
	// over.
	Restart bool
	// PageKeys and PageBytes bound one entry of keys (defaults 1000 keys,
	// 1 MiB; one revision's keys always travel together).
	PageKeys, PageBytes int
	// CallTimeout bounds each call to either side (default 30 s).
	CallTimeout time.Duration
	// Progress, when set, gets a progress line every ProgressEvery
	// (default 1 s), rewritten in place.
	Progress      io.Writer
	ProgressEvery time.Duration
}

func (c *Config) defaults() {
	if c.PageKeys <= 0 {
		c.PageKeys = 1000
	}
	if c.PageBytes <= 0 {
		c.PageBytes = 1 << 20
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 30 * time.Second
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
}

// Summary is what a run did.
type Summary struct {
	Source   uint64 // the source cluster's ID
	Base     int64  // the source revision the key space was read at
	Resumed  bool   // the run continued an import in progress
	Keys     int64  // keys copied by this run's key space
	Leases   int64  // distinct leases copied or updated
	Revs     int64  // source revisions applied after the key space
	Rev      int64  // the target's revision at the end
	Head     int64  // the source's revision last seen
	Finished bool   // the target is open for writes
	Took     time.Duration
}

// String is the summary line the command prints.
func (s Summary) String() string {
	state := "import in progress: the cluster refuses writes until `etcdsql import --finish`"
	if s.Finished {
		state = fmt.Sprintf("import finished: the cluster is open for writes at revision %d", s.Rev)
	}
	rate := float64(s.Keys+s.Revs) / max(s.Took.Seconds(), 0.001)
	behind := ""
	if s.Head > s.Rev {
		behind = fmt.Sprintf(" (etcd is at revision %d, %d ahead)", s.Head, s.Head-s.Rev)
	}
	return fmt.Sprintf("etcdsql import: %d keys at revision %d and %d revisions after it, %d leases, in %v (%.0f/s); %s%s",
		s.Keys, s.Base, s.Revs, s.Leases, s.Took.Round(time.Millisecond), rate, state, behind)
}

type importer struct {
	cfg     Config
	sum     Summary
	keys    atomic.Int64
	revs    atomic.Int64
	rev     atomic.Int64
	head    atomic.Int64
	leases  map[int64]bool // imported by this run
	started time.Time
}

// Run imports from cfg.Source into cfg.Target: it begins an import on an
// empty target, or continues one in progress from the same source. The
// summary says how far it got, also with an error.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg.defaults()
	im := &importer{cfg: cfg, leases: make(map[int64]bool), started: time.Now()}
	var wg sync.WaitGroup
	pctx, stopProgress := context.WithCancel(ctx)
	if cfg.Progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			im.progress(pctx)
		}()
	}
	err := im.run(ctx)
	stopProgress()
	wg.Wait()
	if cfg.Progress != nil {
		fmt.Fprint(cfg.Progress, "\r\033[K")
	}
	im.sum.Keys, im.sum.Revs, im.sum.Rev, im.sum.Head = im.keys.Load(), im.revs.Load(), im.rev.Load(), im.head.Load()
	im.sum.Took = time.Since(im.started)
	return im.sum, err
}

func (im *importer) run(ctx context.Context) error {
	src, head, err := im.sourceHead(ctx)
	if err != nil {
		return err
	}
	im.sum.Source = src
	st, err := im.status(ctx)
	if err != nil {
		return err
	}
	im.rev.Store(st.Revision)
	if st.RaftTerm == 1 && im.cfg.Restart {
		h, err := im.call(ctx, "Reset", &pb.ResponseHeader{}, -1)
		if err != nil {
			return err
		}
		st = &pb.ResponseHeader{Revision: h.Revision}
		im.rev.Store(h.Revision)
	}
	switch {
	case st.RaftTerm == 1 && st.ClusterId != src:
		return fmt.Errorf("%w: it imports from etcd cluster %x, the source is cluster %x; --restart starts over", ErrOtherSource, st.ClusterId, src)
	case st.RaftTerm == 1:
		im.sum.Resumed, im.sum.Base = true, int64(st.MemberId)
	case st.Revision > 1:
		return fmt.Errorf("%w: it is at revision %d; import into a new cluster", ErrTargetNotEmpty, st.Revision)
	default:
		im.sum.Base = head
		if _, err := im.call(ctx, "Begin", &pb.ResponseHeader{ClusterId: src, Revision: head}, -1); err != nil {
			return err
		}
	}
	// Leases first: keys name them. Again on a resume: an upsert.
	leases, err := fromSource(im, ctx, im.cfg.Source.Leases)
	if err != nil {
		return im.sourceErr(err)
	}
	for _, l := range leases {
		if err := im.importLease(ctx, l); err != nil {
			return err
		}
	}
	if im.rev.Load() < im.sum.Base {
		if err := im.copyKeys(ctx); err != nil {
			return err
		}
	}
	if im.rev.Load() == im.sum.Base {
		if _, err := im.call(ctx, "Compact", &pb.CompactionRequest{Revision: im.sum.Base}, -1); err != nil {
			return err
		}
	}
	if err := im.follow(ctx); err != nil {
		return err
	}
	if !im.cfg.Finish && !im.cfg.Follow {
		return nil
	}
	return im.finish(ctx)
}

// copyKeys copies the key space at the base revision from where the target
// stands.
func (im *importer) copyKeys(ctx context.Context) error {
	base := im.sum.Base
	for {
		from := im.rev.Load() + 1
		var more bool
		kvs, err := fromSource(im, ctx, func(ctx context.Context) (kvs []*mvccpb.KeyValue, err error) {
			kvs, more, err = im.cfg.Source.Keys(ctx, base, from, im.cfg.PageKeys)
			return kvs, err
		})
		if err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("%w: etcd no longer has revision %d, which the key copy reads", ErrCompacted, base)
			}
			return im.sourceErr(err)
		}
		for len(kvs) > 0 {
			n := im.cut(kvs)
			upTo := kvs[n-1].ModRevision
			if !more && n == len(kvs) {
				upTo = base
			}
			if err := im.leasesOf(ctx, kvs[:n]); err != nil {
				return err
			}
			if _, err := im.call(ctx, "Keys", &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: upTo}, Kvs: kvs[:n]}, upTo); err != nil {
				return err
			}
			im.keys.Add(int64(n))
			im.rev.Store(upTo)
			kvs = kvs[n:]
		}
		if !more {
			break
		}
	}
	if im.rev.Load() < base {
		if _, err := im.call(ctx, "Keys", &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: base}}, base); err != nil {
			return err
		}
		im.rev.Store(base)
	}
	return nil
}

// cut returns how many of kvs go in one entry: up to the byte bound, at a
// revision boundary, and at least one whole revision.
func (im *importer) cut(kvs []*mvccpb.KeyValue) int {
	size := 0
	for i, kv := range kvs {
		size += kv.Size()
		if size > im.cfg.PageBytes && i > 0 {
			j := i
			for j > 0 && kvs[j-1].ModRevision == kvs[i].ModRevision {
				j--
			}
			if j > 0 {
				return j
			}
			for j = i; j < len(kvs) && kvs[j].ModRevision == kvs[i].ModRevision; j++ {
			}
			return j
		}
	}
	return len(kvs)
}

// follow applies the source's revisions after the target's: until Stop
// with Follow, else until the source's current revision.
func (im *importer) follow(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopAt := int64(-1)
	if !im.cfg.Follow {
		_, head, err := im.sourceHead(ctx)
		if err != nil {
			return err
		}
		stopAt = head
	}
	if im.rev.Load() >= stopAt && stopAt >= 0 {
		return nil
	}
	ch := im.cfg.Source.Watch(wctx, im.rev.Load())
	stop := im.cfg.Stop
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			stop = nil
			_, head, err := im.sourceHead(ctx)
			if err != nil {
				return err
			}
			stopAt = head
			if im.rev.Load() >= stopAt {
				return nil
			}
		case r, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			if r.Err != nil {
				return im.sourceErr(r.Err)
			}
			if r.Head > im.head.Load() {
				im.head.Store(r.Head)
			}
			if r.Rev <= im.rev.Load() {
				continue // applied before a retry
			}
			if err := im.applyRevision(ctx, r); err != nil {
				return err
			}
			if stopAt >= 0 && im.rev.Load() >= stopAt {
				return nil
			}
		}
	}
}

// applyRevision applies one source revision, importing first the leases
// its puts name that the target does not have yet.
func (im *importer) applyRevision(ctx context.Context, r Revision) error {
	var kvs []*mvccpb.KeyValue
	for _, ev := range r.Events {
		if ev.Type == mvccpb.PUT {
			kvs = append(kvs, ev.Kv)
		}
	}
	if err := im.leasesOf(ctx, kvs); err != nil {
		return err
	}
	if _, err := im.call(ctx, "Events", &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: r.Rev}, Events: r.Events}, r.Rev); err != nil {
		return err
	}
	im.rev.Store(r.Rev)
	im.revs.Add(1)
	return nil
}

// leasesOf imports the leases kvs name that this run has not imported.
func (im *importer) leasesOf(ctx context.Context, kvs []*mvccpb.KeyValue) error {
	for _, kv := range kvs {
		if kv.Lease == 0 || im.leases[kv.Lease] {
			continue
		}
		l, err := fromSource(im, ctx, func(ctx context.Context) (*pb.LeaseTimeToLiveResponse, error) {
			return im.cfg.Source.Lease(ctx, kv.Lease)
		})
		if err != nil {
			return im.sourceErr(err)
		}
		if err := im.importLease(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

// importLease copies one lease; one the source has already revoked comes
// with one second left (its keys' deletions follow from the source).
func (im *importer) importLease(ctx context.Context, l *pb.LeaseTimeToLiveResponse) error {
	c := &pb.LeaseTimeToLiveResponse{ID: l.ID, TTL: l.TTL, GrantedTTL: max(l.GrantedTTL, 1)}
	if _, err := im.call(ctx, "Lease", c, -1); err != nil {
		return err
	}
	im.leases[l.ID] = true
	im.sum.Leases = int64(len(im.leases))
	return nil
}

// finish brings the leases' remaining TTLs up to date and opens the target
// at its revision.
func (im *importer) finish(ctx context.Context) error {
	leases, err := fromSource(im, ctx, im.cfg.Source.Leases)
	if err != nil {
		return im.sourceErr(err)
	}
	f := &pb.LeaseLeasesResponse{Header: &pb.ResponseHeader{Revision: im.rev.Load()}}
	for _, l := range leases {
		if err := im.importLease(ctx, l); err != nil {
			return err
		}
		f.Leases = append(f.Leases, &pb.LeaseStatus{ID: l.ID})
	}
	if _, err := im.call(ctx, "Finish", f, -1); err != nil {
		return err
	}
	im.sum.Finished = true
	return nil
}

// fromSource runs one call to the source within the call timeout.
func fromSource[T any](im *importer, ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, im.cfg.CallTimeout)
	defer cancel()
	return call(ctx)
}

// sourceHead reads the source's cluster ID and revision.
func (im *importer) sourceHead(ctx context.Context) (uint64, int64, error) {
	cctx, cancel := context.WithTimeout(ctx, im.cfg.CallTimeout)
	defer cancel()
	id, rev, err := im.cfg.Source.Head(cctx)
	if err != nil {
		return 0, 0, im.sourceErr(err)
	}
	if rev > im.head.Load() {
		im.head.Store(rev)
	}
	return id, rev, nil
}

// sourceErr says that an error came from etcd.
func (im *importer) sourceErr(err error) error {
	if errors.Is(err, ErrCompacted) || errors.Is(err, context.Canceled) {
		return err
	}
	if status.Code(err) == codes.Canceled {
		return context.Canceled
	}
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded {
		return fmt.Errorf("%w etcd: %v", ErrUnreachable, err)
	}
	return fmt.Errorf("etcd: %w", err)
}

// status asks the target's import service where it stands.
func (im *importer) status(ctx context.Context) (*pb.ResponseHeader, error) {
	cctx, cancel := context.WithTimeout(ctx, im.cfg.CallTimeout)
	defer cancel()
	h := &pb.ResponseHeader{}
	if err := im.cfg.Target.Invoke(cctx, "/"+rpc.ImportService+"/Status", &pb.StatusRequest{}, h); err != nil {
		return nil, targetErr(err)
	}
	return h, nil
}

// call sends one import entry. A call whose outcome is unknown (a leader
// change, a timeout) is retried, unless the target's revision shows it
// applied (upTo: the revision it moves the target to, -1 for an entry that
// may be sent twice).
func (im *importer) call(ctx context.Context, method string, req any, upTo int64) (*pb.ResponseHeader, error) {
	deadline := time.Now().Add(2 * im.cfg.CallTimeout)
	backoff := 50 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, im.cfg.CallTimeout)
		h := &pb.ResponseHeader{}
		err := im.cfg.Target.Invoke(cctx, "/"+rpc.ImportService+"/"+method, req, h)
		cancel()
		if err == nil {
			return h, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, targetErr(err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		if upTo >= 0 {
			if st, serr := im.status(ctx); serr == nil && st.Revision >= upTo {
				return st, nil
			}
		}
	}
}

// retryable reports an error after which the entry may or may not have
// been applied, or was not sent: the leader changed or could not be
// reached in time.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	switch rpctypes.ErrorDesc(err) {
	case rpctypes.ErrLeaderChanged.Error(), rpctypes.ErrTimeout.Error(), rpctypes.ErrNoLeader.Error(), rpctypes.ErrNotLeader.Error():
		return true
	}
	return false
}

// targetErr says that an error came from the target.
func targetErr(err error) error {
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return context.Canceled
	}
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("target: the cluster does not serve imports (a release before v0.2.0, or not etcdsql): %w", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded {
		return fmt.Errorf("%w the target cluster: %v", ErrUnreachable, err)
	}
	return fmt.Errorf("target: %s", rpctypes.ErrorDesc(err))
}

// progress rewrites one line: keys and revisions copied, rate, lag.
func (im *importer) progress(ctx context.Context) {
	t := time.NewTicker(im.cfg.ProgressEvery)
	defer t.Stop()
	lastN, last := int64(0), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if _, _, err := im.sourceHead(ctx); err != nil {
				continue
			}
			n := im.keys.Load() + im.revs.Load()
			rate := float64(n-lastN) / now.Sub(last).Seconds()
			lastN, last = n, now
			fmt.Fprintf(im.cfg.Progress, "\r\033[Kimport: %d keys, %d revisions, revision %d, %.0f/s, %d behind etcd",
				im.keys.Load(), im.revs.Load(), im.rev.Load(), rate, max(im.head.Load()-im.rev.Load(), 0))
		}
	}
}
