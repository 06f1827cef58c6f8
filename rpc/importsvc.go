package rpc

import (
	"context"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/etcdsql/etcdsql/fsm"
)

// The import service on the client port: what `etcdsql import` calls to
// move an etcd cluster's data in with its revisions. Each method carries
// one of etcd's messages, the one its import entry replicates (see
// fsm/importentry.go), and answers a header with the store's revision.
// With authentication on only the root role may call its writes (see
// checkFor). The writes run on the leader, forwarded like any write.

// ImportService is the import service's name on the client port.
const ImportService = "etcdsql.v1.Import"

// Importer is the member's side of the import service.
type Importer interface {
	// Import replicates one import entry through the leader.
	Import(ctx context.Context, e *fsm.ImportEntry) (*pb.ResponseHeader, error)
	// ImportStatus reports the cluster's import mode, linearizably.
	ImportStatus(ctx context.Context) (fsm.ImportStatus, error)
}

// importDoor is how a server's import methods reach their member: the
// limits writes are validated with, the Importer, and the authorization
// of a request (the client port's is its interceptor's).
type importDoor struct {
	prefix    string // of the method names
	limits    func(srv any) fsm.Limits
	backend   func(srv any) Importer
	authorize func(srv any, ctx context.Context, req any) error
}

// importMethod builds the method that replicates one kind of import entry,
// whose message is a Req, named after the kind ("Begin" for ImportBegin)
// after the door's prefix.
func importMethod[Req any, PReq interface {
	*Req
	fsm.ImportMessage
}](d importDoor, kind fsm.ImportKind) grpc.MethodDesc {
	name := d.prefix + strings.TrimPrefix(kind.String(), "Import")
	limits, backend, authorize := d.limits, d.backend, d.authorize
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := PReq(new(Req))
			if err := dec(req); err != nil {
				return nil, err
			}
			if err := authorize(srv, ctx, req); err != nil {
				return nil, togRPCError(err)
			}
			call := func(ctx context.Context, r any) (any, error) {
				e := &fsm.ImportEntry{Kind: kind, Msg: r.(PReq)}
				if err := fsm.ValidateImport(e, limits(srv)); err != nil {
					return nil, togRPCError(err)
				}
				h, err := backend(srv).Import(ctx, e)
				return h, togRPCError(err)
			}
			if in == nil {
				return call(ctx, req)
			}
			return in(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + ImportService + "/" + name}, call)
		},
	}
}

// importMethods are the import service's writes.
func importMethods(d importDoor) []grpc.MethodDesc {
	return []grpc.MethodDesc{
		importMethod[pb.ResponseHeader](d, fsm.ImportBegin),
		importMethod[pb.LeaseTimeToLiveResponse](d, fsm.ImportLease),
		importMethod[pb.RangeResponse](d, fsm.ImportKeys),
		importMethod[pb.CompactionRequest](d, fsm.ImportCompact),
		importMethod[pb.WatchResponse](d, fsm.ImportEvents),
		importMethod[pb.ResponseHeader](d, fsm.ImportReset),
		importMethod[pb.LeaseLeasesResponse](d, fsm.ImportFinish),
	}
}

// importServiceDesc is the client port's import service; its server is
// the rpc Server (interceptors do the authorization).
var importServiceDesc = grpc.ServiceDesc{
	ServiceName: ImportService,
	HandlerType: (*any)(nil),
	Methods: append(importMethods(importDoor{
		limits:    func(srv any) fsm.Limits { return srv.(*Server).limits() },
		backend:   func(srv any) Importer { return srv.(*Server).b },
		authorize: func(any, context.Context, any) error { return nil },
	}), grpc.MethodDesc{
		MethodName: "Status",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(pb.StatusRequest)); err != nil {
				return nil, err
			}
			st, err := srv.(*Server).b.ImportStatus(ctx)
			if err != nil {
				return nil, togRPCError(err)
			}
			return ImportStatusHeader(st), nil
		},
	}),
	Metadata: "etcdsql/import",
}

// ImportStatusHeader is how the import service's Status answers: the
// store's revision, the source cluster's ID in ClusterId, the source
// revision of the key space in MemberId, and RaftTerm 1 while the cluster
// imports (0 when not).
func ImportStatusHeader(st fsm.ImportStatus) *pb.ResponseHeader {
	h := &pb.ResponseHeader{Revision: st.Rev, ClusterId: st.Source, MemberId: uint64(st.Base)}
	if st.Importing {
		h.RaftTerm = 1
	}
	return h
}
