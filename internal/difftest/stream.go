package difftest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamBuffer is how many unread messages a stream holds before its reader
// goroutine blocks.
const streamBuffer = 64

// streamItem is one message, or the end of the stream when end is set.
type streamItem struct {
	msg any
	end string
}

// Until decides, from the messages read so far, that a Collect may stop.
type Until struct {
	desc string
	done func(msgs []any) bool
}

// Msgs stops once n messages have been read.
func Msgs(n int) Until {
	return Until{
		desc: fmt.Sprintf("%d messages", n),
		done: func(msgs []any) bool { return len(msgs) >= n },
	}
}

// Events stops once the messages read carry n events in total. Gateway
// messages are unwrapped from {"result":...} first.
func Events(n int) Until {
	return Until{
		desc: fmt.Sprintf("%d events", n),
		done: func(msgs []any) bool { return countEvents(msgs) >= n },
	}
}

func countEvents(msgs []any) int {
	n := 0
	for _, m := range msgs {
		if evs, ok := Lookup(unwrapResult(m), "events"); ok {
			if a, ok := evs.([]any); ok {
				n += len(a)
			}
		}
	}
	return n
}

// unwrapResult returns m["result"] for a gateway stream message, else m.
func unwrapResult(m any) any {
	if r, ok := Lookup(m, "result"); ok {
		return r
	}
	return m
}

// Stream reads a watch-like stream (gateway chunks, a gRPC stream or a
// clientv3 watch channel) in a background goroutine and hands out its
// messages in bounded windows. It is used by one case goroutine only.
type Stream struct {
	// Opened is the observation of the gateway's response head (status and
	// transfer encoding); nil for gRPC streams.
	Opened *Obs

	conn   *Conn
	items  chan streamItem
	cancel context.CancelFunc
	send   func(*pb.WatchRequest) error
	end    string
	closed bool
}

func newStream(c *Conn, cancel context.CancelFunc) *Stream {
	s := &Stream{conn: c, items: make(chan streamItem, streamBuffer), cancel: cancel}
	c.streams = append(c.streams, s)
	return s
}

// Collect reads until cond holds, the stream ends, or wait elapses, and
// records the messages as one observation {"messages":[...]} (plus
// "end" when the stream ended). Not reaching cond is an expectation failure.
func (s *Stream) Collect(label string, cond Until, wait time.Duration) *Obs {
	msgs := s.read(wait, cond.done)
	o := s.record(label, msgs)
	s.conn.Check(cond.done(msgs), "%s: wanted %s within %v, got %d message(s): %s",
		label, cond.desc, wait, len(msgs), Compact(o.Value))
	return o
}

// Tally reads until n messages arrived, the stream ends, or wait elapses,
// and records only a summary, for streams too long to compare message by
// message: how many messages came, how many were "created" replies, and
// whether those carried the watch IDs 0, 1, 2, ... in order.
func (s *Stream) Tally(label string, n int, wait time.Duration) *Obs {
	msgs := s.read(wait, func(m []any) bool { return len(m) >= n })
	created, inOrder := 0, true
	for _, m := range msgs {
		r := unwrapResult(m)
		if c, _ := Lookup(r, "created"); c != true {
			continue
		}
		id, ok := Lookup(r, "watch_id")
		if !ok {
			id = "0"
		}
		inOrder = inOrder && fmt.Sprint(id) == fmt.Sprint(created)
		created++
	}
	v := map[string]any{"messages": len(msgs), "created": created, "ids_in_order": inOrder}
	if s.end != "" {
		v["end"] = s.end
	}
	o := s.conn.Record(label, v)
	s.conn.Check(len(msgs) >= n, "%s: wanted %d messages within %v, got %d", label, n, wait, len(msgs))
	return o
}

// Quiet reads everything that arrives within d and records it; cases use it
// to show that nothing (more) arrives.
func (s *Stream) Quiet(label string, d time.Duration) *Obs {
	return s.record(label, s.read(d, func([]any) bool { return false }))
}

// Send writes one more request on a gRPC watch stream.
func (s *Stream) Send(req *pb.WatchRequest) {
	if s.send == nil {
		s.conn.Fatalf("stream: Send on a stream without a request side")
	}
	if err := s.send(req); err != nil {
		s.conn.Fatalf("stream: send %v: %v", req, err)
	}
}

func (s *Stream) read(wait time.Duration, stop func([]any) bool) []any {
	msgs := []any{}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for s.end == "" && !stop(msgs) {
		select {
		case it, ok := <-s.items:
			switch {
			case !ok:
				s.end = "closed"
			case it.end != "":
				s.end = it.end
			default:
				msgs = append(msgs, maskHeaders(it.msg))
			}
		case <-timer.C:
			return msgs
		case <-s.conn.Ctx.Done():
			s.conn.Fatalf("stream read: %v", s.conn.Ctx.Err())
		}
	}
	return msgs
}

func (s *Stream) record(label string, msgs []any) *Obs {
	v := map[string]any{"messages": msgs}
	if s.end != "" {
		v["end"] = s.end
	}
	return s.conn.Record(label, v)
}

// Close ends the stream (a TCP close for the gateway, a cancel for gRPC)
// and waits for its reader goroutine.
func (s *Stream) Close() {
	if s.closed {
		return
	}
	s.closed = true
	s.cancel()
	for range s.items {
	}
}

// WatchHTTP POSTs the body parts (see EncodeBodies) to /v3/watch and
// returns the stream of newline-delimited JSON messages. The response status
// (and transfer encoding) is recorded under label; a non-200 reply is recorded with its body and
// yields an already ended stream.
func (c *Conn) WatchHTTP(label string, parts ...any) *Stream {
	body, err := EncodeBodies(parts...)
	if err != nil {
		c.Fatalf("%s: %v", label, err)
	}
	ctx, cancel := context.WithCancel(c.Ctx)
	s := newStream(c, cancel)
	resp, err := c.HTTP.OpenStream(ctx, "/v3/watch", body)
	if err != nil {
		cancel()
		close(s.items)
		c.Fatalf("%s: %v", label, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
		resp.Body.Close()
		s.Opened = c.Record(label, replyValue(Reply{Status: resp.StatusCode, Body: b}))
		close(s.items)
		return s
	}
	// The framing matters to lua-resty-etcd: a chunked body whose messages
	// each end in a newline.
	s.Opened = c.Record(label, map[string]any{
		"status":            json.Number("200"),
		"transfer_encoding": strings.Join(resp.TransferEncoding, ","),
	})
	go readLines(resp.Body, s.items)
	return s
}

// readLines splits a gateway stream into newline-terminated JSON messages.
// Blank lines, non-JSON lines and a final unterminated fragment are turned
// into marker objects so that they show up in the comparison.
func readLines(body io.ReadCloser, out chan<- streamItem) {
	defer close(out)
	defer body.Close()
	rd := bufio.NewReader(body)
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 {
			out <- streamItem{msg: lineMessage(line)}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				out <- streamItem{end: "EOF"}
			} else {
				out <- streamItem{end: "read error"}
			}
			return
		}
	}
}

func lineMessage(line []byte) any {
	if !bytes.HasSuffix(line, []byte("\n")) {
		return map[string]any{"unterminated_line": string(line)}
	}
	trimmed := bytes.TrimSuffix(line, []byte("\n"))
	if len(bytes.TrimSpace(trimmed)) == 0 {
		return map[string]any{"blank_line": string(trimmed)}
	}
	v, err := ParseJSON(trimmed)
	if err != nil {
		return map[string]any{"non_json_line": string(trimmed)}
	}
	return v
}

// WatchGRPC opens a raw etcdserverpb Watch stream on the client's connection
// and sends reqs on it. Messages are the protobuf responses in JSON form.
func (c *Conn) WatchGRPC(reqs ...*pb.WatchRequest) *Stream {
	ctx, cancel := context.WithCancel(c.Ctx)
	s := newStream(c, cancel)
	wc, err := pb.NewWatchClient(c.Client.ActiveConnection()).Watch(ctx)
	if err != nil {
		cancel()
		close(s.items)
		c.Fatalf("open gRPC watch: %v", err)
	}
	s.send = wc.Send
	go func() {
		defer close(s.items)
		for {
			resp, err := wc.Recv()
			if err != nil {
				s.items <- streamItem{end: grpcEnd(err)}
				return
			}
			v, err := protoToGeneric(resp)
			if err != nil {
				s.items <- streamItem{end: err.Error()}
				return
			}
			s.items <- streamItem{msg: v}
		}
	}()
	for _, r := range reqs {
		s.Send(r)
	}
	return s
}

func grpcEnd(err error) string {
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	st, _ := status.FromError(err)
	if st.Code() == codes.Canceled {
		return "canceled"
	}
	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}

// WatchClient watches through clientv3's Watcher (with created
// notifications) and converts every WatchResponse to the protobuf JSON form,
// adding "client_err" when the response carries an error.
func (c *Conn) WatchClient(key string, opts ...clientv3.OpOption) *Stream {
	ctx, cancel := context.WithCancel(c.Ctx)
	s := newStream(c, cancel)
	opts = append(opts, clientv3.WithCreatedNotify())
	ch := c.Client.Watch(ctx, key, opts...)
	go func() {
		defer close(s.items)
		for wr := range ch {
			v, err := watchResponseValue(wr)
			if err != nil {
				s.items <- streamItem{end: err.Error()}
				return
			}
			s.items <- streamItem{msg: v}
		}
		s.items <- streamItem{end: "closed"}
	}()
	return s
}

func watchResponseValue(wr clientv3.WatchResponse) (any, error) {
	hdr := wr.Header
	msg := &pb.WatchResponse{
		Header:          &hdr,
		CompactRevision: wr.CompactRevision,
		Canceled:        wr.Canceled,
		Created:         wr.Created,
	}
	for _, ev := range wr.Events {
		msg.Events = append(msg.Events, (*mvccpb.Event)(ev))
	}
	v, err := protoToGeneric(msg)
	if err != nil {
		return nil, err
	}
	if err := wr.Err(); err != nil {
		v.(map[string]any)["client_err"] = err.Error()
	}
	return v, nil
}
