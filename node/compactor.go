package node

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Auto-compaction modes, as etcd names them.
const (
	CompactionPeriodic = "periodic"
	CompactionRevision = "revision"
)

// AutoCompaction configures the leader's automatic compaction. The store
// keeps every revision in memory until compaction, so a long-running
// cluster wants it on.
type AutoCompaction struct {
	// Mode is CompactionPeriodic (keep Period of history) or
	// CompactionRevision (keep Revisions revisions); empty turns it off.
	Mode      string
	Period    time.Duration
	Revisions int64
	// Interval is how often the leader looks (default: Period/10 for
	// periodic, capped at an hour; 5 minutes for revision mode, as etcd).
	Interval time.Duration
}

func (a AutoCompaction) interval() time.Duration {
	if a.Interval > 0 {
		return a.Interval
	}
	if a.Mode == CompactionPeriodic {
		return min(max(a.Period/10, time.Second), time.Hour)
	}
	return 5 * time.Minute
}

// revSample is the store revision seen at a time.
type revSample struct {
	at  time.Time
	rev int64
}

// autoCompact compacts, while this member leads, to the revision the store
// had Period ago (periodic) or to Revisions below the current one
// (revision mode).
func (n *Node) autoCompact() {
	defer n.wg.Done()
	ac := n.cfg.AutoCompaction
	t := time.NewTicker(ac.interval())
	defer t.Stop()
	var samples []revSample
	for {
		select {
		case <-n.stop:
			return
		case now := <-t.C:
			rev, compacted := n.store.Revs()
			target := int64(0)
			switch ac.Mode {
			case CompactionRevision:
				target = rev - ac.Revisions
			case CompactionPeriodic:
				samples = append(samples, revSample{now, rev})
				// The newest sample at least Period old is the target;
				// older ones are no longer needed.
				i := 0
				for i+1 < len(samples) && now.Sub(samples[i+1].at) >= ac.Period {
					i++
				}
				samples = samples[i:]
				if now.Sub(samples[0].at) >= ac.Period {
					target = samples[0].rev
				}
			}
			if target <= compacted || !n.lead.isReady() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
			_, err := n.Compact(ctx, &pb.CompactionRequest{Revision: target})
			cancel()
			if err != nil {
				n.log.Warn("auto-compaction failed", "rev", target, "err", err)
				continue
			}
			n.log.Info("auto-compacted", "rev", target, "mode", ac.Mode)
		}
	}
}
