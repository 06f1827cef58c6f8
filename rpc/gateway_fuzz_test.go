package rpc_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// fuzzPaths are the gateway paths the fuzz target posts to.
var fuzzPaths = []string{"/v3/kv/range", "/v3/kv/put", "/v3/kv/txn", "/v3/kv/deleterange", "/v3/watch", "/v3/lease/grant"}

// FuzzGatewayBody posts arbitrary bodies to the main gateway paths of an
// in-process member. A request error is never a 5xx, the server never
// panics or drops the connection, and a request answered with an error
// (every body that fails to decode is) leaves the store's revision as it
// was.
func FuzzGatewayBody(f *testing.F) {
	s := testserver.Start(f)
	cli := s.Client(f)
	hc := &http.Client{Transport: &http.Transport{}}
	f.Cleanup(hc.CloseIdleConnections)
	for i, body := range []string{
		`{"key":"YQ=="}`,
		`{"key":"YQ==","value":"MQ==","prev_kv":true}`,
		`{"compare":[{"key":"YQ==","target":"MOD","mod_revision":"1"}],"success":[{"request_put":{"key":"YQ==","value":"Mg=="}}]}`,
		`{"key":"YQ==","range_end":"Yg=="}`,
		`{"create_request":{"key":"YQ==","start_revision":"-1"}}`,
		`{"TTL":"60"}`,
	} {
		f.Add(uint8(i), []byte(body))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		path := fuzzPaths[int(which)%len(fuzzPaths)]
		before := revision(t, cli)
		status, text := post(t, hc, s.URL+path, body)
		// In a watch stream an error comes as a message with its own
		// http_code, which lua-resty-etcd reads like a status.
		if status >= 500 || bytes.Contains([]byte(text), []byte(`"http_code":5`)) {
			t.Fatalf("POST %s %q: status %d: %s", path, body, status, text)
		}
		if status >= 400 {
			if after := revision(t, cli); after != before {
				t.Fatalf("POST %s %q: answered %d %s, but the revision moved from %d to %d", path, body, status, text, before, after)
			}
		}
		revokeAll(t, cli)
	})
}

// post sends body and returns the status and the start of the reply. A
// watch stream is read for a moment and then closed.
func post(t *testing.T, hc *http.Client, url string, body []byte) (int, string) {
	timeout := 10 * time.Second
	stream := bytes.HasSuffix([]byte(url), []byte("/v3/watch"))
	if stream {
		timeout = 200 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if stream && errors.Is(err, context.DeadlineExceeded) {
		return 0, "" // no reply yet: a stream with nothing to say
	}
	if err != nil {
		t.Fatalf("POST %s %q: %v", url, body, err)
	}
	defer resp.Body.Close()
	if stream && resp.StatusCode == http.StatusOK {
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		return resp.StatusCode, line
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil && !stream {
		t.Fatalf("POST %s %q: read reply: %v", url, body, err)
	}
	return resp.StatusCode, string(b)
}

func revision(t *testing.T, cli *clientv3.Client) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "fuzz-probe")
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

// revokeAll revokes every lease, so that none granted by one input expires
// (deleting keys) while a later input is checked.
func revokeAll(t *testing.T, cli *clientv3.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ls, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls.Leases {
		if _, err := cli.Revoke(ctx, l.ID); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("revoke %x: %v", l.ID, err)
		}
	}
}
