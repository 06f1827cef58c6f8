package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// BenchmarkAuthOverhead compares put and range throughput (16 workers over
// 8 connections, 256-byte values) with authentication off and on: on, each
// call carries a token that the member verifies and checks against the
// user's key permissions (READWRITE on /bench/). Compare ops/s of the
// auth=on and auth=off runs of the same operation.
func BenchmarkAuthOverhead(b *testing.B) {
	for _, op := range []string{"put", "range"} {
		for _, auth := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/auth=%v", op, auth), func(b *testing.B) {
				s := testserver.Start(b)
				cs := authBenchClients(b, s.URL, auth)
				value := strings.Repeat("v", 256)
				if _, err := cs[0].Put(context.Background(), "/bench/r", value); err != nil {
					b.Fatal(err)
				}
				call := func(c *clientv3.Client, w int, i int64) error {
					if op == "put" {
						_, err := c.Put(context.Background(), fmt.Sprintf("/bench/%d/%d", w, i), value)
						return err
					}
					_, err := c.Get(context.Background(), "/bench/r")
					return err
				}
				runWorkers(b, 16, cs, "ops/s", call)
			})
		}
	}
}

// authBenchClients returns 8 clients of url; with auth, authentication is
// enabled first and the clients log in as a user with READWRITE on /bench/.
func authBenchClients(b *testing.B, url string, auth bool) []*clientv3.Client {
	var user, password string
	if auth {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		root := testserver.NewClient(b, url)
		for _, step := range []func() error{
			func() error { _, err := root.UserAdd(ctx, "root", "rootpw"); return err },
			func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
			func() error { _, err := root.RoleAdd(ctx, "bench"); return err },
			func() error {
				_, err := root.RoleGrantPermission(ctx, "bench", "/bench/", clientv3.GetPrefixRangeEnd("/bench/"), clientv3.PermissionType(clientv3.PermReadWrite))
				return err
			},
			func() error { _, err := root.UserAdd(ctx, "apisix", "apisixpw"); return err },
			func() error { _, err := root.UserGrantRole(ctx, "apisix", "bench"); return err },
			func() error { _, err := root.AuthEnable(ctx); return err },
		} {
			if err := step(); err != nil {
				b.Fatalf("auth setup: %v", err)
			}
		}
		user, password = "apisix", "apisixpw"
	}
	cs := make([]*clientv3.Client, 8)
	for i := range cs {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, Username: user, Password: password,
			DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		cs[i] = c
	}
	return cs
}

// runWorkers runs b.N calls from workers goroutines spread over cs and
// reports their rate in unit.
func runWorkers(b *testing.B, workers int, cs []*clientv3.Client, unit string, call func(c *clientv3.Client, w int, i int64) error) {
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := cs[w%len(cs)]
			for i := n.Add(1); i <= int64(b.N); i = n.Add(1) {
				if err := call(c, w, i); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}
