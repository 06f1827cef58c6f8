package fsm

import (
	"bytes"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
)

// Permission checks, as etcd 3.4 makes them while authentication is
// enabled: a user with the root role may do anything; any other user may
// read (write) a key or range when the union of its roles' READ or
// READWRITE (WRITE or READWRITE) permissions covers it. A range end of
// "\x00", in a request or a permission, is the end of the key space. The
// caller names the user and the auth revision it resolved the user at; a
// revision older than the store's is refused as etcd refuses it. Safe for
// concurrent use.

// AuthEnabled reports whether authentication is enabled, without taking
// the store's lock.
func (s *Store) AuthEnabled() bool { return s.authOnFast.Load() }

// CheckPerm checks that user may read (write false) or write the key, or
// the range [key, end), at auth revision rev. With authentication disabled
// anything goes.
func (s *Store) CheckPerm(user string, rev uint64, key, end []byte, write bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, err := s.authUser(user, rev)
	if u == nil || err != nil {
		return err
	}
	if hasRole(u, rootRole) {
		return nil
	}
	if covered(s.userPerms(u, write), key, end) {
		return nil
	}
	return ErrPermissionDenied
}

// CheckAdmin checks that user has the root role, at auth revision rev.
func (s *Store) CheckAdmin(user string, rev uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, err := s.authUser(user, rev)
	if u == nil || err != nil {
		return err
	}
	if hasRole(u, rootRole) {
		return nil
	}
	return ErrPermissionDenied
}

// CheckHasRole checks that user is root or has role (etcd's rule for
// reading a role).
func (s *Store) CheckHasRole(user string, rev uint64, role string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, err := s.authUser(user, rev)
	if u == nil || err != nil {
		return err
	}
	if hasRole(u, rootRole) || hasRole(u, role) {
		return nil
	}
	return ErrPermissionDenied
}

// authUser resolves the user a request runs as: nil and no error when
// authentication is disabled. The caller holds mu.
func (s *Store) authUser(user string, rev uint64) (*authpb.User, error) {
	if !s.authOn {
		return nil, nil
	}
	if rev == 0 || user == "" {
		return nil, ErrUserEmpty
	}
	if rev < s.authRev+1 {
		return nil, ErrAuthOldRevision
	}
	u := s.users[user]
	if u == nil {
		return nil, ErrPermissionDenied
	}
	return u, nil
}

// interval is [lo, hi); a nil hi is the end of the key space.
type interval struct{ lo, hi []byte }

// userPerms returns the intervals u's roles grant for reading or writing.
func (s *Store) userPerms(u *authpb.User, write bool) []interval {
	var out []interval
	for _, name := range u.Roles {
		r := s.roles[name]
		if r == nil {
			continue
		}
		for _, p := range r.KeyPermission {
			if p.PermType != authpb.READWRITE && (p.PermType == authpb.WRITE) != write {
				continue
			}
			out = append(out, toInterval(p.Key, p.RangeEnd))
		}
	}
	return out
}

// toInterval makes a key or range an interval: a key alone is [key,
// key+"\x00"), an end of "\x00" is the end of the key space.
func toInterval(key, end []byte) interval {
	switch {
	case len(end) == 0:
		return interval{key, append(append([]byte(nil), key...), 0)}
	case len(end) == 1 && end[0] == 0:
		return interval{key, nil}
	}
	return interval{key, end}
}

// less orders interval ends, nil last.
func endLess(a, b []byte) bool {
	if a == nil {
		return false
	}
	return b == nil || bytes.Compare(a, b) < 0
}

// covered reports whether the union of perms covers the key or range.
func covered(perms []interval, key, end []byte) bool {
	want := toInterval(key, end)
	sort.Slice(perms, func(i, j int) bool { return bytes.Compare(perms[i].lo, perms[j].lo) < 0 })
	reach := want.lo // everything below reach is covered
	for _, p := range perms {
		if bytes.Compare(p.lo, reach) > 0 {
			break
		}
		if endLess(reach, p.hi) {
			reach = p.hi
		}
		if reach == nil || !endLess(reach, want.hi) {
			return true
		}
	}
	return false
}

// CheckLeaseWrite checks that user may write every key attached to lease
// id (etcd's rule for revoking a lease, and for attaching one to a key).
func (s *Store) CheckLeaseWrite(user string, rev uint64, id int64) error {
	return s.checkLeaseKeys(user, rev, id, true)
}

// CheckLeaseRead checks that user may read every key attached to lease
// id: what a lease's time to live reveals (etcd since 3.4.26; 3.4.23 let
// anyone list a lease's keys).
func (s *Store) CheckLeaseRead(user string, rev uint64, id int64) error {
	return s.checkLeaseKeys(user, rev, id, false)
}

func (s *Store) checkLeaseKeys(user string, rev uint64, id int64, write bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, err := s.authUser(user, rev)
	if u == nil || err != nil {
		return err
	}
	l := s.leases[id]
	if l == nil || hasRole(u, rootRole) {
		return nil
	}
	perms := s.userPerms(u, write)
	for k := range l.keys {
		if !covered(perms, []byte(k), nil) {
			return ErrPermissionDenied
		}
	}
	return nil
}
