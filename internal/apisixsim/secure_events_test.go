package apisixsim

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// eventLog is what one gateway's watches received, in order: each watch's
// start (an Event with no key and ModRevision -start_revision), then its
// events.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) add(evs ...Event) {
	l.mu.Lock()
	l.evs = append(l.evs, evs...)
	l.mu.Unlock()
}

// inOrder checks a gateway's events from its first watch's start to last:
// every revision, in order, each key of a revision once. A new watch may
// ask again for revisions its gateway had (APISIX keeps its revision at a
// message's when it already was there); those are counted in asked, and
// their events must be delivered again in full. It returns each revision's
// keys, in the order received.
func inOrder(evs []Event, last int64) (keys map[int64][]string, asked int, err error) {
	keys = map[int64][]string{}
	var next, cur int64 // the next revision expected; the one being received
	for i, e := range evs {
		if e.Key == "" { // a new watch, from -e.ModRevision
			s := -e.ModRevision
			if next == 0 {
				next = s
			}
			if s > next {
				return keys, asked, fmt.Errorf("a watch from %d after revision %d: revisions lost", s, next-1)
			}
			asked += int(next - s)
			next, cur = s, 0
			continue
		}
		switch e.ModRevision {
		case next:
			cur, next = next, next+1
			keys[cur] = nil
		case cur:
		default:
			return keys, asked, fmt.Errorf("event %d (%s) has revision %d, want %d or %d (lost, duplicated or reordered)", i, e.Key, e.ModRevision, cur, next)
		}
		if slices.Contains(keys[cur], e.Key) {
			return keys, asked, fmt.Errorf("event %d: %s twice at revision %d", i, e.Key, cur)
		}
		keys[cur] = append(keys[cur], e.Key)
	}
	if next != last+1 {
		return keys, asked, fmt.Errorf("events up to revision %d, want up to %d", next-1, last)
	}
	return keys, asked, nil
}

// checkEvents asserts that every gateway got every revision up to last
// once, in order, and that gateways agree on each revision's keys (none
// lost inside a revision). It returns the revisions asked for again.
func (r *secureRun) checkEvents(t *testing.T, last int64) (asked int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	ref := map[int64][]string{}
	refName := map[int64]string{}
	for name, l := range r.logs {
		l.mu.Lock()
		keys, n, err := inOrder(l.evs, last)
		l.mu.Unlock()
		asked += n
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for rev, ks := range keys {
			ks = slices.Sorted(slices.Values(ks))
			if want, ok := ref[rev]; !ok {
				ref[rev], refName[rev] = ks, name
			} else if !slices.Equal(ks, want) {
				t.Errorf("revision %d: %s got %q, %s got %q", rev, name, ks, refName[rev], want)
			}
		}
	}
	return asked
}
