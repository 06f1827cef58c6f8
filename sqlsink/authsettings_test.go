package sqlsink

import (
	"reflect"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// TestAuthSettings: enabling authentication writes the switch, the auth
// revision and the signing key to auth_settings, and a rebuild from the
// database brings them back, so tokens issued before verify after; a
// disable is written too.
func TestAuthSettings(t *testing.T) {
	forEachDatabase(t, testAuthSettings)
}

func testAuthSettings(t *testing.T, sk *Sink) {
	rs := newTestStore(t)
	key, _ := fsm.NewSigningKey()
	for _, r := range []*pb.InternalRaftRequest{
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "root", Password: "pw"}},
		{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}},
		{AuthEnable: &pb.AuthEnableRequest{}, Authenticate: &pb.InternalAuthenticateRequest{SimpleToken: key}},
	} {
		rs.applyAuth(r)
	}
	runUntil(t, sk, rs.s, func() bool { return sk.sunkIndex.Load() >= rs.idx })
	rebuilt := rebuild(t, sk)
	if !reflect.DeepEqual(rebuilt.Auth(), rs.s.Auth()) {
		t.Fatalf("auth after rebuild:\n%+v\nwant\n%+v", rebuilt.Auth(), rs.s.Auth())
	}
	hash, err := rs.s.CheckPassword("root", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rebuilt.CheckPassword("root", "pw"); err != nil {
		t.Fatalf("root's password after rebuild: %v", err)
	}
	tok, err := rs.s.IssueToken("root", hash, time.Now().Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := rebuilt.CheckToken(tok, time.Now()); u != "root" || err != nil {
		t.Fatalf("a token issued before the rebuild: %q, %v", u, err)
	}
	rs.applyAuth(&pb.InternalRaftRequest{AuthDisable: &pb.AuthDisableRequest{}})
	runUntil(t, sk, rs.s, func() bool { return sk.sunkIndex.Load() >= rs.idx })
	if a := rebuild(t, sk).Auth(); a.Enabled || a.Revision != rs.s.Auth().Revision {
		t.Fatalf("after disable, rebuilt: enabled %v revision %d", a.Enabled, a.Revision)
	}
}
