package fsm

import (
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
)

// A store refuses to load auth state it could not run safely: enabled with
// a short signing key (tokens anyone could forge), or a user's roles out
// of order.
func TestLoadRefusesUnsafeAuthState(t *testing.T) {
	for _, c := range []struct {
		name string
		auth AuthState
		want string
	}{
		{"enabled without a key", AuthState{Enabled: true, Revision: 1}, "signing key of 0 bytes"},
		{"enabled with a short key", AuthState{Enabled: true, Revision: 1, Key: []byte("short")}, "signing key of 5 bytes"},
		{"roles out of order", AuthState{Users: []*authpb.User{{Name: []byte("u"), Roles: []string{"b", "a"}}}}, "out of order"},
	} {
		h := newHarness(t)
		err := h.s.Load(1, 0, nil, nil, c.auth)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Load = %v, want %q", c.name, err, c.want)
		}
	}
	ok := AuthState{Enabled: true, Revision: 1, Key: make([]byte, SigningKeyBytes), Users: []*authpb.User{{Name: []byte("u"), Roles: []string{"a", "b"}}}}
	if err := newHarness(t).s.Load(1, 0, nil, nil, ok); err != nil {
		t.Fatalf("a sound auth state: %v", err)
	}
}
