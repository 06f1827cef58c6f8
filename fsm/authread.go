package fsm

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The auth store's reads. Each answers from the store as it is; a
// linearizable read waits for the read barrier first, as a range does.
// Responses carry an empty header for the caller to fill. Safe for
// concurrent use.

// UserGet returns a user's roles.
func (s *Store) UserGet(name string) (*pb.AuthUserGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[name]
	if !ok {
		return nil, ErrUserNotFound
	}
	return &pb.AuthUserGetResponse{Header: &pb.ResponseHeader{}, Roles: append([]string(nil), u.Roles...)}, nil
}

// UserList returns every user's name, sorted.
func (s *Store) UserList() *pb.AuthUserListResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	resp := &pb.AuthUserListResponse{Header: &pb.ResponseHeader{}}
	resp.Users = slices.Sorted(maps.Keys(s.users))
	return resp
}

// RoleGet returns a role's permissions, sorted by key.
func (s *Store) RoleGet(name string) (*pb.AuthRoleGetResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.roles[name]
	if !ok {
		return nil, ErrRoleNotFound
	}
	return &pb.AuthRoleGetResponse{Header: &pb.ResponseHeader{}, Perm: append([]*authpb.Permission(nil), r.KeyPermission...)}, nil
}

// RoleList returns every role's name, sorted.
func (s *Store) RoleList() *pb.AuthRoleListResponse {
	s.mu.RLock()
	defer s.mu.RUnlock()
	resp := &pb.AuthRoleListResponse{Header: &pb.ResponseHeader{}}
	resp.Roles = slices.Sorted(maps.Keys(s.roles))
	return resp
}

// Auth returns every user and role, password hashes included.
func (s *Store) Auth() AuthState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.authState()
}

// authState copies the maps into sorted lists; the caller holds mu.
func (s *Store) authState() AuthState {
	a := AuthState{Enabled: s.authOn, Revision: s.authRev, Key: s.authKey}
	for _, u := range s.users {
		a.Users = append(a.Users, u)
	}
	sort.Slice(a.Users, func(i, j int) bool { return string(a.Users[i].Name) < string(a.Users[j].Name) })
	for _, r := range s.roles {
		a.Roles = append(a.Roles, r)
	}
	sort.Slice(a.Roles, func(i, j int) bool { return string(a.Roles[i].Name) < string(a.Roles[j].Name) })
	return a
}

// setAuth replaces the auth maps with a's records; the caller owns s.
func (s *Store) setAuth(a AuthState) {
	s.authRev, s.authKey = a.Revision, a.Key
	s.setAuthOn(a.Enabled)
	s.users = make(map[string]*authpb.User, len(a.Users))
	for _, u := range a.Users {
		s.users[string(u.Name)] = u
	}
	s.roles = make(map[string]*authpb.Role, len(a.Roles))
	for _, r := range a.Roles {
		s.roles[string(r.Name)] = r
	}
}

// check refuses an auth state read from a snapshot or the system of
// record that the store could not run safely: enabled without a full
// signing key (tokens would be forgeable), or a user whose roles are not
// in order (role lookups search them).
func (a AuthState) check() error {
	if a.Enabled && len(a.Key) != SigningKeyBytes {
		return fmt.Errorf("fsm: auth state: enabled with a signing key of %d bytes, want %d", len(a.Key), SigningKeyBytes)
	}
	for _, u := range a.Users {
		if !sort.StringsAreSorted(u.Roles) {
			return fmt.Errorf("fsm: auth state: user %q has its roles out of order", u.Name)
		}
	}
	return nil
}
