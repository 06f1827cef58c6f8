package difftest

import (
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// AuthStub returns the raw etcdserverpb Auth client on the clientv3
// connection, so that requests go exactly as written (empty names too).
func (c *Conn) AuthStub() pb.AuthClient {
	return pb.NewAuthClient(c.Client.ActiveConnection())
}

// authCases cover user and role management while authentication is
// disabled (cases_authon.go enables it): add, get, list, delete,
// password change, role grant and revoke, permission grant and revoke,
// and their errors, over gRPC and the gateway. Users and roles are global:
// each case deletes what it adds, so that the lists stay deterministic.
func authCases() []Case {
	return []Case{
		{Name: "auth_users_grpc", Run: authUsersGRPC},
		{Name: "auth_roles_grpc", Run: authRolesGRPC},
		{Name: "auth_user_roles_grpc", Run: authUserRolesGRPC},
		{Name: "auth_http", Run: authHTTP},
	}
}

func authUsersGRPC(c *Conn) {
	a := c.AuthStub()
	add := func(label, name, pw string, noPw bool) *Obs {
		r := &pb.AuthUserAddRequest{Name: name, Password: pw}
		if noPw {
			r.Options = &authpb.UserAddOptions{NoPassword: true}
		}
		resp, err := a.UserAdd(c.Ctx, r)
		return c.GRPC(label, resp, err)
	}
	c.WantOK(add("add", "du-alice", "pw", false))
	c.WantGRPCError(add("add again", "du-alice", "other", false), "FailedPrecondition", "etcdserver: user name already exists")
	c.WantGRPCError(add("add empty name", "", "pw", false), "InvalidArgument", "etcdserver: user name is empty")
	c.WantOK(add("add without password", "du-bob", "", true))
	c.WantOK(add("add empty password", "du-carol", "", false))
	g, err := a.UserGet(c.Ctx, &pb.AuthUserGetRequest{Name: "du-alice"})
	c.Want(c.GRPC("get", g, err), "body.roles", Absent)
	g, err = a.UserGet(c.Ctx, &pb.AuthUserGetRequest{Name: "du-nobody"})
	c.WantGRPCError(c.GRPC("get missing", g, err), "FailedPrecondition", "etcdserver: user name not found")
	l, err := a.UserList(c.Ctx, &pb.AuthUserListRequest{})
	c.Want(c.GRPC("list", l, err), "body.users", []string{"du-alice", "du-bob", "du-carol"})
	p, err := a.UserChangePassword(c.Ctx, &pb.AuthUserChangePasswordRequest{Name: "du-alice", Password: "new"})
	c.WantOK(c.GRPC("change password", p, err))
	p, err = a.UserChangePassword(c.Ctx, &pb.AuthUserChangePasswordRequest{Name: "du-nobody", Password: "new"})
	c.WantGRPCError(c.GRPC("change password of missing", p, err), "FailedPrecondition", "etcdserver: user name not found")
	p, err = a.UserChangePassword(c.Ctx, &pb.AuthUserChangePasswordRequest{Name: "du-bob", Password: "new"})
	c.GRPC("change password of a user without one", p, err)
	au, err := a.Authenticate(c.Ctx, &pb.AuthenticateRequest{Name: "du-alice", Password: "new"})
	c.WantGRPCError(c.GRPC("authenticate", au, err), "FailedPrecondition", "etcdserver: authentication is not enabled")
	for _, name := range []string{"du-alice", "du-bob", "du-carol"} {
		d, err := a.UserDelete(c.Ctx, &pb.AuthUserDeleteRequest{Name: name})
		c.WantOK(c.GRPC("delete "+name, d, err))
	}
	d, err := a.UserDelete(c.Ctx, &pb.AuthUserDeleteRequest{Name: "du-alice"})
	c.WantGRPCError(c.GRPC("delete again", d, err), "FailedPrecondition", "etcdserver: user name not found")
	l, err = a.UserList(c.Ctx, &pb.AuthUserListRequest{})
	c.Want(c.GRPC("list after delete", l, err), "body.users", Absent)
}

func authRolesGRPC(c *Conn) {
	a := c.AuthStub()
	roleAdd := func(label, name string) *Obs {
		resp, err := a.RoleAdd(c.Ctx, &pb.AuthRoleAddRequest{Name: name})
		return c.GRPC(label, resp, err)
	}
	grant := func(label, role string, t authpb.Permission_Type, key, end string) *Obs {
		resp, err := a.RoleGrantPermission(c.Ctx, &pb.AuthRoleGrantPermissionRequest{Name: role,
			Perm: &authpb.Permission{PermType: t, Key: []byte(key), RangeEnd: []byte(end)}})
		return c.GRPC(label, resp, err)
	}
	revoke := func(label, role, key, end string) *Obs {
		resp, err := a.RoleRevokePermission(c.Ctx, &pb.AuthRoleRevokePermissionRequest{Role: role, Key: []byte(key), RangeEnd: []byte(end)})
		return c.GRPC(label, resp, err)
	}
	get := func(label, role string) *Obs {
		resp, err := a.RoleGet(c.Ctx, &pb.AuthRoleGetRequest{Role: role})
		return c.GRPC(label, resp, err)
	}
	c.WantOK(roleAdd("add", "dr-apisix"))
	c.WantGRPCError(roleAdd("add again", "dr-apisix"), "FailedPrecondition", "etcdserver: role name already exists")
	c.WantGRPCError(roleAdd("add empty name", ""), "InvalidArgument", "etcdserver: role name is empty")
	c.WantOK(roleAdd("add second", "dr-empty"))
	c.Want(get("get without permissions", "dr-empty"), "body.perm", Absent)
	c.WantOK(grant("grant prefix", "dr-apisix", authpb.READWRITE, "/apisix/", "/apisix0"))
	c.WantOK(grant("grant key", "dr-apisix", authpb.READ, "/a", ""))
	c.WantOK(grant("grant from key", "dr-apisix", authpb.WRITE, "/z", "\x00"))
	c.WantOK(grant("grant same range, new type", "dr-apisix", authpb.READ, "/apisix/", "/apisix0"))
	c.WantGRPCError(grant("grant to missing role", "dr-nope", authpb.READ, "/a", ""), "FailedPrecondition", "etcdserver: role name not found")
	c.WantLen(get("get", "dr-apisix"), "body.perm", 3)
	c.WantGRPCError(get("get missing", "dr-nope"), "FailedPrecondition", "etcdserver: role name not found")
	l, err := a.RoleList(c.Ctx, &pb.AuthRoleListRequest{})
	c.Want(c.GRPC("list", l, err), "body.roles", []string{"dr-apisix", "dr-empty"})
	c.WantGRPCError(revoke("revoke with another range end", "dr-apisix", "/apisix/", ""), "FailedPrecondition",
		"etcdserver: permission is not granted to the role")
	c.WantGRPCError(revoke("revoke from missing role", "dr-nope", "/a", ""), "FailedPrecondition", "etcdserver: role name not found")
	c.WantOK(revoke("revoke", "dr-apisix", "/apisix/", "/apisix0"))
	c.WantLen(get("get after revoke", "dr-apisix"), "body.perm", 2)
	for _, name := range []string{"dr-apisix", "dr-empty"} {
		d, err := a.RoleDelete(c.Ctx, &pb.AuthRoleDeleteRequest{Role: name})
		c.WantOK(c.GRPC("delete "+name, d, err))
	}
	d, err := a.RoleDelete(c.Ctx, &pb.AuthRoleDeleteRequest{Role: "dr-apisix"})
	c.WantGRPCError(c.GRPC("delete again", d, err), "FailedPrecondition", "etcdserver: role name not found")
}

func authUserRolesGRPC(c *Conn) {
	a := c.AuthStub()
	grant := func(label, user, role string) *Obs {
		resp, err := a.UserGrantRole(c.Ctx, &pb.AuthUserGrantRoleRequest{User: user, Role: role})
		return c.GRPC(label, resp, err)
	}
	revoke := func(label, user, role string) *Obs {
		resp, err := a.UserRevokeRole(c.Ctx, &pb.AuthUserRevokeRoleRequest{Name: user, Role: role})
		return c.GRPC(label, resp, err)
	}
	userGet := func(label, user string) *Obs {
		resp, err := a.UserGet(c.Ctx, &pb.AuthUserGetRequest{Name: user})
		return c.GRPC(label, resp, err)
	}
	for _, u := range []string{"dg-alice", "dg-bob"} {
		resp, err := a.UserAdd(c.Ctx, &pb.AuthUserAddRequest{Name: u, Password: "pw"})
		c.WantOK(c.GRPC("add "+u, resp, err))
	}
	for _, r := range []string{"dg-r2", "dg-r1"} {
		resp, err := a.RoleAdd(c.Ctx, &pb.AuthRoleAddRequest{Name: r})
		c.WantOK(c.GRPC("add "+r, resp, err))
	}
	c.WantOK(grant("grant r2", "dg-alice", "dg-r2"))
	c.WantOK(grant("grant r1", "dg-alice", "dg-r1"))
	c.WantOK(grant("grant r1 again", "dg-alice", "dg-r1"))
	c.WantOK(grant("grant root, which does not exist", "dg-bob", "root"))
	c.WantOK(grant("grant r1 to bob", "dg-bob", "dg-r1"))
	c.WantGRPCError(grant("grant missing role", "dg-alice", "dg-nope"), "FailedPrecondition", "etcdserver: role name not found")
	c.WantGRPCError(grant("grant to missing user", "dg-nobody", "dg-r1"), "FailedPrecondition", "etcdserver: user name not found")
	c.Want(userGet("alice's roles, sorted", "dg-alice"), "body.roles", []string{"dg-r1", "dg-r2"})
	c.Want(userGet("bob's roles", "dg-bob"), "body.roles", []string{"dg-r1", "root"})
	c.WantGRPCError(revoke("revoke not granted", "dg-bob", "dg-r2"), "FailedPrecondition", "etcdserver: role is not granted to the user")
	c.WantGRPCError(revoke("revoke from missing user", "dg-nobody", "dg-r2"), "FailedPrecondition", "etcdserver: user name not found")
	c.WantOK(revoke("revoke root", "dg-bob", "root"))
	d, err := a.RoleDelete(c.Ctx, &pb.AuthRoleDeleteRequest{Role: "dg-r1"})
	c.WantOK(c.GRPC("delete r1", d, err))
	c.Want(userGet("alice after r1's deletion", "dg-alice"), "body.roles", []string{"dg-r2"})
	c.Want(userGet("bob after r1's deletion", "dg-bob"), "body.roles", Absent)
	d, err = a.RoleDelete(c.Ctx, &pb.AuthRoleDeleteRequest{Role: "dg-r2"})
	c.WantOK(c.GRPC("delete r2", d, err))
	for _, u := range []string{"dg-alice", "dg-bob"} {
		resp, err := a.UserDelete(c.Ctx, &pb.AuthUserDeleteRequest{Name: u})
		c.WantOK(c.GRPC("delete "+u, resp, err))
	}
}

// authHTTP manages a user and a role through the gateway, as a script
// would with curl.
func authHTTP(c *Conn) {
	c.WantOK(c.Post("user add", "/v3/auth/user/add", M{"name": "dh-alice", "password": "pw"}))
	c.WantHTTPError(c.Post("user add again", "/v3/auth/user/add", M{"name": "dh-alice", "password": "pw"}), 412, 9,
		"etcdserver: user name already exists")
	c.WantOK(c.Post("role add", "/v3/auth/role/add", M{"name": "dh-role"}))
	c.WantOK(c.Post("grant permission", "/v3/auth/role/grant", M{"name": "dh-role",
		"perm": M{"permType": "READWRITE", "key": B64("/apisix/"), "range_end": B64("/apisix0")}}))
	c.WantOK(c.Post("grant role", "/v3/auth/user/grant", M{"user": "dh-alice", "role": "dh-role"}))
	c.Want(c.Post("user get", "/v3/auth/user/get", M{"name": "dh-alice"}), "body.roles", []string{"dh-role"})
	c.WantLen(c.Post("role get", "/v3/auth/role/get", M{"role": "dh-role"}), "body.perm", 1)
	c.Post("user list", "/v3/auth/user/list", M{})
	c.Post("role list", "/v3/auth/role/list", M{})
	c.WantHTTPError(c.Post("user get missing", "/v3/auth/user/get", M{"name": "dh-nobody"}), 412, 9, "etcdserver: user name not found")
	c.WantOK(c.Post("revoke permission", "/v3/auth/role/revoke", M{"role": "dh-role", "key": B64("/apisix/"), "range_end": B64("/apisix0")}))
	c.WantOK(c.Post("revoke role", "/v3/auth/user/revoke", M{"name": "dh-alice", "role": "dh-role"}))
	c.WantOK(c.Post("change password", "/v3/auth/user/changepw", M{"name": "dh-alice", "password": "new"}))
	c.WantHTTPError(c.Post("authenticate", "/v3/auth/authenticate", M{"name": "dh-alice", "password": "new"}), 412, 9,
		"etcdserver: authentication is not enabled")
	c.WantOK(c.Post("role delete", "/v3/auth/role/delete", M{"role": "dh-role"}))
	c.WantOK(c.Post("user delete", "/v3/auth/user/delete", M{"name": "dh-alice"}))
}
