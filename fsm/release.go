package fsm

import (
	"reflect"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/internal/release"
)

// Releases of formats: a member of an older release cannot apply an entry
// kind, or read a snapshot, that a later release introduced. The table
// below names, for each entry kind this release applies, the release that
// introduced it; node proposes a kind only once every member runs that
// release or a later one (the cluster version), and adds no member older
// than what the store's data needs (DataRelease).

// entryReleases maps the InternalRaftRequest field of each entry kind this
// release applies to the release that introduced it. A new kind is added
// here with the release it ships in, and applied in Store.apply; a test
// holds the two together.
var entryReleases = map[string]string{
	"Put":         release.First,
	"DeleteRange": release.First,
	"Txn":         release.First,
	"Compaction":  release.First,
	"LeaseGrant":  release.First,
	"LeaseRevoke": release.First,
	// The auth store's writes; v0.1.0 does not apply them.
	"AuthUserAdd":              releaseAuth,
	"AuthUserDelete":           releaseAuth,
	"AuthUserChangePassword":   releaseAuth,
	"AuthUserGrantRole":        releaseAuth,
	"AuthUserRevokeRole":       releaseAuth,
	"AuthRoleAdd":              releaseAuth,
	"AuthRoleDelete":           releaseAuth,
	"AuthRoleGrantPermission":  releaseAuth,
	"AuthRoleRevokePermission": releaseAuth,
	"AuthEnable":               releaseAuth,
	"AuthDisable":              releaseAuth,
	// An import's entries (envelope version 2, importentry.go).
	"ImportBegin":   releaseImport,
	"ImportLease":   releaseImport,
	"ImportKeys":    releaseImport,
	"ImportCompact": releaseImport,
	"ImportEvents":  releaseImport,
	"ImportFinish":  releaseImport,
	"ImportReset":   releaseImport,
}

// releaseAuth is the release that introduced the auth store: its entries,
// and the snapshot version (3) a store with users or roles writes.
const releaseAuth = "v0.2.0"

// releaseImport is the release that introduced the import's entries and
// the snapshot version (4) a store in import mode, or with imported
// leases, writes.
const releaseImport = "v0.2.0"

// EntryRelease returns the release that introduced r's kind of entry, or
// "" for a kind this release does not apply. The empty request (a new
// leader's no-op) is First's.
func EntryRelease(r *pb.InternalRaftRequest) string {
	switch {
	case r.Put != nil, r.Txn != nil, r.DeleteRange != nil, r.LeaseGrant != nil, r.LeaseRevoke != nil, r.Compaction != nil:
		return release.First
	}
	kind := entryKind(r)
	if kind == "" {
		return release.First
	}
	return entryReleases[kind]
}

// entryKind names the request field set in r ("" for none; the header does
// not count).
func entryKind(r *pb.InternalRaftRequest) string {
	v := reflect.ValueOf(r).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		if t.Field(i).Name == "Header" || f.Kind() != reflect.Pointer || f.IsNil() {
			continue
		}
		return t.Field(i).Name
	}
	return ""
}

// DataRelease returns the oldest release that can read this store's state
// (its snapshot and what applying it took): a member of an older release
// must not join. A store with users or roles needs the auth store's
// release (its snapshots are version 3); without, v0.1.0 reads it. Safe
// for concurrent use.
func (s *Store) DataRelease() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.imp != nil || s.wipes > 0 || s.importedLeases() {
		return releaseImport
	}
	if len(s.users) > 0 || len(s.roles) > 0 || s.authRev > 0 {
		return releaseAuth
	}
	return release.First
}
