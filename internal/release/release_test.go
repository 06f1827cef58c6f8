package release

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// Name is the last release of RELEASES, or leads to a later one.
func TestNameFollowsReleasesFile(t *testing.T) {
	f, err := os.Open("../../RELEASES")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 || len(fields[1]) != 40 {
			t.Fatalf("RELEASES: want name, full commit, date: %q", line)
		}
		last = fields[0]
	}
	if last == "" {
		t.Fatal("RELEASES lists no release")
	}
	if Name != last && !(strings.HasSuffix(Name, "-dev") && Compare(Name, last) > 0) {
		t.Fatalf("release.Name %q: want %q or a later -dev", Name, last)
	}
}

func TestCompare(t *testing.T) {
	order := []string{"nonsense", "v0.1.0", "v0.2.0-dev", "v0.2.0", "v0.2.1", "v0.10.0-dev", "v0.10.0", "v1.0.0"}
	for i, a := range order {
		for j, b := range order {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := Compare(a, b); got != want {
				t.Errorf("Compare(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestKnows(t *testing.T) {
	for _, c := range []struct {
		have, need string
		want       bool
	}{
		{"v0.1.0", "v0.1.0", true},
		{"v0.1.0", "v0.2.0", false},
		{"v0.2.0-dev", "v0.2.0", true},
		{"v0.2.0-dev", "v0.3.0", false},
		{"v0.2.0", "v0.1.0", true},
		{"nonsense", "v0.1.0", false},
		{Of(""), "v0.2.0", false},
		{Of(""), First, true},
	} {
		if got := Knows(c.have, c.need); got != c.want {
			t.Errorf("Knows(%q, %q) = %v, want %v", c.have, c.need, got, c.want)
		}
	}
}

func TestOldest(t *testing.T) {
	if got := Oldest("v0.2.0", "v0.1.0", "v0.2.0-dev"); got != "v0.1.0" {
		t.Fatalf("Oldest = %q, want v0.1.0", got)
	}
	if got := Oldest(); got != "" {
		t.Fatalf("Oldest() = %q, want none", got)
	}
}
