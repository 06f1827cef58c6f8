package fsm

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// entryVersion1 is the only envelope version so far: one byte, then an
// etcdserverpb.InternalRaftRequest with exactly one request set.
const entryVersion1 byte = 1

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

// Decode is the inverse of Encode.
func Decode(data []byte) (*pb.InternalRaftRequest, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("fsm: decode entry: empty")
	}
	if data[0] != entryVersion1 {
		return nil, fmt.Errorf("fsm: decode entry: unknown envelope version %d", data[0])
	}
	r := &pb.InternalRaftRequest{}
	if err := r.Unmarshal(data[1:]); err != nil {
		return nil, fmt.Errorf("fsm: decode entry: %w", err)
	}
	return r, nil
}
