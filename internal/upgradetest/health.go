package upgradetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// pollEvery paces the waits below: they ask other processes over the
// network, which announce nothing.
const pollEvery = 50 * time.Millisecond

// newClient returns a clientv3 client of the given endpoints; the caller
// closes it.
func newClient(endpoints ...string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// WaitServing waits until url answers a linearizable read.
func WaitServing(url string, timeout time.Duration) error {
	cli, err := newClient(url)
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = cli.Get(ctx, "upgradetest-ready")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s serves no linearizable read after %v: %w", url, timeout, err)
		}
		time.Sleep(pollEvery)
	}
}

// View is what the members say of the cluster at one moment.
type View struct {
	// Leader is the index of the member every member names as leader.
	Leader int
	// Term is the leader's raft term.
	Term uint64
	// Voters counts the members of the member list that are not learners.
	Voters int
}

// errNotHealthy is why a view is not (yet) healthy.
var errNotHealthy = errors.New("cluster not healthy")

// Healthy returns the cluster's view if every member serves /health with
// 200, all name the same leader, and the member list holds every member as
// a voter.
func (c *Cluster) Healthy(ctx context.Context) (View, error) {
	ids := make([]uint64, len(c.Members))
	leaders := make([]uint64, len(c.Members))
	var v View
	for i, m := range c.Members {
		if err := health(ctx, m.URL); err != nil {
			return v, fmt.Errorf("%w: %s: %v", errNotHealthy, m.Name, err)
		}
		st, err := c.clients[i].Status(ctx, m.URL)
		if err != nil {
			return v, fmt.Errorf("%w: %s status: %v", errNotHealthy, m.Name, err)
		}
		ids[i], leaders[i] = st.Header.MemberId, st.Leader
		if st.Header.MemberId == st.Leader {
			v.Term = st.RaftTerm
		}
	}
	v.Leader = -1
	for i, id := range ids {
		if id == leaders[0] {
			v.Leader = i
		}
		if leaders[i] != leaders[0] {
			return v, fmt.Errorf("%w: members name different leaders %x", errNotHealthy, leaders)
		}
	}
	if v.Leader < 0 {
		return v, fmt.Errorf("%w: leader %x is none of the members %x", errNotHealthy, leaders[0], ids)
	}
	n, err := voters(ctx, c.clients[v.Leader])
	if err != nil {
		return v, fmt.Errorf("%w: member list: %v", errNotHealthy, err)
	}
	v.Voters = n
	if n != len(c.Members) {
		return v, fmt.Errorf("%w: %d voters in the member list, want %d", errNotHealthy, n, len(c.Members))
	}
	return v, nil
}

// WaitHealthy waits until Healthy holds.
func (c *Cluster) WaitHealthy(timeout time.Duration) (View, error) {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err := c.Healthy(ctx)
		cancel()
		if err == nil {
			return v, nil
		}
		if time.Now().After(deadline) {
			return v, fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(pollEvery)
	}
}

func health(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/health: HTTP %d", resp.StatusCode)
	}
	return nil
}

func voters(ctx context.Context, cli *clientv3.Client) (int, error) {
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range ml.Members {
		if !m.IsLearner {
			n++
		}
	}
	return n, nil
}

// clusterVersionMetric is the gauge whose label is a member's view of the
// cluster version (releases after v0.1.0 have it).
const clusterVersionMetric = "etcdsql_cluster_version{release=\""

// ClusterVersion returns the cluster version member url reports on
// /metrics, or "" if it reports none.
func ClusterVersion(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, clusterVersionMetric); ok && strings.HasSuffix(line, " 1") {
			if i := strings.IndexByte(rest, '"'); i >= 0 {
				return rest[:i], nil
			}
		}
	}
	return "", nil
}
