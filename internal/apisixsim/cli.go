package apisixsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Prefix is APISIX's default etcd.prefix.
const Prefix = "/apisix"

// Directories are HTTP_ETCD_DIRECTORY ∪ STREAM_ETCD_DIRECTORY, in the order
// init_dir writes them (§2.3).
var Directories = []string{
	"/routes", "/services", "/upstreams", "/ssls", "/stream_routes", "/plugin_metadata",
	"/consumers", "/global_rules", "/protos", "/plugin_configs", "/consumer_groups",
	"/secrets", "/plugins",
}

// cliTimeout is the CLI's timeout for everything; cliTries is startup_retry.
const (
	cliTimeout = 3 * time.Second
	cliTries   = 2
)

// MinEtcdVersion is env.min_etcd_version.
var MinEtcdVersion = [3]int{3, 4, 0}

var semverRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)`)

// CheckVersions is the CLI's start check (§2.1): GET /version on every host
// (two tries of 3 s each). A reply without "etcdcluster" or with a version
// below 3.4.0 is fatal; an unparsable version is accepted. More than half
// of the hosts must answer.
func CheckVersions(ctx context.Context, c *Client) error {
	ok := 0
	var errs []string
	for _, host := range c.endpoints {
		var body []byte
		var lastErr error
		for try := 0; try < cliTries; try++ {
			tctx, cancel := context.WithTimeout(ctx, cliTimeout)
			r, err := c.Get(tctx, host, "/version")
			cancel()
			if err == nil && r.Status == 200 {
				body, lastErr = r.Raw, nil
				break
			}
			if err == nil {
				err = fmt.Errorf("HTTP %d: %s", r.Status, truncate(r.Raw))
			}
			lastErr = err
		}
		if lastErr != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", host, lastErr))
			continue
		}
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("apisixsim: got malformed version message: %q from etcd %q", body, host)
		}
		cluster, has := v["etcdcluster"]
		if !has {
			return fmt.Errorf("apisixsim: got malformed version message: %q from etcd %q", body, host)
		}
		s, _ := cluster.(string)
		if m := semverRE.FindStringSubmatch(s); m != nil {
			var got [3]int
			for i := range got {
				got[i], _ = strconv.Atoi(m[i+1])
			}
			if less(got, MinEtcdVersion) {
				return fmt.Errorf("apisixsim: etcd cluster version %s is less than the required version 3.4.0 at %s", s, host)
			}
		}
		ok++
	}
	if ok*2 <= len(c.endpoints) {
		return fmt.Errorf("apisixsim: etcd cluster unavailable: only %d of %d hosts answered /version: %s",
			ok, len(c.endpoints), strings.Join(errs, "; "))
	}
	return nil
}

func less(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// InitDir is the CLI's init_dir (§2.3): one plain put per directory, value
// "init_dir", no prev_kv and no lease, sent host by host until one host
// takes all of them. A reply containing "error" aborts the host.
func InitDir(ctx context.Context, c *Client) error {
	var errs []string
	for _, host := range c.endpoints {
		err := initDirOn(ctx, c, host)
		if err == nil {
			return nil
		}
		errs = append(errs, err.Error())
	}
	return fmt.Errorf("apisixsim: init_dir failed on every host: %s", strings.Join(errs, "; "))
}

func initDirOn(ctx context.Context, c *Client, host string) error {
	for _, dir := range Directories {
		body, err := json.Marshal(map[string]any{"key": B64(Prefix + dir + "/"), "value": B64("init_dir")})
		if err != nil {
			return err
		}
		tctx, cancel := context.WithTimeout(ctx, cliTimeout)
		r, err := c.once(tctx, host, "POST", "/v3/kv/put", body)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: put %s: %w", host, dir, err)
		}
		if bytes.Contains(r.Raw, []byte("404 page not found")) {
			return fmt.Errorf("%s: gRPC gateway is not enabled in etcd cluster", host)
		}
		if bytes.Contains(r.Raw, []byte("error")) {
			return fmt.Errorf("%s: put %s: %s", host, dir, truncate(r.Raw))
		}
	}
	return nil
}
