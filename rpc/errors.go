package rpc

import (
	"context"
	"errors"
	"net/http"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/fsm"
)

// errUnavailable is what a client sees when storage refuses writes.
var errGRPCUnavailable = status.Error(codes.Unavailable, "etcdserver: storage is unavailable, write rejected")

// errGRPCKeyTooLong refuses keys the system of record cannot store.
var errGRPCKeyTooLong = status.Error(codes.InvalidArgument, "etcdserver: key is too long")

// The auth store's own limits (etcd has none): names the system of
// record keys on, passwords bcrypt takes whole, and entries a member
// proposes with a plain password (none of ours does).
var (
	errGRPCAuthNameTooLong = status.Error(codes.InvalidArgument, "etcdserver: user or role name is too long")
	errGRPCPasswordTooLong = status.Error(codes.InvalidArgument, "etcdserver: password is too long (bcrypt takes at most 72 bytes)")
	errGRPCBadAuthEntry    = status.Error(codes.InvalidArgument, "etcdserver: invalid auth write")
)

var grpcErrors = []struct {
	err  error
	grpc error
}{
	{fsm.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{fsm.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{fsm.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{fsm.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{fsm.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	{fsm.ErrLeaseTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},
	{fsm.ErrEmptyKey, rpctypes.ErrGRPCEmptyKey},
	{fsm.ErrKeyTooLong, errGRPCKeyTooLong},
	{fsm.ErrValueProvided, rpctypes.ErrGRPCValueProvided},
	{fsm.ErrLeaseProvided, rpctypes.ErrGRPCLeaseProvided},
	{fsm.ErrTooManyOps, rpctypes.ErrGRPCTooManyOps},
	{fsm.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
	{fsm.ErrInvalidSortOption, rpctypes.ErrGRPCInvalidSortOption},
	{fsm.ErrUserEmpty, rpctypes.ErrGRPCUserEmpty},
	{fsm.ErrUserAlreadyExist, rpctypes.ErrGRPCUserAlreadyExist},
	{fsm.ErrUserNotFound, rpctypes.ErrGRPCUserNotFound},
	{fsm.ErrRoleEmpty, rpctypes.ErrGRPCRoleEmpty},
	{fsm.ErrRoleAlreadyExist, rpctypes.ErrGRPCRoleAlreadyExist},
	{fsm.ErrRoleNotFound, rpctypes.ErrGRPCRoleNotFound},
	{fsm.ErrRoleNotGranted, rpctypes.ErrGRPCRoleNotGranted},
	{fsm.ErrPermissionNotGiven, rpctypes.ErrGRPCPermissionNotGiven},
	{fsm.ErrPermissionNotGranted, rpctypes.ErrGRPCPermissionNotGranted},
	{fsm.ErrAuthNameTooLong, errGRPCAuthNameTooLong},
	{fsm.ErrRootUserNotExist, rpctypes.ErrGRPCRootUserNotExist},
	{fsm.ErrRootRoleNotExist, rpctypes.ErrGRPCRootRoleNotExist},
	{fsm.ErrInvalidAuthMgmt, rpctypes.ErrGRPCInvalidAuthMgmt},
	{fsm.ErrAuthNotEnabled, rpctypes.ErrGRPCAuthNotEnabled},
	{fsm.ErrAuthFailed, rpctypes.ErrGRPCAuthFailed},
	{fsm.ErrPermissionDenied, rpctypes.ErrGRPCPermissionDenied},
	{fsm.ErrInvalidAuthToken, rpctypes.ErrGRPCInvalidAuthToken},
	{fsm.ErrAuthOldRevision, rpctypes.ErrGRPCAuthOldRevision},
	{fsm.ErrPasswordTooLong, errGRPCPasswordTooLong},
	{fsm.ErrBadPasswordEntry, errGRPCBadAuthEntry},
	{fsm.ErrNotAuthWrite, errGRPCBadAuthEntry},
	{fsm.ErrBadSigningKey, errGRPCBadAuthEntry},
	{ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	{ErrTimeout, rpctypes.ErrGRPCTimeout},
	{ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{ErrStopped, rpctypes.ErrGRPCStopped},
	{ErrUnavailable, errGRPCUnavailable},
	{ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{ErrLeaderChanged, rpctypes.ErrGRPCLeaderChanged},
	{ErrNotCapable, rpctypes.ErrGRPCNotCapable},
	{context.Canceled, rpctypes.ErrGRPCCanceled},
	{context.DeadlineExceeded, rpctypes.ErrGRPCDeadlineExceeded},
}

// togRPCError turns a backend error into the error etcd would return.
func togRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	// An import's refusals: a precondition the cluster's state does not
	// meet (a 4xx on the gateway, so APISIX keeps using the member), with
	// the text that says which.
	for _, e := range []error{fsm.ErrImporting, fsm.ErrImportNotEmpty, fsm.ErrNotImporting, fsm.ErrImportOrder, fsm.ErrImportInvalid} {
		if errors.Is(err, e) {
			return status.Error(codes.FailedPrecondition, err.Error())
		}
	}
	for _, e := range grpcErrors {
		if errors.Is(err, e.err) {
			return e.grpc
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// httpStatusFromCode maps gRPC codes to HTTP statuses as etcd 3.4's
// gateway does. Only a member that cannot serve answers 5xx: APISIX counts
// any 5xx as a dead endpoint.
func httpStatusFromCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return http.StatusRequestTimeout
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.FailedPrecondition:
		return http.StatusPreconditionFailed
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
