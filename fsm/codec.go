package fsm

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Envelope versions. Version 1 (release v0.1.0's): one byte, then an
// etcdserverpb.InternalRaftRequest with exactly one request set. Version 2
// (an import's entries, importentry.go): one byte, the ImportKind, then the
// etcd message that kind carries. etcd's InternalRaftRequest has no request
// for "this key, with these revisions", so an import cannot be a version 1
// entry; version 1 bytes stay exactly as they were.
const (
	entryVersion1 byte = 1
	entryVersion2 byte = 2
)

// Encode wraps one request in the versioned envelope that raft replicates.
func Encode(r *pb.InternalRaftRequest) ([]byte, error) {
	n := r.Size()
	buf := make([]byte, 1+n)
	buf[0] = entryVersion1
	if _, err := r.MarshalTo(buf[1:]); err != nil {
		return nil, fmt.Errorf("fsm: encode entry: %w", err)
	}
	return buf, nil
}

// Decode is the inverse of Encode: it decodes a version 1 entry.
func Decode(data []byte) (*pb.InternalRaftRequest, error) {
	r, imp, err := decodeEntry(data)
	if err == nil && imp != nil {
		return nil, fmt.Errorf("fsm: decode entry: an import entry (version %d)", entryVersion2)
	}
	return r, err
}

// decodeEntry decodes an entry of either envelope version: exactly one of
// the two results is set when err is nil.
func decodeEntry(data []byte) (*pb.InternalRaftRequest, *ImportEntry, error) {
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("fsm: decode entry: empty")
	}
	switch data[0] {
	case entryVersion1:
		r := &pb.InternalRaftRequest{}
		if err := r.Unmarshal(data[1:]); err != nil {
			return nil, nil, fmt.Errorf("fsm: decode entry: %w", err)
		}
		return r, nil, nil
	case entryVersion2:
		e, err := decodeImport(data[1:])
		if err != nil {
			return nil, nil, fmt.Errorf("fsm: decode entry: %w", err)
		}
		return nil, e, nil
	}
	return nil, nil, fmt.Errorf("fsm: decode entry: unknown envelope version %d", data[0])
}
