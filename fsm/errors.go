package fsm

import "errors"

// Errors returned in a Result or by reads. The rpc package maps them to
// etcd's gRPC errors; their texts are for logs.
var (
	// ErrCompacted: the requested revision is below the compact revision.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	// ErrFutureRev: the requested revision is above the current revision.
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")
	// ErrKeyNotFound: ignore_value or ignore_lease on a key that does not exist.
	ErrKeyNotFound = errors.New("fsm: key not found")
	// ErrLeaseNotFound: the lease does not exist.
	ErrLeaseNotFound = errors.New("lease not found")
	// ErrLeaseExists: a grant named an ID that is already in use.
	ErrLeaseExists = errors.New("lease already exists")
	// ErrLeaseTTLTooLarge: a grant asked for more than MaxLeaseTTL seconds.
	ErrLeaseTTLTooLarge = errors.New("too large lease TTL")
	// ErrEmptyKey: a request names no key.
	ErrEmptyKey = errors.New("fsm: key is not provided")
	// ErrKeyTooLong: a put's key is longer than the configured bound (the
	// longest key the system of record stores).
	ErrKeyTooLong = errors.New("fsm: key is too long")
	// ErrValueProvided: a put with ignore_value also carries a value.
	ErrValueProvided = errors.New("fsm: value is provided")
	// ErrLeaseProvided: a put with ignore_lease also names a lease.
	ErrLeaseProvided = errors.New("fsm: lease is provided")
	// ErrTooManyOps: a transaction list is longer than the op limit.
	ErrTooManyOps = errors.New("fsm: too many operations in txn request")
	// ErrDuplicateKey: a transaction writes one key twice.
	ErrDuplicateKey = errors.New("fsm: duplicate key given in txn request")
	// ErrInvalidSortOption: a range names a sort target that does not exist.
	ErrInvalidSortOption = errors.New("fsm: invalid sort option")
	// ErrWatcherRangeEmpty: a watch whose range_end is not above its key.
	ErrWatcherRangeEmpty = errors.New("mvcc: watcher range is empty")
	// ErrWatcherDuplicateID: a watch asked for an ID already used on its stream.
	ErrWatcherDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	// ErrWatcherNotFound: cancel of a watch ID the stream does not have.
	ErrWatcherNotFound = errors.New("mvcc: watcher not found")
	// ErrUserEmpty: a user add names no user.
	ErrUserEmpty = errors.New("etcdserver: user name is empty")
	// ErrUserAlreadyExist: a user add names an existing user.
	ErrUserAlreadyExist = errors.New("etcdserver: user name already exists")
	// ErrUserNotFound: the user does not exist.
	ErrUserNotFound = errors.New("etcdserver: user name not found")
	// ErrRoleEmpty: a role add names no role.
	ErrRoleEmpty = errors.New("etcdserver: role name is empty")
	// ErrRoleAlreadyExist: a role add names an existing role.
	ErrRoleAlreadyExist = errors.New("etcdserver: role name already exists")
	// ErrRoleNotFound: the role does not exist.
	ErrRoleNotFound = errors.New("etcdserver: role name not found")
	// ErrRoleNotGranted: a revoke of a role the user does not have.
	ErrRoleNotGranted = errors.New("etcdserver: role is not granted to the user")
	// ErrPermissionNotGiven: a permission grant without a permission.
	ErrPermissionNotGiven = errors.New("etcdserver: permission not given")
	// ErrPermissionNotGranted: a revoke of a permission the role does not have.
	ErrPermissionNotGranted = errors.New("etcdserver: permission is not granted to the role")
	// ErrRootUserNotExist: auth enable without a root user.
	ErrRootUserNotExist = errors.New("etcdserver: root user does not exist")
	// ErrRootRoleNotExist: auth enable while root lacks the root role.
	ErrRootRoleNotExist = errors.New("etcdserver: root user does not have root role")
	// ErrInvalidAuthMgmt: deleting root, or revoking its root role, while
	// authentication is enabled.
	ErrInvalidAuthMgmt = errors.New("etcdserver: invalid auth management")
	// ErrAuthNotEnabled: authenticate while authentication is disabled.
	ErrAuthNotEnabled = errors.New("etcdserver: authentication is not enabled")
	// ErrAuthFailed: authenticate with an unknown user or a wrong password.
	ErrAuthFailed = errors.New("etcdserver: authentication failed, invalid user ID or password")
	// ErrPermissionDenied: the user may not do what the request asks.
	ErrPermissionDenied = errors.New("etcdserver: permission denied")
	// ErrInvalidAuthToken: a token that is malformed, forged, expired, or
	// whose user was deleted or changed password since it was issued.
	ErrInvalidAuthToken = errors.New("etcdserver: invalid auth token")
	// ErrAuthOldRevision: a forwarded request checked at an auth revision
	// older than the leader's.
	ErrAuthOldRevision = errors.New("etcdserver: revision of auth store is old")
	// ErrBadSigningKey: an auth enable entry without a signing key of
	// SigningKeyBytes bytes.
	ErrBadSigningKey = errors.New("fsm: auth enable must carry a signing key")
	// ErrAuthNameTooLong: a user or role name longer than MaxAuthNameBytes.
	ErrAuthNameTooLong = errors.New("fsm: user or role name is too long")
	// ErrBadPasswordEntry: an entry that would store a plain password, or a
	// password hash that is not a bcrypt hash. The member that takes a
	// request hashes the password before proposing it.
	ErrBadPasswordEntry = errors.New("fsm: password must be replicated as a bcrypt hash")
	// ErrNotAuthWrite: a request proposed as an auth write holds something
	// else, or more.
	ErrNotAuthWrite = errors.New("fsm: not a single auth write")
	// ErrPasswordTooLong: a password longer than bcrypt takes (72 bytes).
	ErrPasswordTooLong = errors.New("fsm: password is too long")
	// ErrUnknownEntry: a committed entry this release cannot decode or
	// does not know (written by a newer release, or corrupt). Apply
	// changes nothing and does not advance the applied index; the member
	// must stop before applying anything after it, or its replica would
	// diverge.
	ErrUnknownEntry = errors.New("fsm: a committed entry this release cannot apply")
)

// Errors of an import (importentry.go, importing.go).
var (
	// ErrImporting: a client write while the store imports from etcd.
	ErrImporting = errors.New("etcdserver: import in progress: writes are refused until `etcdsql import --finish`")
	// ErrImportNotEmpty: an import begun on a store that has been written.
	ErrImportNotEmpty = errors.New("etcdsql: import: the target cluster is not empty")
	// ErrNotImporting: an import entry other than a begin on a store that
	// is not importing.
	ErrNotImporting = errors.New("etcdsql: import: the target cluster is not importing")
	// ErrImportOrder: an import entry that does not follow what the store
	// has imported (a revision out of order, a key imported twice).
	ErrImportOrder = errors.New("etcdsql: import: out of order")
	// ErrImportInvalid: an import entry whose message lacks what its kind
	// needs.
	ErrImportInvalid = errors.New("etcdsql: import: invalid entry")
)
