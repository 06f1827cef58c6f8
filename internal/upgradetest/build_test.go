package upgradetest

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseCommit: RELEASES names v0.1.0's commit, and an unknown
// release is an error.
func TestReleaseCommit(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	got, err := releaseCommit(root, "v0.1.0")
	if err != nil || got != "f1178f05fc783a57809e80d9ca498b6d22cff2e3" {
		t.Errorf("v0.1.0 = %q, %v", got, err)
	}
	if _, err := releaseCommit(root, "v9.9.9"); err == nil || !strings.Contains(err.Error(), "not in RELEASES") {
		t.Errorf("unknown release: %v", err)
	}
}

// TestUntarStaysInside: an archive entry that climbs out of the target
// directory is refused.
func TestUntarStaysInside(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("x")
	for _, name := range []string{"ok/file", "../escape"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	dst := t.TempDir()
	err := untar(&buf, dst)
	if err == nil || !strings.Contains(err.Error(), "leaves the directory") {
		t.Errorf("untar: %v, want a refusal of ../escape", err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "ok", "file")); err != nil || string(b) != "x" {
		t.Errorf("ok/file: %q %v", b, err)
	}
}
