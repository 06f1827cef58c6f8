package upgradetest

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ErrNoHistory means the commit of a release is not in this checkout: no
// git, no .git, or a shallow clone without it.
var ErrNoHistory = errors.New("upgradetest: release commit not in git history")

// builds caches one build per release name ("" for the current tree) for
// the life of the test binary.
var builds struct {
	mu   sync.Mutex
	dir  string // holds every binary; removed by Cleanup
	bins map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Current returns the path of the etcdsql binary built from this tree,
// building it on first use.
func Current(t testing.TB) string {
	t.Helper()
	return binary(t, "")
}

// Release returns the path of the etcdsql binary of the named release
// (a name in RELEASES), built on first use from the repository's own
// history: the release's commit is exported with git archive into a
// temporary directory and built there, so neither the checkout nor its git
// metadata changes. Without that history (no git, or a shallow clone) the
// test is skipped, and fails under CI=true, where the clone must have it.
func Release(t testing.TB, name string) string {
	t.Helper()
	return binary(t, name)
}

// Cleanup removes every binary built so far (TestMain calls it).
func Cleanup() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.dir, builds.bins = "", nil
}

func binary(t testing.TB, name string) string {
	t.Helper()
	b, dir, err := slot(name)
	if err != nil {
		t.Fatal(err)
	}
	b.once.Do(func() { b.path, b.err = buildOne(dir, name) })
	switch {
	case errors.Is(b.err, ErrNoHistory) && os.Getenv("CI") == "true":
		t.Fatalf("%v (CI=true: the clone must carry the history of every release)", b.err)
	case errors.Is(b.err, ErrNoHistory):
		t.Skipf("skipped: %v", b.err)
	case b.err != nil:
		t.Fatalf("build %s: %v", label(name), b.err)
	}
	return b.path
}

func label(name string) string {
	if name == "" {
		return "the current tree"
	}
	return "release " + name
}

// slot returns the cache entry of name and the directory binaries go to.
func slot(name string) (*build, string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir == "" {
		d, err := os.MkdirTemp("", "etcdsql-upgradetest-")
		if err != nil {
			return nil, "", err
		}
		builds.dir, builds.bins = d, map[string]*build{}
	}
	b := builds.bins[name]
	if b == nil {
		b = &build{}
		builds.bins[name] = b
	}
	return b, builds.dir, nil
}

// buildOne builds release name (the current tree for "") into dir.
func buildOne(dir, name string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "etcdsql-current")
	if name == "" {
		return out, goBuild(root, out)
	}
	commit, err := releaseCommit(root, name)
	if err != nil {
		return "", err
	}
	if err := haveCommit(root, commit); err != nil {
		return "", err
	}
	src, err := os.MkdirTemp(dir, "src-"+name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	if err := export(root, commit, src); err != nil {
		return "", err
	}
	out = filepath.Join(dir, "etcdsql-"+name)
	return out, goBuild(src, out)
}

// moduleRoot is the nearest directory above the working directory that
// holds go.mod.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("upgradetest: no go.mod above the working directory")
		}
		d = up
	}
}

// releaseCommit reads name's commit from RELEASES ("name commit date"
// lines, # comments).
func releaseCommit(root, name string) (string, error) {
	f, err := os.Open(filepath.Join(root, "RELEASES"))
	if err != nil {
		return "", fmt.Errorf("upgradetest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == name {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("upgradetest: RELEASES: %w", err)
	}
	return "", fmt.Errorf("upgradetest: release %s is not in RELEASES", name)
}

// haveCommit returns ErrNoHistory unless git finds commit in root's
// repository.
func haveCommit(root, commit string) error {
	if _, err := exec.LookPath("git"); err != nil {
		return fmt.Errorf("%w: git is not installed", ErrNoHistory)
	}
	if out, err := gitCmd(root, "rev-parse", "--git-dir").CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s is not a git checkout (%s)", ErrNoHistory, root, strings.TrimSpace(string(out)))
	}
	if err := gitCmd(root, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		return fmt.Errorf("%w: commit %s is missing (a shallow clone? git fetch --unshallow)", ErrNoHistory, commit)
	}
	return nil
}

func gitCmd(root string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", append([]string{"-C", root}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	return cmd
}

// export writes commit's tree into dst (git archive, read as tar).
func export(root, commit, dst string) error {
	cmd := gitCmd(root, "archive", "--format=tar", commit)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("upgradetest: git archive: %w", err)
	}
	uerr := untar(pipe, dst)
	io.Copy(io.Discard, pipe)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("upgradetest: git archive %s: %w: %s", commit, err, stderr.String())
	}
	return uerr
}

// untar extracts directories, regular files and symlinks of r into dst.
func untar(r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("upgradetest: read archive: %w", err)
		}
		p := filepath.Join(dst, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dst)+string(os.PathSeparator)) {
			return fmt.Errorf("upgradetest: archive path %q leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			err = writeFile(p, tr, h.FileInfo().Mode().Perm())
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		}
		if err != nil {
			return fmt.Errorf("upgradetest: extract %s: %w", h.Name, err)
		}
	}
}

func writeFile(p string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// goBuild builds ./cmd/etcdsql of the module in dir into out. The VCS stamp
// is off: an exported tree has no .git.
func goBuild(dir, out string) error {
	cmd := exec.Command("go", "build", "-o", out, "./cmd/etcdsql")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build in %s: %v\n%s", dir, err, b)
	}
	return nil
}
