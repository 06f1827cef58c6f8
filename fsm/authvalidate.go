package fsm

import (
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
)

// An auth write is checked twice: as a client sent it
// (ValidateAuthRequest, at the client port, before its password is
// hashed), and as it is proposed (ValidateAuth: at the peer port, on the
// leader, and in checkEntry on every member). Both read nothing but the
// request. Safe for concurrent use.

// ValidateAuthRequest checks an auth write as a client sent it: a new user
// or role is named, and by at most MaxAuthNameBytes; a permission grant
// has a permission, whose key and range end are bounded as keys are.
func ValidateAuthRequest(r *pb.InternalRaftRequest, l Limits) error {
	switch {
	case r.AuthUserAdd != nil:
		return checkAuthName(r.AuthUserAdd.Name, ErrUserEmpty)
	case r.AuthRoleAdd != nil:
		return checkAuthName(r.AuthRoleAdd.Name, ErrRoleEmpty)
	case r.AuthRoleGrantPermission != nil:
		p := r.AuthRoleGrantPermission.Perm
		if p == nil {
			return ErrPermissionNotGiven
		}
		if l.MaxKeyBytes > 0 && (len(p.Key) > l.MaxKeyBytes || len(p.RangeEnd) > l.MaxKeyBytes) {
			return ErrKeyTooLong
		}
	}
	return nil
}

func checkAuthName(name string, empty error) error {
	switch {
	case name == "":
		return empty
	case len(name) > MaxAuthNameBytes:
		return ErrAuthNameTooLong
	}
	return nil
}

// ValidateAuth checks an auth write as it is proposed: exactly one auth
// write and nothing else, valid as ValidateAuthRequest says, and its
// password replaced by a bcrypt hash (none for a user without password).
func ValidateAuth(r *pb.InternalRaftRequest, l Limits) error {
	if !IsAuthWrite(r) {
		return ErrNotAuthWrite
	}
	if err := ValidateAuthRequest(r, l); err != nil {
		return err
	}
	switch {
	case r.AuthUserAdd != nil:
		u := r.AuthUserAdd
		if u.Options != nil && u.Options.NoPassword {
			if u.Password != "" || u.HashedPassword != "" {
				return ErrBadPasswordEntry
			}
			return nil
		}
		return checkHashed(u.Password, u.HashedPassword)
	case r.AuthUserChangePassword != nil:
		return checkHashed(r.AuthUserChangePassword.Password, r.AuthUserChangePassword.HashedPassword)
	case r.AuthEnable != nil:
		k := r.Authenticate
		if k == nil || k.Name != "" || k.Password != "" || len(k.SimpleToken) != SigningKeyBytes {
			return ErrBadSigningKey
		}
	}
	return nil
}

// IsAuthWrite reports whether r holds one auth write and nothing else.
func IsAuthWrite(r *pb.InternalRaftRequest) bool {
	only := &pb.InternalRaftRequest{
		AuthEnable: r.AuthEnable, AuthDisable: r.AuthDisable, AuthUserAdd: r.AuthUserAdd, AuthUserDelete: r.AuthUserDelete, AuthUserChangePassword: r.AuthUserChangePassword,
		AuthUserGrantRole: r.AuthUserGrantRole, AuthUserRevokeRole: r.AuthUserRevokeRole, AuthRoleAdd: r.AuthRoleAdd,
		AuthRoleDelete: r.AuthRoleDelete, AuthRoleGrantPermission: r.AuthRoleGrantPermission,
		AuthRoleRevokePermission: r.AuthRoleRevokePermission,
	}
	if r.AuthEnable != nil {
		only.Authenticate = r.Authenticate
	}
	n := 0
	for _, set := range []bool{r.AuthEnable != nil, r.AuthDisable != nil, r.AuthUserAdd != nil, r.AuthUserDelete != nil, r.AuthUserChangePassword != nil,
		r.AuthUserGrantRole != nil, r.AuthUserRevokeRole != nil, r.AuthRoleAdd != nil, r.AuthRoleDelete != nil,
		r.AuthRoleGrantPermission != nil, r.AuthRoleRevokePermission != nil} {
		if set {
			n++
		}
	}
	return n == 1 && only.Size() == r.Size()
}

// checkHashed refuses a plain password, and a hash bcrypt cannot read.
func checkHashed(plain, hashed string) error {
	if plain != "" {
		return ErrBadPasswordEntry
	}
	if _, err := bcrypt.Cost([]byte(hashed)); err != nil {
		return ErrBadPasswordEntry
	}
	return nil
}

// HashPassword returns a copy of a user add or a password change with its
// plain password replaced by its bcrypt hash at the given cost, as the
// member that takes the request makes it before proposing; r is left
// unchanged. A user without password gets no hash. Other requests come
// back as they are.
func HashPassword(r *pb.InternalRaftRequest, cost int) (*pb.InternalRaftRequest, error) {
	switch {
	case r.AuthUserAdd != nil:
		u := *r.AuthUserAdd
		if u.Options != nil && u.Options.NoPassword {
			u.Password, u.HashedPassword = "", ""
			return &pb.InternalRaftRequest{AuthUserAdd: &u}, nil
		}
		h, err := hash(u.Password, cost)
		u.Password, u.HashedPassword = "", h
		return &pb.InternalRaftRequest{AuthUserAdd: &u}, err
	case r.AuthUserChangePassword != nil:
		c := *r.AuthUserChangePassword
		h, err := hash(c.Password, cost)
		c.Password, c.HashedPassword = "", h
		return &pb.InternalRaftRequest{AuthUserChangePassword: &c}, err
	}
	return r, nil
}

func hash(password string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if errors.Is(err, bcrypt.ErrPasswordTooLong) {
		return "", ErrPasswordTooLong
	}
	return string(h), err
}
