package rpc

import (
	"context"

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

// importMethod builds the method that replicates one kind of import entry.
func importMethod[Req any](name string, kind fsm.ImportKind, entry func(*Req) *fsm.ImportEntry,
	limits func(any) fsm.Limits, backend func(any) Importer, authorize func(any, context.Context, any) error) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(Req)
			if err := dec(req); err != nil {
				return nil, err
			}
			if err := authorize(srv, ctx, req); err != nil {
				return nil, togRPCError(err)
			}
			call := func(ctx context.Context, r any) (any, error) {
				e := entry(r.(*Req))
				e.Kind = kind
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

// importMethods are the import service's writes, for srv's Importer,
// named "Begin" and so on after prefix.
func importMethods(prefix string, limits func(any) fsm.Limits, backend func(any) Importer, authorize func(any, context.Context, any) error) []grpc.MethodDesc {
	return []grpc.MethodDesc{
		importMethod(prefix+"Begin", fsm.ImportBegin, func(r *pb.ResponseHeader) *fsm.ImportEntry { return &fsm.ImportEntry{Begin: r} }, limits, backend, authorize),
		importMethod(prefix+"Lease", fsm.ImportLease, func(r *pb.LeaseTimeToLiveResponse) *fsm.ImportEntry { return &fsm.ImportEntry{Lease: r} }, limits, backend, authorize),
		importMethod(prefix+"Keys", fsm.ImportKeys, func(r *pb.RangeResponse) *fsm.ImportEntry { return &fsm.ImportEntry{Keys: r} }, limits, backend, authorize),
		importMethod(prefix+"Compact", fsm.ImportCompact, func(r *pb.CompactionRequest) *fsm.ImportEntry { return &fsm.ImportEntry{Compact: r} }, limits, backend, authorize),
		importMethod(prefix+"Events", fsm.ImportEvents, func(r *pb.WatchResponse) *fsm.ImportEntry { return &fsm.ImportEntry{Events: r} }, limits, backend, authorize),
		importMethod(prefix+"Reset", fsm.ImportReset, func(r *pb.ResponseHeader) *fsm.ImportEntry { return &fsm.ImportEntry{Reset: r} }, limits, backend, authorize),
		importMethod(prefix+"Finish", fsm.ImportFinish, func(r *pb.LeaseLeasesResponse) *fsm.ImportEntry { return &fsm.ImportEntry{Finish: r} }, limits, backend, authorize),
	}
}

// importServiceDesc is the client port's import service; its server is
// the rpc Server (interceptors do the authorization).
var importServiceDesc = grpc.ServiceDesc{
	ServiceName: ImportService,
	HandlerType: (*any)(nil),
	Methods: append(importMethods("",
		func(srv any) fsm.Limits { return srv.(*Server).limits() },
		func(srv any) Importer { return srv.(*Server).b },
		func(any, context.Context, any) error { return nil },
	), grpc.MethodDesc{
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
