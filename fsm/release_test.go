package fsm

import (
	"errors"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/internal/release"
)

// Every kind of entry the store applies has a release, and every kind with
// a release is applied: a kind added to one and not the other fails here.
// Each kind is tried with its zero request, which is enough for Apply to
// tell a kind it knows (answered, refused or not) from one it does not.
func TestEntryReleaseMatchesApply(t *testing.T) {
	typ := reflect.TypeOf(pb.InternalRaftRequest{})
	kinds := 0
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if f.Name == "Header" || f.Type.Kind() != reflect.Pointer {
			continue
		}
		kinds++
		r := &pb.InternalRaftRequest{}
		reflect.ValueOf(r).Elem().Field(i).Set(reflect.New(f.Type.Elem()))
		data, err := Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		res := newHarness(t).s.Apply(1, data)
		unknown := errors.Is(res.Err, ErrUnknownEntry)
		rel := EntryRelease(r)
		switch {
		case unknown && rel != "":
			t.Errorf("%s: EntryRelease says %q but Apply does not know it", f.Name, rel)
		case !unknown && rel == "":
			t.Errorf("%s: Apply knows it but EntryRelease names no release", f.Name)
		case !unknown && !release.Knows(release.Name, rel):
			t.Errorf("%s: introduced in %q, after this build's %q", f.Name, rel, release.Name)
		}
	}
	if kinds < 20 {
		t.Fatalf("found %d entry kinds in InternalRaftRequest; the walk is broken", kinds)
	}
}

func TestEntryReleaseOfTheFirstKinds(t *testing.T) {
	for _, r := range []*pb.InternalRaftRequest{
		{}, {Put: &pb.PutRequest{}}, {Txn: &pb.TxnRequest{}}, {DeleteRange: &pb.DeleteRangeRequest{}},
		{LeaseGrant: &pb.LeaseGrantRequest{}}, {LeaseRevoke: &pb.LeaseRevokeRequest{}}, {Compaction: &pb.CompactionRequest{}},
	} {
		if got := EntryRelease(r); got != release.First {
			t.Errorf("EntryRelease(%v) = %q, want %q", r, got, release.First)
		}
	}
	if got := EntryRelease(&pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{}}); got != "" {
		t.Errorf("EntryRelease(Alarm) = %q, want none: this release does not apply it", got)
	}
}

// Every import kind has a release, and Apply knows it.
func TestImportReleases(t *testing.T) {
	for k, d := range importKinds {
		if ImportRelease(k) == "" || k.String() != d.name {
			t.Errorf("%v: no release", k)
		}
		data, err := EncodeImport(&ImportEntry{Kind: k, Msg: d.msg()})
		if err != nil {
			t.Fatal(err)
		}
		if res := newHarness(t).s.Apply(1, data); errors.Is(res.Err, ErrUnknownEntry) {
			t.Errorf("%v: Apply does not know it: %v", k, res.Err)
		}
	}
	if ImportRelease(99) != "" {
		t.Error("an unknown kind has a release")
	}
}
