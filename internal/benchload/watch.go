package benchload

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// gogoCodec encodes etcd's messages with their generated code: thousands
// of watchers share the machine's cores with the servers, and protobuf
// reflection would make the client the bottleneck.
type gogoCodec struct{}

func (gogoCodec) Name() string { return "proto" }

func (gogoCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := v.(interface{ Marshal() ([]byte, error) }).Marshal()
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (gogoCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return v.(interface{ Unmarshal([]byte) error }).Unmarshal(data.Materialize())
}

// rawWatchResponse reads only what the loads need from a WatchResponse
// (created, and for each event whether it is a delete, and a put's value
// or a delete's key), without building the
// message: the client's decoding would otherwise take half the machine.
type rawWatchResponse struct {
	created bool
	values  [][]byte
	deletes []bool
}

func (r *rawWatchResponse) Unmarshal(b []byte) error {
	r.created, r.values, r.deletes = false, r.values[:0], r.deletes[:0]
	return walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 3 && typ == protowire.VarintType:
			r.created = x != 0
		case num == 11 && typ == protowire.BytesType: // events
			del, kv := false, []byte(nil)
			err := walkFields(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
				switch {
				case num == 1 && typ == protowire.VarintType: // type
					del = x == 1
				case num == 2 && typ == protowire.BytesType: // kv
					kv = v
				}
				return nil
			})
			var val []byte
			if err == nil {
				err = walkFields(kv, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
					if (num == 1 && del) || (num == 5 && !del) { // a delete's key, a put's value
						val = v
					}
					return nil
				})
			}
			r.values = append(r.values, val)
			r.deletes = append(r.deletes, del)
			return err
		}
		return nil
	})
}

func walkFields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err := f(num, typ, v, x); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// watchStream is one Watch stream of its own connection, with n watchers
// of [key, end); events go to onEvent(now, isDelete, value or key).
type watchStream struct {
	c      *clientv3.Client
	stream grpc.ClientStream
}

func openWatchStream(ctx context.Context, endpoint, key, end string, n int) (*watchStream, error) {
	c, err := Dial(endpoint)
	if err != nil {
		return nil, err
	}
	s, err := c.ActiveConnection().NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		"/etcdserverpb.Watch/Watch", grpc.ForceCodecV2(gogoCodec{}))
	if err != nil {
		c.Close()
		return nil, err
	}
	for range n {
		req := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
			Key: []byte(key), RangeEnd: []byte(end)}}}
		var resp rawWatchResponse
		if err := s.SendMsg(req); err == nil {
			err = s.RecvMsg(&resp)
		}
		if err != nil || !resp.created {
			c.Close()
			return nil, fmt.Errorf("watch create on %s: %v", endpoint, err)
		}
	}
	return &watchStream{c: c, stream: s}, nil
}

// receive calls onEvent for each event until it returns false or the
// stream ends.
func (w *watchStream) receive(onEvent func(now time.Time, del bool, v []byte) bool) {
	var resp rawWatchResponse
	for {
		if err := w.stream.RecvMsg(&resp); err != nil {
			return
		}
		now := time.Now()
		for i, v := range resp.values {
			if !onEvent(now, resp.deletes[i], v) {
				return
			}
		}
	}
}

// WatchLoad is put → event latency: Watchers watchers on each endpoint
// (streams of PerStream, 100 if zero, each stream on its own connection,
// as gateways have), and Puts puts of one key paced at Rate per second,
// each value carrying its send time.
type WatchLoad struct {
	Endpoints []string
	Watchers  int
	PerStream int
	Puts      int
	Rate      int
	// Ready, if set, is called when the watchers are open, before the
	// first put (benchmarks start their clocks and profiles there).
	Ready func()
}

// WatchLatency runs the load. It returns the latency of every delivery
// and the puts' own.
func WatchLatency(ctx context.Context, l WatchLoad) (events, puts Result, err error) {
	per := l.PerStream
	if per <= 0 {
		per = 100
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(l.Puts)*time.Second/time.Duration(l.Rate)+time.Minute)
	defer cancel()
	var streams []*watchStream
	defer func() {
		for _, s := range streams {
			s.c.Close()
		}
	}()
	for _, ep := range l.Endpoints {
		for left := l.Watchers; left > 0; left -= per {
			s, err := openWatchStream(ctx, ep, "/bench/watch/", "/bench/watch0", min(per, left))
			if err != nil {
				return Result{}, Result{}, err
			}
			streams = append(streams, s)
		}
	}
	want := int64(l.Puts * l.Watchers * len(l.Endpoints))
	lats := make([][]time.Duration, len(streams))
	var got atomic.Int64
	all := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.receive(func(now time.Time, _ bool, v []byte) bool {
				ns, _ := strconv.ParseInt(string(v), 10, 64)
				lats[i] = append(lats[i], now.Sub(time.Unix(0, ns)))
				if got.Add(1) == want {
					close(all)
				}
				return true
			})
		}()
	}
	writer, err := Dial(l.Endpoints...)
	if err != nil {
		return Result{}, Result{}, err
	}
	defer writer.Close()
	if l.Ready != nil {
		l.Ready()
	}
	putLat := make([]time.Duration, 0, l.Puts)
	start := time.Now()
	for i := range l.Puts {
		t0 := time.Now()
		if _, err := writer.Put(ctx, "/bench/watch/k", strconv.FormatInt(t0.UnixNano(), 10)); err != nil {
			return Result{}, Result{}, err
		}
		putLat = append(putLat, time.Since(t0))
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * time.Second / time.Duration(l.Rate))))
	}
	puts = result(l.Puts, time.Since(start), putLat)
	select {
	case <-all:
	case <-time.After(30 * time.Second):
	}
	for _, s := range streams {
		s.c.Close()
	}
	wg.Wait()
	events = result(l.Puts, puts.Elapsed, lats...)
	if int64(len(events.Lat)) != want {
		return events, puts, fmt.Errorf("%d of %d events delivered within 30 s of the last put", len(events.Lat), want)
	}
	return events, puts, nil
}
