package node

import (
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// A keepalive for a lease whose TTL has run out, but that the expiry loop
// has not revoked yet, must not bring it back: etcd's lessor.Renew answers
// ErrLeaseNotFound for an expired lease (it waits for the revoke).
func TestKeepaliveCannotReviveExpiredLease(t *testing.T) {
	store, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	data, _ := fsm.Encode(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 7, TTL: 5}})
	if res := store.Apply(1, data); res.Err != nil {
		t.Fatal(res.Err)
	}
	l := newLessor(store)
	l.promote()
	t0 := time.Now()
	if got, _ := l.expired(t0, 10); len(got) != 0 { // starts the TTL at t0
		t.Fatalf("expired at grant: %v", got)
	}
	later := t0.Add(6 * time.Second)
	// The expiry loop would revoke 7 at its next tick; a keepalive gets in
	// first.
	ttl, err := l.renew(7, later)
	if !errors.Is(err, fsm.ErrLeaseNotFound) {
		t.Errorf("renew of a lease expired 1s ago: ttl %d, err %v; want ErrLeaseNotFound", ttl, err)
	}
	if got, _ := l.expired(later, 10); len(got) != 1 {
		t.Errorf("lease expired 1s ago is no longer due for revocation after a keepalive: expired() = %v", got)
	}
}

// A lease revoked and granted again under the same ID (clients may choose
// IDs) before the expiry loop next runs keeps the old lease's deadline.
func TestRegrantedLeaseStartsItsOwnTTL(t *testing.T) {
	store, _ := fsm.New(fsm.DefaultConfig())
	idx := uint64(0)
	apply := func(r *pb.InternalRaftRequest) {
		idx++
		data, _ := fsm.Encode(r)
		if res := store.Apply(idx, data); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	apply(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 7, TTL: 5}})
	l := newLessor(store)
	l.promote()
	t0 := time.Now()
	l.expired(t0, 10) // deadline t0+5s
	apply(&pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 7}})
	apply(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 7, TTL: 100}}) // at ~t0
	if got, _ := l.expired(t0.Add(6*time.Second), 10); len(got) != 0 {
		t.Errorf("lease 7 granted with TTL 100 at t0 is expired 6s later: %v", got)
	}
}

// A grant the leader applied starts its TTL then, however late the expiry
// loop first looks at it, and the loop is told to look before its next
// regular check; expired() reports the next deadline ahead.
func TestLeaseDeadlineRunsFromGrant(t *testing.T) {
	store, _ := fsm.New(fsm.DefaultConfig())
	for i, id := range []int64{7, 8} {
		data, _ := fsm.Encode(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: id, TTL: int64(2 + 3*i)}})
		if res := store.Apply(uint64(i+1), data); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	l := newLessor(store)
	l.promote()
	t0 := time.Now()
	l.granted(7, 1, 2, t0)
	l.granted(8, 2, 5, t0)
	select {
	case <-l.sooner:
	default:
		t.Fatal("a grant did not wake the expiry loop")
	}
	got, next := l.expired(t0.Add(2100*time.Millisecond), 10) // first look, after 7's TTL
	if len(got) != 1 || got[0] != 7 {
		t.Fatalf("expired 2.1s after the grant: %v, want [7]", got)
	}
	if want := t0.Add(5 * time.Second); !next.Equal(want) {
		t.Fatalf("next deadline %v, want %v", next, want)
	}
	l.demote()
	l.granted(9, 3, 2, t0) // a follower keeps no deadlines
	if _, ok := l.deadlines[9]; ok {
		t.Fatal("a follower recorded a deadline")
	}
}

// The expiry loop is woken only when it must look sooner than it sleeps:
// on winning an election, and by a grant whose deadline comes before the
// one it sleeps until; not by a later grant.
func TestLessorWakesOnlyForAnEarlierDeadline(t *testing.T) {
	store, _ := fsm.New(fsm.DefaultConfig())
	l := newLessor(store)
	woken := func() bool {
		select {
		case <-l.sooner:
			return true
		default:
			return false
		}
	}
	l.promote()
	if !woken() {
		t.Fatal("winning an election did not wake the expiry loop")
	}
	t0 := time.Now()
	l.granted(7, 1, 5, t0)
	if !woken() {
		t.Fatal("the first grant did not wake the expiry loop")
	}
	l.granted(8, 2, 10, t0)
	if woken() {
		t.Error("a grant expiring after the next deadline woke the expiry loop")
	}
	l.granted(9, 3, 2, t0)
	if !woken() {
		t.Error("a grant expiring before the next deadline did not wake the expiry loop")
	}
}

// An imported lease expires nothing while the store imports; the leader
// that applies the finish starts it from what it had left at the source,
// and a later leader gives it its full TTL, as to every lease.
func TestImportedLeaseClock(t *testing.T) {
	store, _ := fsm.New(fsm.DefaultConfig())
	idx := uint64(0)
	apply := func(e *fsm.ImportEntry) {
		idx++
		data, err := fsm.EncodeImport(e)
		if err != nil {
			t.Fatal(err)
		}
		if res := store.Apply(idx, data); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	l := newLessor(store)
	l.promote()
	apply(&fsm.ImportEntry{Kind: fsm.ImportBegin, Msg: &pb.ResponseHeader{ClusterId: 1}})
	apply(&fsm.ImportEntry{Kind: fsm.ImportLease, Msg: &pb.LeaseTimeToLiveResponse{ID: 7, GrantedTTL: 60, TTL: 10}})
	t0 := time.Now()
	if got, _ := l.expired(t0.Add(time.Hour), 10); len(got) != 0 {
		t.Fatalf("expired while importing: %v", got)
	}
	apply(&fsm.ImportEntry{Kind: fsm.ImportFinish, Msg: &pb.LeaseLeasesResponse{Header: &pb.ResponseHeader{Revision: 1}, Leases: []*pb.LeaseStatus{{ID: 7}}}})
	l.started(idx)
	if got, _ := l.expired(t0, 10); len(got) != 0 {
		t.Fatalf("expired at the finish: %v", got)
	}
	if got, _ := l.expired(t0.Add(11*time.Second), 10); len(got) != 1 {
		t.Fatalf("not expired 11 s after a finish with 10 s left: %v", got)
	}
	l.demote()
	l.promote() // a new leader
	if got, _ := l.expired(t0, 10); len(got) != 0 {
		t.Fatalf("expired at promotion: %v", got)
	}
	if got, _ := l.expired(t0.Add(11*time.Second), 10); len(got) != 0 {
		t.Fatalf("a new leader gave the imported lease less than its TTL: %v", got)
	}
}
