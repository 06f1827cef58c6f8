package fsm

import (
	"bytes"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The auth store: users and roles with their key permissions, the auth
// switch and the auth revision, replicated like the keys, with etcd 3.4's
// semantics: enabling needs a root user with the root role, and while
// authentication is enabled root may not be deleted nor lose its role.
// Every change bumps the auth revision. Records are never changed in place once stored: a change
// stores a copy, so a snapshot or a read shares them safely.

// rootRole is the role etcd grants to a user without the role existing.
const rootRole = "root"

// MaxAuthNameBytes bounds user and role names: the system of record keys
// its auth tables on them.
const MaxAuthNameBytes = 255

// AuthState is every user and role, sorted by name, with the auth switch,
// the auth revision and the token signing key. The records are shared and
// read-only.
type AuthState struct {
	Users []*authpb.User
	Roles []*authpb.Role
	// Enabled is the auth switch.
	Enabled bool
	// Revision counts auth changes (etcd's auth revision is one more).
	Revision uint64
	// Key signs tokens; set at each enable.
	Key []byte
}

// Empty reports whether the auth store holds nothing: no user, no role,
// never enabled (and so at revision 0).
func (a AuthState) Empty() bool {
	return len(a.Users) == 0 && len(a.Roles) == 0 && !a.Enabled && a.Revision == 0 && len(a.Key) == 0
}

// isAuth reports whether r is one of the auth store's writes.
func isAuth(r *pb.InternalRaftRequest) bool {
	return r.AuthUserAdd != nil || r.AuthUserDelete != nil || r.AuthUserChangePassword != nil ||
		r.AuthUserGrantRole != nil || r.AuthUserRevokeRole != nil || r.AuthRoleAdd != nil ||
		r.AuthRoleDelete != nil || r.AuthRoleGrantPermission != nil || r.AuthRoleRevokePermission != nil ||
		r.AuthEnable != nil || r.AuthDisable != nil
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
	case r.AuthEnable != nil:
		resp, err = s.authEnable(r)
	case r.AuthDisable != nil:
		resp, err = s.authDisable()
	}
	if err != nil {
		return &Result{Err: err}
	}
	return &Result{Auth: resp}
}

// touchAuth records an auth change: the system of record's version and
// the replicated auth revision. A store left without users and roles that
// never enabled authentication goes back to revision 0, so that it writes
// v0.1.0's snapshot format again and members restored from it agree.
func (s *Store) touchAuth() {
	s.authVersion++
	s.authRev++
	if len(s.users) == 0 && len(s.roles) == 0 && s.authKey == nil {
		s.authRev = 0
	}
}

// authEnable turns authentication on, as etcd does: a root user with the
// root role must exist; enabling while enabled changes nothing. Each
// enable installs the signing key the entry carries (in its Authenticate
// field's token, where etcd replicates simple tokens), so tokens issued
// before a disable stay invalid.
func (s *Store) authEnable(r *pb.InternalRaftRequest) (*pb.AuthEnableResponse, error) {
	resp := &pb.AuthEnableResponse{Header: &pb.ResponseHeader{}}
	if s.authOn {
		return resp, nil
	}
	root, ok := s.users[rootRole]
	if !ok {
		return nil, ErrRootUserNotExist
	}
	if !hasRole(root, rootRole) {
		return nil, ErrRootRoleNotExist
	}
	s.setAuthOn(true)
	s.authKey = []byte(r.Authenticate.SimpleToken)
	s.touchAuth()
	return resp, nil
}

// authDisable turns authentication off; disabling while disabled changes
// nothing.
func (s *Store) authDisable() (*pb.AuthDisableResponse, error) {
	resp := &pb.AuthDisableResponse{Header: &pb.ResponseHeader{}}
	if !s.authOn {
		return resp, nil
	}
	s.setAuthOn(false)
	s.touchAuth()
	return resp, nil
}

// setAuthOn sets the auth switch; the caller holds mu.
func (s *Store) setAuthOn(on bool) {
	s.authOn = on
	s.authOnFast.Store(on)
}

// hasRole reports whether u has role.
func hasRole(u *authpb.User, role string) bool {
	i := sort.SearchStrings(u.Roles, role)
	return i < len(u.Roles) && u.Roles[i] == role
}

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
	if s.authOn && r.Name == rootRole {
		return nil, ErrInvalidAuthMgmt
	}
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
	if s.authOn && r.Name == rootRole && r.Role == rootRole {
		return nil, ErrInvalidAuthMgmt
	}
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
	if s.authOn && r.Role == rootRole {
		return nil, ErrInvalidAuthMgmt
	}
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
