package fsm

import (
	"bytes"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The auth store: users and roles with their key permissions, replicated
// like the keys, with etcd 3.4's semantics. Nothing enforces them yet
// (authentication cannot be enabled), so the rules that hold only while
// authentication is enabled (root may not be deleted, nor lose its role)
// never apply. Records are never changed in place once stored: a change
// stores a copy, so a snapshot or a read shares them safely.

// rootRole is the role etcd grants to a user without the role existing.
const rootRole = "root"

// MaxAuthNameBytes bounds user and role names: the system of record keys
// its auth tables on them.
const MaxAuthNameBytes = 255

// AuthState is every user and role, sorted by name. The records are
// shared and read-only.
type AuthState struct {
	Users []*authpb.User
	Roles []*authpb.Role
}

// Empty reports whether there is no user and no role.
func (a AuthState) Empty() bool { return len(a.Users) == 0 && len(a.Roles) == 0 }

// isAuth reports whether r is one of the auth store's writes.
func isAuth(r *pb.InternalRaftRequest) bool {
	return r.AuthUserAdd != nil || r.AuthUserDelete != nil || r.AuthUserChangePassword != nil ||
		r.AuthUserGrantRole != nil || r.AuthUserRevokeRole != nil || r.AuthRoleAdd != nil ||
		r.AuthRoleDelete != nil || r.AuthRoleGrantPermission != nil || r.AuthRoleRevokePermission != nil
}

// applyAuth applies one auth write; the caller holds mu. A change bumps
// authVersion, so the system of record rewrites the auth tables.
func (s *Store) applyAuth(r *pb.InternalRaftRequest) *Result {
	var resp any
	var err error
	switch {
	case r.AuthUserAdd != nil:
		resp, err = s.userAdd(r.AuthUserAdd)
	case r.AuthUserDelete != nil:
		resp, err = s.userDelete(r.AuthUserDelete)
	case r.AuthUserChangePassword != nil:
		resp, err = s.userChangePassword(r.AuthUserChangePassword)
	case r.AuthUserGrantRole != nil:
		resp, err = s.userGrantRole(r.AuthUserGrantRole)
	case r.AuthUserRevokeRole != nil:
		resp, err = s.userRevokeRole(r.AuthUserRevokeRole)
	case r.AuthRoleAdd != nil:
		resp, err = s.roleAdd(r.AuthRoleAdd)
	case r.AuthRoleDelete != nil:
		resp, err = s.roleDelete(r.AuthRoleDelete)
	case r.AuthRoleGrantPermission != nil:
		resp, err = s.roleGrantPermission(r.AuthRoleGrantPermission)
	case r.AuthRoleRevokePermission != nil:
		resp, err = s.roleRevokePermission(r.AuthRoleRevokePermission)
	}
	if err != nil {
		return &Result{Err: err}
	}
	return &Result{Auth: resp}
}

func (s *Store) touchAuth() { s.authVersion++ }

func (s *Store) userAdd(r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	if r.Name == "" {
		return nil, ErrUserEmpty
	}
	if _, ok := s.users[r.Name]; ok {
		return nil, ErrUserAlreadyExist
	}
	opts := &authpb.UserAddOptions{}
	if r.Options != nil {
		opts.NoPassword = r.Options.NoPassword
	}
	u := &authpb.User{Name: []byte(r.Name), Options: opts}
	if !opts.NoPassword {
		u.Password = []byte(r.HashedPassword)
	}
	s.users[r.Name] = u
	s.touchAuth()
	return &pb.AuthUserAddResponse{Header: &pb.ResponseHeader{}}, nil
}

func (s *Store) userDelete(r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	if _, ok := s.users[r.Name]; !ok {
		return nil, ErrUserNotFound
	}
	delete(s.users, r.Name)
	s.touchAuth()
	return &pb.AuthUserDeleteResponse{Header: &pb.ResponseHeader{}}, nil
}

func (s *Store) userChangePassword(r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	u, ok := s.users[r.Name]
	if !ok {
		return nil, ErrUserNotFound
	}
	c := cloneUser(u)
	c.Password = []byte(r.HashedPassword)
	s.users[r.Name] = c
	s.touchAuth()
	return &pb.AuthUserChangePasswordResponse{Header: &pb.ResponseHeader{}}, nil
}

// userGrantRole grants a role; the root role need not exist, and granting
// a role the user has changes nothing, as in etcd.
func (s *Store) userGrantRole(r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	u, ok := s.users[r.User]
	if !ok {
		return nil, ErrUserNotFound
	}
	if _, ok := s.roles[r.Role]; !ok && r.Role != rootRole {
		return nil, ErrRoleNotFound
	}
	resp := &pb.AuthUserGrantRoleResponse{Header: &pb.ResponseHeader{}}
	i := sort.SearchStrings(u.Roles, r.Role)
	if i < len(u.Roles) && u.Roles[i] == r.Role {
		return resp, nil
	}
	c := cloneUser(u)
	c.Roles = append(c.Roles, r.Role)
	sort.Strings(c.Roles)
	s.users[r.User] = c
	s.touchAuth()
	return resp, nil
}

func (s *Store) userRevokeRole(r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	u, ok := s.users[r.Name]
	if !ok {
		return nil, ErrUserNotFound
	}
	c, removed := withoutRole(u, r.Role)
	if !removed {
		return nil, ErrRoleNotGranted
	}
	s.users[r.Name] = c
	s.touchAuth()
	return &pb.AuthUserRevokeRoleResponse{Header: &pb.ResponseHeader{}}, nil
}

func (s *Store) roleAdd(r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	if r.Name == "" {
		return nil, ErrRoleEmpty
	}
	if _, ok := s.roles[r.Name]; ok {
		return nil, ErrRoleAlreadyExist
	}
	s.roles[r.Name] = &authpb.Role{Name: []byte(r.Name)}
	s.touchAuth()
	return &pb.AuthRoleAddResponse{Header: &pb.ResponseHeader{}}, nil
}

// roleDelete deletes a role and revokes it from every user who has it.
func (s *Store) roleDelete(r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	if _, ok := s.roles[r.Role]; !ok {
		return nil, ErrRoleNotFound
	}
	delete(s.roles, r.Role)
	for name, u := range s.users {
		if c, removed := withoutRole(u, r.Role); removed {
			s.users[name] = c
		}
	}
	s.touchAuth()
	return &pb.AuthRoleDeleteResponse{Header: &pb.ResponseHeader{}}, nil
}

// roleGrantPermission is etcd's: the permission list is kept sorted by key;
// the first permission whose key is not below the new one's is updated in
// place when key and range end both match, otherwise the new one is added.
func (s *Store) roleGrantPermission(r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	role, ok := s.roles[r.Name]
	if !ok {
		return nil, ErrRoleNotFound
	}
	c := cloneRole(role)
	perms := c.KeyPermission
	i := sort.Search(len(perms), func(i int) bool { return bytes.Compare(perms[i].Key, r.Perm.Key) >= 0 })
	if i < len(perms) && bytes.Equal(perms[i].Key, r.Perm.Key) && bytes.Equal(perms[i].RangeEnd, r.Perm.RangeEnd) {
		p := *perms[i]
		p.PermType = r.Perm.PermType
		perms[i] = &p
	} else {
		perms = append(perms, &authpb.Permission{PermType: r.Perm.PermType, Key: r.Perm.Key, RangeEnd: r.Perm.RangeEnd})
		sort.SliceStable(perms, func(i, j int) bool { return bytes.Compare(perms[i].Key, perms[j].Key) < 0 })
	}
	c.KeyPermission = perms
	s.roles[r.Name] = c
	s.touchAuth()
	return &pb.AuthRoleGrantPermissionResponse{Header: &pb.ResponseHeader{}}, nil
}

func (s *Store) roleRevokePermission(r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	role, ok := s.roles[r.Role]
	if !ok {
		return nil, ErrRoleNotFound
	}
	c := &authpb.Role{Name: role.Name}
	for _, p := range role.KeyPermission {
		if !bytes.Equal(p.Key, r.Key) || !bytes.Equal(p.RangeEnd, r.RangeEnd) {
			c.KeyPermission = append(c.KeyPermission, p)
		}
	}
	if len(c.KeyPermission) == len(role.KeyPermission) {
		return nil, ErrPermissionNotGranted
	}
	s.roles[r.Role] = c
	s.touchAuth()
	return &pb.AuthRoleRevokePermissionResponse{Header: &pb.ResponseHeader{}}, nil
}

// cloneUser copies a user's record (its role list included) for a change.
func cloneUser(u *authpb.User) *authpb.User {
	c := *u
	c.Roles = append([]string(nil), u.Roles...)
	return &c
}

// cloneRole copies a role's record (its permission list, not the
// permissions) for a change.
func cloneRole(r *authpb.Role) *authpb.Role {
	c := *r
	c.KeyPermission = append([]*authpb.Permission(nil), r.KeyPermission...)
	return &c
}

// withoutRole returns a copy of u without role, and whether u had it.
func withoutRole(u *authpb.User, role string) (*authpb.User, bool) {
	c := cloneUser(u)
	c.Roles = c.Roles[:0]
	for _, r := range u.Roles {
		if r != role {
			c.Roles = append(c.Roles, r)
		}
	}
	if len(c.Roles) == len(u.Roles) {
		return u, false
	}
	if len(c.Roles) == 0 {
		c.Roles = nil
	}
	return c, true
}
