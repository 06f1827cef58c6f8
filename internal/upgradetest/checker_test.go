package upgradetest

import (
	"strings"
	"testing"

	"github.com/etcdsql/etcdsql/internal/apisixsim"
)

// msg is one watch message fed to a gateway's checker.
type msg struct {
	watch int
	start int64
	revs  []int64
}

func feed(msgs ...msg) *gateway {
	g := &gateway{}
	for _, m := range msgs {
		var evs []apisixsim.Event
		for _, r := range m.revs {
			evs = append(evs, apisixsim.Event{Key: "/apisix/routes/r", ModRevision: r})
		}
		g.onEvents(m.watch, m.start, m.revs[len(m.revs)-1], evs)
	}
	return g
}

func hist(revs ...int64) []refEvent {
	var out []refEvent
	for _, r := range revs {
		out = append(out, refEvent{Event: apisixsim.Event{Key: "/apisix/routes/r", ModRevision: r}})
	}
	return out
}

// TestGatewayChecker: the checker finds each way a watch can go wrong, and
// accepts the replays a reopened watch asked for.
func TestGatewayChecker(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msgs    []msg
		history []refEvent
		want    string // "" when nothing is wrong
	}{
		{"in order", []msg{{1, 11, []int64{11}}, {1, 11, []int64{12, 13}}}, hist(11, 12, 13), ""},
		{"reopened and replayed", []msg{{1, 11, []int64{11}}, {2, 11, []int64{11, 12}}}, hist(11, 12), ""},
		{"duplicate on one watch", []msg{{1, 11, []int64{11}}, {1, 11, []int64{11}}}, hist(11), "duplicated revision 11"},
		{"reordered", []msg{{1, 11, []int64{12}}, {1, 11, []int64{11}}}, hist(11, 12), "reordered"},
		{"below start", []msg{{1, 11, []int64{11}}, {2, 13, []int64{12}}}, hist(11, 12), "below its start revision"},
		{"lost", []msg{{1, 11, []int64{11}}, {1, 11, []int64{13}}}, hist(11, 12, 13), "got /apisix/routes/r@13"},
		{"lost at the end", []msg{{1, 11, []int64{11}}}, hist(11, 12), "lost 1 events"},
		{"beyond the history", []msg{{1, 11, []int64{11, 12}}}, hist(11), "beyond the history"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := feed(tc.msgs...)
			problems := g.errs
			if err := compareDelivered(g.fresh, tc.history, g.base); err != nil {
				problems = append(problems, err.Error())
			}
			got := strings.Join(problems, "; ")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("problems %q, want %q", got, tc.want)
			}
		})
	}
}
