// Package release names the release a build belongs to and the commit it
// was built from.
package release

import (
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
)

// Name is the release this tree is, or leads to: the last entry of RELEASES
// for a released commit, the next release with "-dev" between releases.
const Name = "v0.2.0-dev"

// First is the first release. Its members gossip no release name, so a
// member that names none runs First.
const First = "v0.1.0"

// Of returns the release a member runs from the name it gossips: First
// for none.
func Of(gossiped string) string {
	if gossiped == "" {
		return First
	}
	return gossiped
}

// Knows reports whether a member running release have knows what release
// need introduced. A development build ("vX.Y.Z-dev") knows what its
// coming release vX.Y.Z introduces so far: features are marked with the
// release they will ship in, and a -dev build is never mixed with that
// release in one cluster.
func Knows(have, need string) bool {
	return Compare(strings.TrimSuffix(have, "-dev"), need) >= 0
}

// Oldest returns the oldest of the given releases ("" for none).
func Oldest(names ...string) string {
	var oldest string
	for i, n := range names {
		if i == 0 || Compare(n, oldest) < 0 {
			oldest = n
		}
	}
	return oldest
}

// commit can be set at build time (-ldflags "-X .../release.commit=...");
// otherwise it comes from the Go toolchain's VCS stamp.
var commit string

var (
	commitOnce sync.Once
	resolved   string
)

// Commit returns the commit the binary was built from ("+dirty" when the
// tree had changes), or "unknown".
func Commit() string {
	commitOnce.Do(func() {
		resolved = commit
		if resolved != "" {
			return
		}
		resolved = "unknown"
		info, ok := debug.ReadBuildInfo()
		if !ok {
			return
		}
		var rev, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" {
			resolved = rev + dirty
		}
	})
	return resolved
}

// Compare orders release names: -1, 0 or 1 as a is older than, the same
// as, or newer than b. "vX.Y.Z-dev" comes after vX.Y.Z's predecessors and
// before vX.Y.Z. A name that does not parse is older than any that does.
func Compare(a, b string) int {
	pa, oka := parse(a)
	pb, okb := parse(b)
	switch {
	case !oka && !okb:
		return 0
	case !oka:
		return -1
	case !okb:
		return 1
	}
	for i := range pa {
		if pa[i] != pb[i] {
			if pa[i] < pb[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// parse reads "vX.Y.Z" or "vX.Y.Z-dev" as X, Y, Z and 1 for a release, 0
// for -dev.
func parse(name string) ([4]int, bool) {
	var p [4]int
	rest, ok := strings.CutPrefix(name, "v")
	if !ok {
		return p, false
	}
	p[3] = 1
	if r, dev := strings.CutSuffix(rest, "-dev"); dev {
		rest, p[3] = r, 0
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return p, false
	}
	for i, s := range parts {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, false
		}
		p[i] = n
	}
	return p, true
}
