package haproxytest

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// The rendered configuration is the deployment's, with only the address
// it binds and the servers' addresses changed.
func TestConfigIsTheDeployments(t *testing.T) {
	got, err := Config("127.0.0.1:1", []string{"http://127.0.0.1:2", "http://127.0.0.1:3"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(DeployConfig())
	if err != nil {
		t.Fatal(err)
	}
	var want, have []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] != "bind" && f[0] != "server" && f[0] != "maxconn" {
			want = append(want, l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && f[0] == "bind":
			if l != "    bind 127.0.0.1:1" {
				t.Errorf("bind line %q", l)
			}
		case len(f) == 2 && f[0] == "maxconn":
			if n, err := strconv.Atoi(f[1]); err != nil || n <= 0 || n > fdMaxconn() {
				t.Errorf("maxconn line %q", l)
			}
		case len(f) > 0 && f[0] == "server":
			if len(f) < 4 || !strings.HasPrefix(f[2], "127.0.0.1:") || f[3] != "check" {
				t.Errorf("server line %q", l)
			}
		case len(f) > 0:
			have = append(have, l)
		}
	}
	if strings.Join(have, "\n") != strings.Join(want, "\n") {
		t.Errorf("settings differ from %s:\n%s\nwant:\n%s", DeployConfig(), strings.Join(have, "\n"), strings.Join(want, "\n"))
	}
	if n := strings.Count(got, "\n    server "); n != 2 {
		t.Errorf("%d server lines, want 2", n)
	}
}
