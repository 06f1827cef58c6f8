package etcdbackend

import "errors"

// Errors ReadFile wraps with the file and what it found.
var (
	// ErrChecksum: the sha256 sum at the end of a snapshot file does not
	// match its contents (the file is damaged or truncated).
	ErrChecksum = errors.New("sha256 checksum mismatch")
	// ErrNotBackend: the file is a bbolt database but not etcd's backend,
	// or it breaks the backend's rules.
	ErrNotBackend = errors.New("not an etcd backend")
)
