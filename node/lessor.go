package node

import (
	"context"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// lessor keeps the leader's view of when each lease expires. The lease
// itself (TTL, attached keys) is replicated state in fsm; deadlines are not:
// a member that becomes leader starts every lease's full TTL afresh, so no
// lease expires because of a failover. Safe for concurrent use.
type lessor struct {
	store *fsm.Store
	// sooner gets a value when the expiry loop must look again: this
	// member became leader, or a grant set a deadline before the one the
	// loop sleeps until.
	sooner chan struct{}

	mu        sync.Mutex
	primary   bool
	deadlines map[int64]deadline
	// next is the deadline the expiry loop sleeps until (zero: none).
	next time.Time
	// finished is the raft index of the import finish this leader
	// applied (0: none): the leases it started run from what they had
	// left at the source, as etcd's leader had them. A later leader
	// gives them their full TTL, as it does every lease.
	finished uint64
}

// deadline is when one grant of a lease expires.
type deadline struct {
	grantIndex uint64
	at         time.Time
}

func newLessor(store *fsm.Store) *lessor {
	return &lessor{store: store, deadlines: make(map[int64]deadline), sooner: make(chan struct{}, 1)}
}

func (l *lessor) promote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.primary = true
	l.finished = 0
	clear(l.deadlines)
	l.next = time.Time{}
	l.wake()
}

func (l *lessor) demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.primary = false
	clear(l.deadlines)
	l.next = time.Time{}
}

// deadline returns when lease id expires, starting its TTL now if this
// leader has not seen this grant of it yet. Caller holds l.mu.
func (l *lessor) deadline(info fsm.LeaseInfo, now time.Time) time.Time {
	d, ok := l.deadlines[info.ID]
	if !ok || d.grantIndex != info.GrantIndex {
		// An imported lease starts from what it had left at its source.
		ttl := info.TTL
		if info.Remaining > 0 && l.finished != 0 && info.GrantIndex == l.finished {
			ttl = min(ttl, info.Remaining)
		}
		d = deadline{grantIndex: info.GrantIndex, at: now.Add(time.Duration(ttl) * time.Second)}
		l.deadlines[info.ID] = d
	}
	return d.at
}

// granted starts the TTL of a grant this leader has just applied, so that a
// lease's deadline runs from its grant, not from when the expiry loop first
// looks at it. Apply goroutine.
func (l *lessor) granted(id int64, grantIndex uint64, ttl int64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return
	}
	at := now.Add(time.Duration(ttl) * time.Second)
	l.deadlines[id] = deadline{grantIndex: grantIndex, at: at}
	if l.next.IsZero() || at.Before(l.next) {
		l.next = at
		l.wake()
	}
}

// started records that the import finish at raft index idx has been
// applied, and tells the expiry loop that leases have new deadlines.
// Apply goroutine.
func (l *lessor) started(idx uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return
	}
	l.finished = idx
	l.wake()
}

// wake tells the expiry loop to look again. Caller holds l.mu.
func (l *lessor) wake() {
	select {
	case l.sooner <- struct{}{}:
	default:
	}
}

// renew restarts a lease's TTL and returns it. A lease past its deadline
// is gone, even before its revoke is applied: a keepalive cannot revive it.
func (l *lessor) renew(id int64, now time.Time) (int64, error) {
	info, ok := l.store.Lease(id, false)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return 0, ErrNotLeader
	}
	if !ok {
		return 0, fsm.ErrLeaseNotFound
	}
	if d, seen := l.deadlines[id]; seen && d.grantIndex == info.GrantIndex && !d.at.After(now) {
		return 0, fsm.ErrLeaseNotFound
	}
	l.deadlines[id] = deadline{grantIndex: info.GrantIndex, at: now.Add(time.Duration(info.TTL) * time.Second)}
	return info.TTL, nil
}

// remaining returns the whole seconds left on a lease (floored, as etcd).
func (l *lessor) remaining(info fsm.LeaseInfo, now time.Time) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return 0, ErrNotLeader
	}
	left := l.deadline(info, now).Sub(now)
	if left < 0 {
		return 0, nil
	}
	return int64(left / time.Second), nil
}

// expired lists leases past their deadline, at most limit of them (none
// while the store imports), and forgets leases that no longer exist. next
// is the earliest deadline still ahead (zero if none).
func (l *lessor) expired(now time.Time, limit int) (ids []int64, next time.Time) {
	if l.store.Importing() {
		// The source decides: its revocations arrive as deletions, and
		// leases start their clock when the import finishes.
		return nil, time.Time{}
	}
	leases := l.store.Leases()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return nil, time.Time{}
	}
	live := make(map[int64]struct{}, len(leases))
	var out []int64
	for _, info := range leases {
		live[info.ID] = struct{}{}
		at := l.deadline(info, now)
		switch {
		case !at.After(now):
			if len(out) < limit {
				out = append(out, info.ID)
			}
		case next.IsZero() || at.Before(next):
			next = at
		}
	}
	for id := range l.deadlines {
		if _, ok := live[id]; !ok {
			delete(l.deadlines, id)
		}
	}
	l.next = next
	return out, next
}

// expireLeases revokes expired leases through raft while this member
// leads. It never polls: it sleeps until the earliest deadline, and is
// woken sooner by a grant with an earlier deadline or by winning an
// election; a revoke that failed is tried again after LeaseRetryInterval.
// A lease is revoked within a round trip of its TTL.
func (n *Node) expireLeases() {
	defer n.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.lessor.sooner:
			t.Stop()
		}
		const limit = 1000
		ids, next := n.lessor.expired(time.Now(), limit)
		failed := false
		for _, id := range ids {
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
			_, err := n.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
			cancel()
			if err != nil && err != fsm.ErrLeaseNotFound {
				n.log.Warn("revoking expired lease failed", "lease_id", id, "err", err)
				failed = true
				break
			}
			n.log.Debug("lease expired", "lease_id", id)
		}
		switch {
		case failed:
			t.Reset(n.cfg.LeaseRetryInterval)
		case len(ids) == limit:
			t.Reset(0) // more may be due
		case !next.IsZero():
			t.Reset(time.Until(next))
		}
		// Otherwise no lease is waiting: a grant or an election wakes
		// the loop.
	}
}
