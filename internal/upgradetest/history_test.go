package upgradetest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/apisixsim"
)

// refEvent is one event of the history under APISIX's prefix.
type refEvent struct {
	apisixsim.Event
	desc string // the Admin write's "desc", "" if none
}

// history reads every event under APISIX's prefix after revision from,
// up to the store's current revision, with a clientv3 watch (the cluster
// keeps its whole history: auto-compaction is off).
func history(ctx context.Context, cli *clientv3.Client, from int64) ([]refEvent, error) {
	cur, err := cli.Get(ctx, "upgradetest-end")
	if err != nil {
		return nil, fmt.Errorf("current revision: %w", err)
	}
	end := cur.Header.Revision
	wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 30*time.Second)
	defer cancel()
	wch := cli.Watch(wctx, apisixsim.Prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(from+1))
	var out []refEvent
	ask := time.NewTicker(500 * time.Millisecond)
	defer ask.Stop()
	for {
		select {
		case wr, ok := <-wch:
			if !ok {
				return out, fmt.Errorf("history watch closed at %d events, before revision %d: %v", len(out), end, wctx.Err())
			}
			if err := wr.Err(); err != nil {
				return out, fmt.Errorf("history watch: %w", err)
			}
			for _, ev := range wr.Events {
				out = append(out, toRef(ev))
			}
			if wr.Header.Revision >= end {
				return out, nil
			}
		case <-ask.C:
			// A quiet history ends with no event to carry the header that
			// says so: ask for a progress report.
			cli.RequestProgress(wctx)
		}
	}
}

func toRef(ev *clientv3.Event) refEvent {
	r := refEvent{Event: apisixsim.Event{Key: string(ev.Kv.Key), ModRevision: ev.Kv.ModRevision, Delete: ev.Type == clientv3.EventTypeDelete}}
	var v struct {
		Desc string `json:"desc"`
	}
	if json.Unmarshal(ev.Kv.Value, &v) == nil {
		r.desc = v.Desc
	}
	return r
}

// compareDelivered checks that fresh, a gateway's first deliveries after
// revision base, are exactly the history after base, in order.
func compareDelivered(fresh []delivered, hist []refEvent, base int64) error {
	var want []refEvent
	for _, h := range hist {
		if h.ModRevision > base {
			want = append(want, h)
		}
	}
	for i := range min(len(fresh), len(want)) {
		if fresh[i].ev != want[i].Event {
			return fmt.Errorf("event %d: got %s@%d (delete %v), the history has %s@%d (delete %v)",
				i, fresh[i].ev.Key, fresh[i].ev.ModRevision, fresh[i].ev.Delete, want[i].Key, want[i].ModRevision, want[i].Delete)
		}
	}
	switch {
	case len(fresh) < len(want):
		w := want[len(fresh)]
		return fmt.Errorf("lost %d events: the first missing is %s@%d", len(want)-len(fresh), w.Key, w.ModRevision)
	case len(fresh) > len(want):
		f := fresh[len(want)].ev
		return fmt.Errorf("%d events beyond the history, the first %s@%d", len(fresh)-len(want), f.Key, f.ModRevision)
	}
	return nil
}
