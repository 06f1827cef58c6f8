package difftest

import (
	"context"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// AuthEnabledCases enable authentication, which changes every later call
// on the target: they run on targets of their own (TestDifferentialAuth),
// and each case disables authentication again before it ends.
func AuthEnabledCases() []Case {
	return []Case{
		{Name: "auth_enable_rules", Run: authEnableRules},
		{Name: "auth_enforced", Run: authEnforced},
	}
}

// asToken runs f with c's gRPC calls carrying tok in the "token" metadata
// (as clientv3 sends it) and its gateway calls in the Authorization
// header; "" sends none.
func asToken(c *Conn, tok string, f func()) {
	ctx, h := c.Ctx, c.HTTP
	defer func() { c.Ctx, c.HTTP = ctx, h }()
	if tok != "" {
		c.Ctx = metadata.AppendToOutgoingContext(ctx, "token", tok)
	}
	c.HTTP = h.WithToken(tok)
	f()
}

// login authenticates over gRPC and records whether a token came back
// (never the token, which differs between any two servers).
func login(c *Conn, label, user, pw string) string {
	resp, err := c.AuthStub().Authenticate(c.Ctx, &pb.AuthenticateRequest{Name: user, Password: pw})
	if err != nil {
		c.WantGRPCError(c.GRPC(label, nil, err), "InvalidArgument", "etcdserver: authentication failed, invalid user ID or password")
		return ""
	}
	c.Want(c.Record(label, map[string]any{"token_given": resp.Token != ""}), "token_given", true)
	return resp.Token
}

func authEnableRules(c *Conn) {
	a := c.AuthStub()
	en := func(label string) *Obs {
		resp, err := a.AuthEnable(c.Ctx, &pb.AuthEnableRequest{})
		return c.GRPC(label, resp, err)
	}
	c.WantGRPCError(en("enable without root"), "FailedPrecondition", "etcdserver: root user does not exist")
	u, err := a.UserAdd(c.Ctx, &pb.AuthUserAddRequest{Name: "root", Password: "rootpw"})
	c.WantOK(c.GRPC("add root", u, err))
	c.WantGRPCError(en("enable without root role"), "FailedPrecondition", "etcdserver: root user does not have root role")
	g, err := a.UserGrantRole(c.Ctx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
	c.WantOK(c.GRPC("grant root", g, err))
	c.WantOK(en("enable"))
	c.WantGRPCError(en("enable again without token"), "InvalidArgument", "etcdserver: user name is empty")
	c.WantHTTPError(c.Post("http authenticate wrong password", "/v3/auth/authenticate", M{"name": "root", "password": "x"}),
		400, 3, "etcdserver: authentication failed, invalid user ID or password")
	login(c, "authenticate wrong password", "root", "nope")
	login(c, "authenticate unknown user", "nobody", "rootpw")
	tok := login(c, "authenticate root", "root", "rootpw")
	asToken(c, tok, func() {
		d, err := a.UserDelete(c.Ctx, &pb.AuthUserDeleteRequest{Name: "root"})
		c.WantGRPCError(c.GRPC("delete root", d, err), "InvalidArgument", "etcdserver: invalid auth management")
		r, err := a.UserRevokeRole(c.Ctx, &pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"})
		c.WantGRPCError(c.GRPC("revoke root role", r, err), "InvalidArgument", "etcdserver: invalid auth management")
		c.WantOK(en("enable again as root"))
		dis, err := a.AuthDisable(c.Ctx, &pb.AuthDisableRequest{})
		c.WantOK(c.GRPC("disable", dis, err))
	})
	d, err := a.UserDelete(c.Ctx, &pb.AuthUserDeleteRequest{Name: "root"})
	c.WantOK(c.GRPC("delete root when disabled", d, err))
	c.WantOK(c.Get("get after disable", "k"))
}

// authSetup makes root, and "reader" with READ on the case's apisix/
// prefix only, seeds keys inside and outside it, a lease holding the
// outside key, and enables authentication. It returns root's and
// reader's tokens.
func authSetup(c *Conn) (root, reader string) {
	a := c.AuthStub()
	steps := []func() (any, error){
		func() (any, error) { return a.UserAdd(c.Ctx, &pb.AuthUserAddRequest{Name: "root", Password: "rootpw"}) },
		func() (any, error) {
			return a.UserGrantRole(c.Ctx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
		},
		func() (any, error) { return a.UserAdd(c.Ctx, &pb.AuthUserAddRequest{Name: "reader", Password: "rpw"}) },
		func() (any, error) { return a.RoleAdd(c.Ctx, &pb.AuthRoleAddRequest{Name: "apx"}) },
		func() (any, error) {
			return a.RoleGrantPermission(c.Ctx, &pb.AuthRoleGrantPermissionRequest{Name: "apx", Perm: &authpb.Permission{
				PermType: authpb.READ, Key: []byte(c.Key("apisix/")), RangeEnd: []byte(prefixEnd(c, "apisix/"))}})
		},
		func() (any, error) {
			return a.UserGrantRole(c.Ctx, &pb.AuthUserGrantRoleRequest{User: "reader", Role: "apx"})
		},
		func() (any, error) { return a.RoleAdd(c.Ctx, &pb.AuthRoleAddRequest{Name: "other"}) },
		func() (any, error) { return a.UserAdd(c.Ctx, &pb.AuthUserAddRequest{Name: "writer", Password: "wpw"}) },
		func() (any, error) { return a.RoleAdd(c.Ctx, &pb.AuthRoleAddRequest{Name: "apw"}) },
		func() (any, error) {
			return a.RoleGrantPermission(c.Ctx, &pb.AuthRoleGrantPermissionRequest{Name: "apw", Perm: &authpb.Permission{
				PermType: authpb.READWRITE, Key: []byte(c.Key("apisix/")), RangeEnd: []byte(prefixEnd(c, "apisix/"))}})
		},
		func() (any, error) {
			return a.UserGrantRole(c.Ctx, &pb.AuthUserGrantRoleRequest{User: "writer", Role: "apw"})
		},
	}
	for _, s := range steps {
		_, err := s()
		c.Check(err == nil, "setup: %v", err)
	}
	seed(c, "apisix/r1", "v1", "other", "v2")
	lease, err := c.LeaseStub().LeaseGrant(c.Ctx, &pb.LeaseGrantRequest{ID: c.LeaseID(1), TTL: 600})
	c.Check(err == nil, "grant: %v", err)
	_, err = c.Client.Put(c.Ctx, c.Key("leased"), "v", clientv3.WithLease(clientv3.LeaseID(lease.ID)))
	c.Check(err == nil, "put with lease: %v", err)
	en, err := a.AuthEnable(c.Ctx, &pb.AuthEnableRequest{})
	c.WantOK(c.GRPC("enable", en, err))
	return login(c, "authenticate root", "root", "rootpw"), login(c, "authenticate reader", "reader", "rpw")
}

// authTeardown disables authentication with root's token and removes the
// users and roles, so the target is as before.
func authTeardown(c *Conn, root string) {
	a := c.AuthStub()
	asToken(c, root, func() {
		d, err := a.AuthDisable(c.Ctx, &pb.AuthDisableRequest{})
		c.WantOK(c.GRPC("disable", d, err))
	})
	for _, u := range []string{"root", "reader", "writer"} {
		_, err := a.UserDelete(c.Ctx, &pb.AuthUserDeleteRequest{Name: u})
		c.Check(err == nil, "teardown: %v", err)
	}
	for _, r := range []string{"apx", "other", "apw"} {
		_, err := a.RoleDelete(c.Ctx, &pb.AuthRoleDeleteRequest{Role: r})
		c.Check(err == nil, "teardown: %v", err)
	}
	for _, i := range []int{1, 2} {
		_, err := c.Client.Revoke(context.Background(), clientv3.LeaseID(c.LeaseID(i)))
		c.Check(err == nil, "teardown revoke: %v", err)
	}
}
