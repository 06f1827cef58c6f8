package upgradetest

import (
	"slices"
	"testing"
	"time"
)

// gap is the longest time between two successful writes.
type gap struct {
	length   time.Duration
	from, to time.Time
}

// longestGap over the completion times of successful writes, from the
// start of the load to its end.
func longestGap(acks []time.Time, begin, end time.Time) gap {
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	var g gap
	prev := begin
	for _, at := range append(acks, end) {
		if d := at.Sub(prev); d > g.length {
			g = gap{length: d, from: prev, to: at}
		}
		prev = at
	}
	return g
}

// reportGaps logs the longest gap without a successful write, for each
// writer and for both together, and the step it fell in.
func reportGaps(t *testing.T, l *load, steps []step) {
	t.Helper()
	if len(l.kv.puts) == 0 || len(l.admin.ops) == 0 {
		return
	}
	begin := l.kv.puts[0].begin
	if b := l.admin.ops[0].begin; b.Before(begin) {
		begin = b
	}
	end := l.kv.puts[len(l.kv.puts)-1].end
	if e := l.admin.ops[len(l.admin.ops)-1].end; e.After(end) {
		end = e
	}
	var kvAcks, adminAcks []time.Time
	for _, p := range l.kv.puts {
		if p.err == nil {
			kvAcks = append(kvAcks, p.end)
		}
	}
	for _, op := range l.admin.ops {
		if !op.failed() {
			adminAcks = append(adminAcks, op.end)
		}
	}
	all := append(append([]time.Time(nil), kvAcks...), adminAcks...)
	for _, w := range []struct {
		name string
		acks []time.Time
		pace time.Duration
	}{{"clientv3 put", kvAcks, kvEvery}, {"Admin write", adminAcks, adminEvery}, {"write of either", all, kvEvery}} {
		g := longestGap(w.acks, begin, end)
		t.Logf("longest gap without a successful %s: %v (writes paced every %v), during %s",
			w.name, g.length.Round(time.Millisecond), w.pace, during(steps, g.from.Add(g.length/2)))
		if p, ok := slowestPut(l.kv.puts, g); ok && w.name == "clientv3 put" {
			t.Logf("the slowest clientv3 put begun in that gap took %v (error: %v)", ms(p.end.Sub(p.begin)), p.err)
		}
	}
}

// reportDelivery logs how long after an Admin write was acknowledged the
// gateways received it (nothing when before): the median, the 99th
// percentile, the longest and where it happened. Gateways often have an
// event before its write's reply is back (members apply it before the
// database has it), so it also gives the longest time from the write's
// start. It checks that every acknowledged Admin write is in the history.
func reportDelivery(t *testing.T, f *fleet, hist []refEvent, w *adminWriter, steps []step) {
	t.Helper()
	ackAt, sentAt := map[string]time.Time{}, map[string]time.Time{}
	for _, op := range w.ops {
		if !op.failed() {
			ackAt[opDesc(op.seq)], sentAt[opDesc(op.seq)] = op.end, op.begin
		}
	}
	byRev := map[int64]string{}
	seen := map[string]bool{}
	for _, h := range hist {
		byRev[h.ModRevision] = h.desc
		seen[h.desc] = true
	}
	for d := range ackAt {
		if !seen[d] {
			t.Errorf("acknowledged Admin write %s is not in the history", d)
		}
	}
	var delays []time.Duration
	var worst, fromSend time.Duration
	var worstAt, worstGW string
	for _, g := range f.gws {
		g.mu.Lock()
		for _, d := range g.fresh {
			desc := byRev[d.ev.ModRevision]
			ack, ok := ackAt[desc]
			if !ok {
				continue
			}
			fromSend = max(fromSend, d.at.Sub(sentAt[desc]))
			delay := max(d.at.Sub(ack), 0)
			delays = append(delays, delay)
			if delay > worst {
				worst, worstGW, worstAt = delay, g.name+" via "+g.via, during(steps, ack)
			}
		}
		g.mu.Unlock()
	}
	if len(delays) == 0 {
		t.Errorf("no delivery of an acknowledged Admin write was timed")
		return
	}
	slices.Sort(delays)
	t.Logf("delivery after the Admin write's acknowledgement, over %d deliveries: p50 %v, p99 %v, longest %v (%s, write acknowledged during %s); longest from the write's start %v",
		len(delays), delays[len(delays)/2].Round(time.Microsecond), delays[len(delays)*99/100].Round(time.Microsecond),
		ms(worst), worstGW, worstAt, ms(fromSend))
}

// slowestPut is the slowest put that began within gap g.
func slowestPut(puts []kvPut, g gap) (kvPut, bool) {
	var out kvPut
	found := false
	for _, p := range puts {
		if p.begin.Before(g.from) || p.begin.After(g.to) {
			continue
		}
		if !found || p.end.Sub(p.begin) > out.end.Sub(out.begin) {
			out, found = p, true
		}
	}
	return out, found
}
