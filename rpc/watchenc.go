package rpc

import (
	"encoding/binary"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// encodedMessage is a message already in protobuf wire form; the codec
// sends its bytes as they are.
type encodedMessage []byte

// Field tags of etcdserverpb.WatchResponse used by the encoder.
const (
	tagWatchHeader  = 1<<3 | 2 // header, length-delimited
	tagWatchID      = 2<<3 | 0 // watch_id, varint
	tagWatchEventsN = 11<<3 | 2
)

// watchEncoder writes the event messages of one flush. Under fan-out many
// watchers get the same events with the same header: each part is encoded
// once (by the generated code) and the messages, which differ only in
// watch_id, are assembled in one arena instead of one allocation each.
type watchEncoder struct {
	arena []byte
	ends  []int
	// expect is how many messages the flush will add: the arena is sized
	// for them at the first one, instead of growing by doubling.
	expect int

	hdr    *pb.ResponseHeader
	hdrEnc []byte

	evs    []*mvccpb.Event
	evsEnc []byte
}

// reset starts a flush of about n messages.
func (e *watchEncoder) reset(n int) {
	e.arena, e.ends, e.hdr, e.hdrEnc, e.evs, e.evsEnc = e.arena[:0], e.ends[:0], nil, nil, nil, nil
	e.expect = n
}

func sameEvents(a, b []*mvccpb.Event) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// add appends one WatchResponse{Header: hdr, WatchId: id, Events: evs}.
func (e *watchEncoder) add(hdr *pb.ResponseHeader, id int64, evs []*mvccpb.Event) error {
	if hdr != e.hdr {
		b, err := hdr.Marshal()
		if err != nil {
			return err
		}
		e.hdr, e.hdrEnc = hdr, b
	}
	if !sameEvents(evs, e.evs) {
		var b []byte
		for _, ev := range evs {
			eb, err := ev.Marshal()
			if err != nil {
				return err
			}
			b = binary.AppendUvarint(append(b, tagWatchEventsN), uint64(len(eb)))
			b = append(b, eb...)
		}
		e.evs, e.evsEnc = evs, b
	}
	if cap(e.arena) == 0 {
		size := 2*binary.MaxVarintLen64 + 2 + len(e.hdrEnc) + len(e.evsEnc)
		e.arena = make([]byte, 0, max(e.expect-len(e.ends), 1)*size)
	}
	e.arena = binary.AppendUvarint(append(e.arena, tagWatchHeader), uint64(len(e.hdrEnc)))
	e.arena = append(e.arena, e.hdrEnc...)
	if id != 0 {
		e.arena = binary.AppendUvarint(append(e.arena, tagWatchID), uint64(id))
	}
	e.arena = append(e.arena, e.evsEnc...)
	e.ends = append(e.ends, len(e.arena))
	return nil
}

// messages returns the assembled messages; they share the arena, which the
// encoder gives up (gRPC may still be writing them after the sends).
func (e *watchEncoder) messages() []encodedMessage {
	out := make([]encodedMessage, len(e.ends))
	start := 0
	for i, end := range e.ends {
		out[i] = encodedMessage(e.arena[start:end:end])
		start = end
	}
	e.arena = nil
	return out
}
