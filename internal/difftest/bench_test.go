package difftest

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// deepOverlapTxn is fsm's benchmark request, built here again for the
// servers: nested transactions with 13,500 point deletes and 13,500
// puts, the first half of the request only deletes and the second only
// puts, then one more put of a key already put (707 KB, 27,000 leaves).
func deepOverlapTxn() *pb.TxnRequest {
	const fan = 30
	id := 0
	op := func(del bool) *pb.RequestOp {
		defer func() { id++ }()
		if del {
			return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: fmt.Appendf(nil, "deleted/%012d", id)}}}
		}
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: fmt.Appendf(nil, "written/%012d", id)}}}
	}
	txn := func(ops []*pb.RequestOp) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: ops}}}
	}
	top := make([]*pb.RequestOp, 0, fan+1)
	for i := 0; i < fan; i++ {
		mid := make([]*pb.RequestOp, 0, fan)
		for j := 0; j < fan; j++ {
			leaf := make([]*pb.RequestOp, 0, fan)
			for k := 0; k < fan; k++ {
				leaf = append(leaf, op(i < fan/2))
			}
			mid = append(mid, txn(leaf))
		}
		top = append(top, txn(mid))
	}
	id--
	top = append(top, op(false))
	return &pb.TxnRequest{Success: top}
}

// BenchmarkDeepOverlapTxnRefused times, end to end over gRPC, how long a
// real etcd 3.4 and etcdsql take to refuse deepOverlapTxn as a duplicate.
func BenchmarkDeepOverlapTxnRefused(b *testing.B) {
	for _, srv := range []struct {
		name  string
		start func(testing.TB) string
	}{
		{"etcd", StartEtcd},
		{"etcdsql", func(t testing.TB) string { return testserver.Start(t).URL }},
	} {
		b.Run(srv.name, func(b *testing.B) {
			c := testserver.NewClient(b, srv.start(b))
			kv := pb.NewKVClient(c.ActiveConnection())
			r := deepOverlapTxn()
			b.SetBytes(int64(r.Size()))
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := kv.Txn(ctx, r)
				cancel()
				if status.Convert(err).Message() != status.Convert(rpctypes.ErrGRPCDuplicateKey).Message() {
					b.Fatalf("want the duplicate key error, got %v", err)
				}
			}
		})
	}
}
