package cluster

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// testdata/meta-v0.1.0.json is a member's gossip metadata as release
// v0.1.0 encoded it.

// This release reads v0.1.0's metadata: format 0, no release name, every
// field it had.
func TestReadV010Meta(t *testing.T) {
	raw, err := os.ReadFile("testdata/meta-v0.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	var m Meta
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	want := Meta{RaftAddr: "10.0.0.1:2380", InternalAddr: "10.0.0.1:2380", ClientURLs: []string{"http://10.0.0.1:2379"},
		PeerURLs: []string{"http://10.0.0.1:2380"}, Role: RoleVoter, ClusterID: "5f3e2a1b", Nonce: "0011223344556677"}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("read %+v, want %+v", m, want)
	}
}

// What this release gossips, v0.1.0 reads: every key v0.1.0 knew keeps
// its name and meaning, and with the additions left out it is v0.1.0's
// encoding byte for byte.
func TestV010ReadsThisMeta(t *testing.T) {
	old, err := os.ReadFile("testdata/meta-v0.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	var m Meta
	if err := json.Unmarshal(old, &m); err != nil {
		t.Fatal(err)
	}
	m.Format, m.Version = MetaFormat, "v9.9.9"
	cur, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(cur, &fields); err != nil {
		t.Fatal(err)
	}
	var oldFields map[string]json.RawMessage
	if err := json.Unmarshal(old, &oldFields); err != nil {
		t.Fatal(err)
	}
	for k, v := range oldFields {
		if k == "version" {
			continue
		}
		if !bytes.Equal(fields[k], v) {
			t.Errorf("key %q: %s, v0.1.0 wrote %s", k, fields[k], v)
		}
	}
	if string(fields["format"]) != "1" || string(fields["version"]) != `"v9.9.9"` {
		t.Errorf("format %s, version %s", fields["format"], fields["version"])
	}
}
