package etcdbackend

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// benchState is n keys of 1 KiB, one revision each.
func benchState(n int) *State {
	st := &State{Rev: int64(n + 1)}
	v := bytes.Repeat([]byte("v"), 1024)
	for i := range n {
		rev := int64(i + 2)
		st.History = append(st.History, &mvccpb.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{
			Key: fmt.Appendf(nil, "/apisix/routes/%08d", i), Value: v, CreateRevision: rev, ModRevision: rev, Version: 1}})
	}
	return st
}

// BenchmarkWriteStream builds and streams the file of 100,000 keys of
// 1 KiB, as Maintenance.Snapshot does.
func BenchmarkWriteStream(b *testing.B) {
	st := benchState(100000)
	b.ReportAllocs()
	for range b.N {
		path := filepath.Join(b.TempDir(), "db")
		if err := WriteDB(context.Background(), path, st); err != nil {
			b.Fatal(err)
		}
		n, err := Stream(path, func([]byte, uint64) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(n)
		os.Remove(path)
	}
}

// BenchmarkReadFile reads the file of 100,000 keys of 1 KiB.
func BenchmarkReadFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "db")
	if err := WriteDB(context.Background(), path, benchState(100000)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for range b.N {
		if _, err := ReadFile(path); err != nil {
			b.Fatal(err)
		}
	}
}
