package rpc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/internal/etcdbackend"
)

// snapshotBackend serves snapshots (and the auth checks before them) from
// a bare store.
type snapshotBackend struct{ storeBackend }

func (b snapshotBackend) StoreSnapshot() *fsm.Snapshot { return b.s.Snapshot() }
func (b snapshotBackend) AuthStore() AuthReads         { return b.s }

// snapshotServer serves s with snapshots built in dir.
func snapshotServer(t *testing.T, s *fsm.Store, dir string) *clientv3.Client {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SnapshotDir = dir
	srv, l := backendServer(t, snapshotBackend{storeBackend{s: s}}, cfg)
	return serve(t, srv, l)
}

// bigStore holds about 2 MiB of values over many revisions, a compaction
// and a leased key.
func bigStore(t *testing.T) *fsm.Store {
	t.Helper()
	s, _ := fsm.New(fsm.DefaultConfig())
	idx := uint64(0)
	apply := func(r *pb.InternalRaftRequest) {
		idx++
		data, err := fsm.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		if res := s.Apply(idx, data); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	value := bytes.Repeat([]byte("v"), 1024)
	apply(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 7, TTL: 600}})
	for i := range 2000 {
		apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: fmt.Appendf(nil, "k%04d", i%1500), Value: value, Lease: int64(i % 2 * 7)}})
	}
	apply(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 1800}})
	apply(&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("k0001")}})
	return s
}

// TestSnapshotStream: the stream is etcd's (chunks of at most 32 KiB with
// the bytes still to come, then the sha256 sum of the database), the file
// holds the store's state, and the temporary file is gone once sent.
func TestSnapshotStream(t *testing.T) {
	s := bigStore(t)
	dir := t.TempDir()
	c := snapshotServer(t, s, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := pb.NewMaintenanceClient(c.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var db []byte
	var msgs []*pb.SnapshotResponse
	for {
		r, err := stream.Recv()
		if err != nil {
			break
		}
		msgs = append(msgs, r)
	}
	if len(msgs) < 10 {
		t.Fatalf("%d messages for about 2 MiB", len(msgs))
	}
	for i, r := range msgs[:len(msgs)-1] {
		db = append(db, r.Blob...)
		if len(r.Blob) > etcdbackend.ChunkBytes || (i < len(msgs)-2 && len(r.Blob) != etcdbackend.ChunkBytes) {
			t.Errorf("chunk %d of %d bytes", i, len(r.Blob))
		}
	}
	sum := sha256.Sum256(db)
	last := msgs[len(msgs)-1]
	if last.RemainingBytes != 0 || !bytes.Equal(last.Blob, sum[:]) {
		t.Errorf("last message: remaining %d, blob %x, want the sum %x", last.RemainingBytes, last.Blob, sum)
	}
	for i, r := range msgs[:len(msgs)-1] {
		sent := 0
		for _, m := range msgs[:i+1] {
			sent += len(m.Blob)
		}
		if r.RemainingBytes != uint64(len(db)-sent) {
			t.Fatalf("chunk %d: remaining %d, want %d", i, r.RemainingBytes, len(db)-sent)
		}
	}

	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, append(db, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := etcdbackend.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := backendState(s.Snapshot().Export())
	if got.Rev != want.Rev || got.CompactRev != 1800 || got.ConsistentIndex != want.ConsistentIndex ||
		!reflect.DeepEqual(got.History, want.History) || !reflect.DeepEqual(got.Leases, want.Leases) {
		t.Fatalf("file holds rev %d compact %d index %d, %d versions, leases %v; the store rev %d index %d, %d versions, leases %v",
			got.Rev, got.CompactRev, got.ConsistentIndex, len(got.History), got.Leases, want.Rev, want.ConsistentIndex, len(want.History), want.Leases)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("snapshot dir holds %d files after the snapshot", len(left))
	}
}

// TestSnapshotCanceled: a client that hangs up mid-stream leaves no
// temporary file behind.
func TestSnapshotCanceled(t *testing.T) {
	dir := t.TempDir()
	c := snapshotServer(t, bigStore(t), dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sctx, stop := context.WithCancel(ctx)
	stream, err := pb.NewMaintenanceClient(c.ActiveConnection()).Snapshot(sctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	stop()
	for {
		left, _ := os.ReadDir(dir)
		if len(left) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("snapshot dir still holds %d files after the client hung up", len(left))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestSnapshotGateway: the HTTP/JSON gateway streams the same snapshot,
// one JSON object per chunk, as etcd's does.
func TestSnapshotGateway(t *testing.T) {
	s := bigStore(t)
	dir := t.TempDir()
	c := snapshotServer(t, s, dir)
	resp, err := http.Post("http://"+c.Endpoints()[0]+"/v3/maintenance/snapshot", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var blobs [][]byte
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Result struct {
				Blob []byte `json:"blob"`
			} `json:"result"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, msg.Result.Blob)
	}
	if len(blobs) < 10 {
		t.Fatalf("%d messages for about 2 MiB", len(blobs))
	}
	db := bytes.Join(blobs[:len(blobs)-1], nil)
	if sum := sha256.Sum256(db); !bytes.Equal(blobs[len(blobs)-1], sum[:]) {
		t.Fatalf("the last message is not the sum of the %d bytes before it", len(db))
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, bytes.Join(blobs, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := etcdbackend.ReadFile(path)
	if err != nil {
		t.Fatalf("snapshot from the gateway: %v", err)
	}
	if st.Rev != s.Rev() {
		t.Fatalf("snapshot from the gateway at revision %d, the store is at %d", st.Rev, s.Rev())
	}
}
