package rpc

import (
	"context"
	"errors"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdsql/etcdsql/fsm"
)

type watchServer struct {
	pb.UnimplementedWatchServer
	s       *Server
	gateway bool // the HTTP gateway's server: see streamEnd
}

// watchOpts are the per-watcher options the stream, not the store, acts on.
type watchOpts struct {
	progressNotify bool
	fragment       bool
	// sentSinceTick is set when events went out since the last progress
	// tick; a watcher only gets a progress notification after a quiet tick.
	sentSinceTick bool
}

// Watch runs one watch stream. A receiver goroutine hands requests to this
// goroutine, which alone owns the stream's watchers and sends every reply,
// so replies for one watcher keep their order. The stream lives until the
// client goes away: a client that half-closes (as every HTTP gateway
// client does after its one request) keeps receiving events. A draining
// member ends it (see streamEnd), and refuses new ones the same way.
func (w *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ctx := stream.Context()
	select {
	case <-w.s.stopStreams:
		return streamEnd(w.gateway)
	default:
	}
	requireLeader := requiresLeader(ctx)
	if requireLeader && !w.leaderKnown(ctx) {
		return rpctypes.ErrGRPCNoLeader
	}
	ws := w.s.b.NewWatchStream()
	w.s.metrics.watchStreams.Inc()
	defer w.s.metrics.watchStreams.Dec()
	defer func() { w.s.metrics.watchers.Sub(float64(ws.Len())) }()

	reqs := make(chan *pb.WatchRequest, 16)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	st := &watchStream{srv: w.s, ctx: ctx, stream: stream, ws: ws, opts: make(map[int64]*watchOpts)}
	tick := time.NewTicker(w.s.cfg.WatchProgressNotifyInterval)
	defer tick.Stop()
	var leaderCheck <-chan time.Time
	var leaderLost time.Time
	if requireLeader {
		t := time.NewTicker(leaderCheckInterval(w.s.cfg.LeaderLossTimeout))
		defer t.Stop()
		leaderCheck = t.C
	}
	for {
		select {
		case <-leaderCheck:
			switch {
			case w.s.b.Healthy() == nil:
				leaderLost = time.Time{}
			case leaderLost.IsZero():
				leaderLost = time.Now()
			case time.Since(leaderLost) >= w.s.cfg.LeaderLossTimeout:
				return rpctypes.ErrGRPCNoLeader
			}
			continue
		case req := <-reqs:
			if err := st.handle(req); err != nil {
				return err
			}
		case err := <-st.barrier:
			st.barrier = nil
			if err != nil {
				st.retry = time.After(100 * time.Millisecond)
				continue
			}
			if err := st.createPending(); err != nil {
				return err
			}
		case <-st.retry:
			st.retry = nil
			st.startBarrier()
			continue
		case <-ws.Ready():
		case <-tick.C:
			if err := st.progressTick(); err != nil {
				return err
			}
			continue
		case err := <-recvErr:
			w.s.log.Debug("watch stream closed by client", "err", err)
			return nil
		case <-ctx.Done():
			return nil
		case <-w.s.stopStreams:
			return streamEnd(w.gateway)
		}
		if _, err := st.flush(); err != nil {
			return err
		}
	}
}

type watchStream struct {
	srv    *Server
	ctx    context.Context
	authAt time.Time // when the stream's token was first accepted (watchAllowed)
	stream pb.Watch_WatchServer
	ws     *fsm.WatchStream
	opts   map[int64]*watchOpts
	enc    watchEncoder

	// Creates wait, in order, for a read barrier: one from a revision
	// beyond this member's learns whether the member lags the cluster (it
	// then has caught up) or the revision is in the future (etcd accepts
	// such a watch at once), so a watch reopened on a lagging member never
	// starts with a header revision below what its client has seen; one
	// from the current revision starts after every write acknowledged
	// before it, on whichever member; one from a past revision sees every
	// compaction acknowledged before it. The requests that come after a
	// waiting create (cancels, progress requests, other creates) wait
	// behind it, so the stream answers them in the order they were sent.
	pending []*pb.WatchRequest
	barrier chan error       // the barrier in flight, or nil
	retry   <-chan time.Time // a failed barrier's retry, or nil
}

// startBarrier runs a read barrier for the pending creates.
func (st *watchStream) startBarrier() {
	if st.barrier != nil || st.retry != nil {
		return
	}
	ch := make(chan error, 1)
	st.barrier = ch
	go func() {
		ctx, cancel := context.WithTimeout(st.ctx, 5*time.Second)
		defer cancel()
		ch <- st.srv.b.ReadBarrier(ctx)
	}()
}

// createPending answers the requests that waited for the barrier, in
// order: the creates at once, the others as they would have been.
func (st *watchStream) createPending() error {
	pending := st.pending
	st.pending = nil
	for _, req := range pending {
		var err error
		if cr := req.GetCreateRequest(); cr != nil {
			err = st.createNow(cr)
		} else {
			err = st.handle(req)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (st *watchStream) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: st.srv.b.ClusterID(), MemberId: st.srv.b.MemberID(), RaftTerm: st.srv.b.Term(), Revision: rev}
}

func (st *watchStream) send(r *pb.WatchResponse) error {
	if err := st.stream.Send(r); err != nil {
		st.srv.log.Debug("watch send failed", "err", err)
		return err
	}
	return nil
}

func (st *watchStream) handle(req *pb.WatchRequest) error {
	if len(st.pending) > 0 {
		st.pending = append(st.pending, req)
		return nil
	}
	switch v := req.RequestUnion.(type) {
	case *pb.WatchRequest_CreateRequest:
		return st.create(req, v.CreateRequest)
	case *pb.WatchRequest_CancelRequest:
		id := v.CancelRequest.WatchId
		if err := st.ws.Cancel(id); err != nil {
			return nil // etcd says nothing about an unknown watch ID
		}
		delete(st.opts, id)
		st.srv.metrics.watchers.Dec()
		return st.send(&pb.WatchResponse{Header: st.header(st.srv.b.Rev()), WatchId: id, Canceled: true})
	case *pb.WatchRequest_ProgressRequest:
		// A barrier: the notification goes out once every watcher has
		// been sent everything up to the revision it reports, catching
		// up first where one is behind (as etcd defers it until its
		// watchers are synced).
		asked := st.srv.b.Rev()
		for {
			rev, err := st.flush()
			if err != nil {
				return err
			}
			if rev >= asked {
				return st.send(&pb.WatchResponse{Header: st.header(rev), WatchId: -1})
			}
			if err := st.stream.Context().Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// create queues a create behind a read barrier (see pending). Only a
// create from the very next revision needs none: it can miss nothing.
func (st *watchStream) create(req *pb.WatchRequest, cr *pb.WatchCreateRequest) error {
	if cr == nil {
		return nil
	}
	if cr.StartRevision == st.srv.b.Rev()+1 {
		return st.createNow(cr)
	}
	st.pending = append(st.pending, req)
	st.startBarrier()
	return nil
}

func (st *watchStream) createNow(cr *pb.WatchCreateRequest) error {
	key := cr.Key
	if len(key) == 0 {
		key = []byte{0}
	}
	if !st.srv.watchAllowed(st.ctx, key, cr.RangeEnd, &st.authAt) {
		return st.send(&pb.WatchResponse{Header: st.header(st.srv.b.Rev()), WatchId: -1, Created: true, Canceled: true, CancelReason: errWatchDenied})
	}
	req := fsm.WatchRequest{ID: cr.WatchId, Key: key, RangeEnd: cr.RangeEnd, StartRev: cr.StartRevision, PrevKV: cr.PrevKv}
	for _, f := range cr.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			req.NoPut = true
		case pb.WatchCreateRequest_NODELETE:
			req.NoDelete = true
		}
	}
	id, rev, err := st.ws.Watch(req)
	// A watcher that starts far behind catches up over several messages,
	// each headed by the highest revision it completes. Its created
	// message then says where it starts from rather than the current
	// revision, so headers along the stream never go down.
	if cr.StartRevision > 0 && rev-(cr.StartRevision-1) >= fsm.MaxBatchRevs {
		rev = cr.StartRevision - 1
	}
	resp := &pb.WatchResponse{Header: st.header(rev), WatchId: id, Created: true}
	if err != nil {
		resp.Canceled = true
		resp.CancelReason = err.Error()
	} else {
		st.opts[id] = &watchOpts{progressNotify: cr.ProgressNotify, fragment: cr.Fragment}
		st.srv.metrics.watchers.Inc()
	}
	return st.send(resp)
}

// flush sends whatever the store has for the stream's watchers and returns
// the revision every watcher has now been sent up to.
func (st *watchStream) flush() (int64, error) {
	resps, rev := st.ws.Collect()
	// Responses of one flush mostly share a revision: share their header
	// too (it is only read while encoding).
	var hdr *pb.ResponseHeader
	st.enc.reset(len(resps))
	for _, r := range resps {
		o := st.opts[r.WatchID]
		if r.CompactRevision != 0 {
			delete(st.opts, r.WatchID)
			st.srv.metrics.watchers.Dec()
			st.srv.metrics.compactedWatchers.Inc()
			if err := st.sendEncoded(); err != nil {
				return 0, err
			}
			if err := st.send(&pb.WatchResponse{Header: st.header(0), WatchId: r.WatchID, Canceled: true, CompactRevision: r.CompactRevision}); err != nil {
				return 0, err
			}
			continue
		}
		if o != nil {
			o.sentSinceTick = true
		}
		st.srv.metrics.eventsSent.Add(float64(len(r.Events)))
		if hdr == nil || hdr.Revision != r.Revision {
			hdr = st.header(r.Revision)
		}
		if o != nil && o.fragment {
			if err := st.sendEncoded(); err != nil {
				return 0, err
			}
			wr := &pb.WatchResponse{Header: hdr, WatchId: r.WatchID, Events: r.Events}
			if err := sendFragments(wr, st.srv.cfg.MaxRequestBytes, st.send); err != nil {
				return 0, err
			}
			continue
		}
		if err := st.enc.add(hdr, r.WatchID, r.Events); err != nil {
			return 0, err
		}
	}
	return rev, st.sendEncoded()
}

// sendEncoded sends the messages assembled so far, in order.
func (st *watchStream) sendEncoded() error {
	for _, m := range st.enc.messages() {
		if err := st.stream.SendMsg(m); err != nil {
			st.srv.log.Debug("watch send failed", "err", err)
			return err
		}
	}
	st.enc.reset(st.enc.expect - len(st.enc.ends))
	return nil
}

// progressTick sends a progress notification to every watcher that asked
// for them, is caught up, and got nothing during the last interval.
func (st *watchStream) progressTick() error {
	rev, err := st.flush()
	if err != nil {
		return err
	}
	for id, o := range st.opts {
		if !o.progressNotify {
			continue
		}
		if !o.sentSinceTick && st.ws.Synced(id, rev) {
			if err := st.send(&pb.WatchResponse{Header: st.header(rev), WatchId: id}); err != nil {
				return err
			}
		}
		o.sentSinceTick = false
	}
	return nil
}

// sendFragments splits a response larger than limit into messages of at
// least one event each, all but the last marked as fragments.
func sendFragments(wr *pb.WatchResponse, limit int, send func(*pb.WatchResponse) error) error {
	if len(wr.Events) < 2 || wr.Size() < limit {
		return send(wr)
	}
	rest := wr.Events
	for len(rest) > 0 {
		part := *wr
		part.Events = []*mvccpb.Event{rest[0]}
		n := 1
		for ; n < len(rest); n++ {
			part.Events = rest[:n+1]
			if part.Size() >= limit {
				part.Events = rest[:n]
				break
			}
		}
		rest = rest[len(part.Events):]
		part.Fragment = len(rest) > 0
		if err := send(&part); err != nil {
			return err
		}
	}
	return nil
}
