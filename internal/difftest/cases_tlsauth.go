package difftest

import (
	"crypto/tls"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// cnGatewayRefusal is etcd 3.4's answer to every gateway call over a
// connection whose client certificate has a CN, while authentication is
// enabled: it does not know which identity to use.
const cnGatewayRefusal = "CommonName of client sending a request against gateway will be ignored and not used as expected\n"

// tlsAuthCN enables authentication on a TLS port. With a client
// certificate without CN both sides are compared strictly: the token comes
// from the https gateway, as APISIX gets it, and is used over the gateway
// and gRPC. With certificates whose CN names a user ("apisix", "root")
// the two differ on purpose (docs/compatibility.md): etcd 3.4 refuses
// every gateway call (cnGatewayRefusal), and runs a gRPC call without a
// token as the CN's user; etcdsql never refuses a gateway call for its CN
// (APISIX sends them) and never uses the CN. Those observations are
// lenient and each side's answer is stated. A token takes precedence over
// the CN on both.
func tlsAuthCN(c *Conn, p TLSPKI) {
	withCert(c, p.config(p.NoCN), func() {
		tlsAuthSetup(c)
		tok := gatewayLogin(c, "authenticate over https")
		asToken(c, tok, func() {
			c.WantOK(c.Post("gateway put with token", "/v3/kv/put", M{"key": c.BKey("apisix/r2"), "value": B64("v")}))
			r := c.Post("gateway range with token", "/v3/kv/range", M{"key": c.BKey("apisix/"), "range_end": B64(prefixEnd(c, "apisix/"))})
			wantKeys(c, r, "body.kvs", "apisix/r1", "apisix/r2")
			s := c.WatchHTTP("gateway watch with token", httpCreate(c, "apisix/", nil))
			c.Want(s.Collect("watch created", Msgs(1), streamWait), "messages[0].result.created", true)
			c.WantOK(c.Post("gateway put for the watch", "/v3/kv/put", M{"key": c.BKey("apisix/r3"), "value": B64("w")}))
			c.Want(s.Collect("watch event", Events(1), streamWait), "messages[0].result.events[0].kv.key", c.BKey("apisix/r3"))
			c.WantHTTPError(c.Post("gateway put outside with token", "/v3/kv/put", M{"key": c.BKey("other"), "value": B64("x")}),
				403, 7, errDenied)
			c.WantGRPCError(c.Put("gRPC put outside with token", c.Key("other"), "x"), "PermissionDenied", errDenied)
		})
		// Without a token etcd still takes a CN: the empty one of this
		// certificate over gRPC, and its own server certificate's through
		// the gateway (which dials gRPC with it); neither is a user.
		g := c.Post("gateway range without token", "/v3/kv/range", M{"key": c.BKey("apisix/r1")}).Lenient("status", "body")
		wantNoToken(c, g, func() { c.WantHTTPError(g, 403, 7, errDenied) },
			func() { c.WantHTTPError(g, 400, 3, "etcdserver: user name is empty") })
		o := c.Get("gRPC get without token", c.Key("apisix/r1")).Lenient("code", "error")
		wantNoToken(c, o, func() { c.WantGRPCError(o, "PermissionDenied", errDenied) },
			func() { c.WantGRPCError(o, "InvalidArgument", "etcdserver: user name is empty") })
		cnCalls(c, p, tok)
		tlsAuthTeardown(c)
	})
}

// gatewayLogin authenticates apisix over the gateway and returns the
// token, recorded on a lenient path (it differs between any two servers).
func gatewayLogin(c *Conn, label string) string {
	auth := c.Post(label, "/v3/auth/authenticate", M{"name": "apisix", "password": "apw"}).Lenient("body.token")
	c.Want(auth, "status", 200)
	tok := auth.Str("body.token")
	c.Check(tok != "", "%s: no token", label)
	return tok
}

// cnCalls makes calls over connections presenting a certificate whose CN
// is a user, with and without apisix's token; see tlsAuthCN.
func cnCalls(c *Conn, p TLSPKI, tok string) {
	withCert(c, p.config(p.Client), func() {
		a := c.Post("gateway authenticate, CN apisix", "/v3/auth/authenticate", M{"name": "apisix", "password": "apw"})
		wantCNGateway(c, a.Lenient("status", "text", "body"))
		asToken(c, tok, func() {
			r := c.Post("gateway range, CN apisix, token", "/v3/kv/range", M{"key": c.BKey("apisix/r1")})
			wantCNGateway(c, r.Lenient("status", "text", "body"))
		})
		o := c.Get("gRPC get, CN apisix, no token", c.Key("apisix/r1")).Lenient("code", "error", "body")
		wantCNgRPC(c, o)
	})
	withCert(c, p.config(p.RootCN), func() {
		ul, err := c.AuthStub().UserList(c.Ctx, &pb.AuthUserListRequest{})
		wantCNgRPC(c, c.GRPC("gRPC user list, CN root, no token", ul, err).Lenient("code", "error", "body"))
		// A token takes precedence over the CN on both sides.
		asToken(c, tok, func() {
			c.WantGRPCError(c.Get("gRPC get outside, CN root, apisix's token", c.Key("other")), "PermissionDenied", errDenied)
		})
	})
}

// wantCNGateway: etcd refuses a gateway call whose certificate has a CN;
// etcdsql answers it.
func wantCNGateway(c *Conn, o *Obs) {
	c.t.Helper()
	if c.Target.Name == "subject" {
		c.Want(o, "status", 200)
		return
	}
	c.Want(o, "", M{"status": 400, "text": cnGatewayRefusal})
}

// wantCNgRPC: etcd runs a gRPC call without a token as the user its
// certificate's CN names; etcdsql refuses it for want of a token.
func wantCNgRPC(c *Conn, o *Obs) {
	c.t.Helper()
	wantNoToken(c, o, func() { c.Want(o, "code", "OK") },
		func() { c.WantGRPCError(o, "InvalidArgument", "etcdserver: user name is empty") })
}

// wantNoToken states what each side answers to a call without a token
// that etcd attributes to a certificate's CN: ref on the reference, subj
// on the subject.
func wantNoToken(c *Conn, o *Obs, ref, subj func()) {
	c.t.Helper()
	if c.Target.Name == "subject" {
		subj()
		return
	}
	ref()
}

// withCert runs f with c's clients replaced by new ones presenting cfg.
func withCert(c *Conn, cfg *tls.Config, f func()) {
	cli, h := c.Client, c.HTTP
	defer func() { c.Client, c.HTTP = cli, h }()
	nc, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Target.URL}, TLS: cfg, DialTimeout: dialTimeout, Logger: zap.NewNop()})
	if err != nil {
		c.Fatalf("dial with certificate: %v", err)
	}
	defer nc.Close()
	nh := NewHTTPClientTLS(c.Target.URL, cfg)
	defer nh.Close()
	c.Client, c.HTTP = nc, nh
	f()
}

// tlsAuthSetup makes root and "apisix" (READWRITE on the case's apisix/
// prefix), seeds a key inside and one outside, and enables authentication.
func tlsAuthSetup(c *Conn) {
	a := c.AuthStub()
	steps := []func() (any, error){
		func() (any, error) { return a.UserAdd(c.Ctx, &pb.AuthUserAddRequest{Name: "root", Password: "rootpw"}) },
		func() (any, error) {
			return a.UserGrantRole(c.Ctx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
		},
		func() (any, error) { return a.UserAdd(c.Ctx, &pb.AuthUserAddRequest{Name: "apisix", Password: "apw"}) },
		func() (any, error) { return a.RoleAdd(c.Ctx, &pb.AuthRoleAddRequest{Name: "apw"}) },
		func() (any, error) {
			return a.RoleGrantPermission(c.Ctx, &pb.AuthRoleGrantPermissionRequest{Name: "apw", Perm: &authpb.Permission{
				PermType: authpb.READWRITE, Key: []byte(c.Key("apisix/")), RangeEnd: []byte(prefixEnd(c, "apisix/"))}})
		},
		func() (any, error) {
			return a.UserGrantRole(c.Ctx, &pb.AuthUserGrantRoleRequest{User: "apisix", Role: "apw"})
		},
	}
	for i, s := range steps {
		_, err := s()
		c.Check(err == nil, "setup step %d: %v", i, err)
	}
	seed(c, "apisix/r1", "v1", "other", "v2")
	en, err := a.AuthEnable(c.Ctx, &pb.AuthEnableRequest{})
	c.WantOK(c.GRPC("enable", en, err))
}

// tlsAuthTeardown disables authentication as root and removes the users
// and the role.
func tlsAuthTeardown(c *Conn) {
	a := c.AuthStub()
	asToken(c, login(c, "authenticate root", "root", "rootpw"), func() {
		d, err := a.AuthDisable(c.Ctx, &pb.AuthDisableRequest{})
		c.WantOK(c.GRPC("disable", d, err))
	})
	for _, u := range []string{"root", "apisix"} {
		_, err := a.UserDelete(c.Ctx, &pb.AuthUserDeleteRequest{Name: u})
		c.Check(err == nil, "teardown: %v", err)
	}
	_, err := a.RoleDelete(c.Ctx, &pb.AuthRoleDeleteRequest{Role: "apw"})
	c.Check(err == nil, "teardown: %v", err)
}
