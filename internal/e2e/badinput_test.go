package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// fingerprint is the whole visible state: revision and every key-value.
func fingerprint(t *testing.T, c *clientv3.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rev=%d", r.Header.Revision)
	for _, kv := range r.Kvs {
		fmt.Fprintf(&b, " %q=%q@%d/%d/%d/%x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
	}
	return b.String()
}

// codeAndText returns the gRPC code and text of an error from clientv3
// (which wraps etcd's errors) or from a raw gRPC stub.
func codeAndText(err error) (codes.Code, string) {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code(), ee.Error()
	}
	st := status.Convert(err)
	return st.Code(), st.Message()
}

// TestBadInputChangesNothing sends each kind of bad request and checks that
// it gets etcd's code and text and leaves the state exactly as it was.
func TestBadInputChangesNothing(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client(t)
	kv := pb.NewKVClient(c.ActiveConnection())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < 5; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("/bad/k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	lease, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	manyOps := make([]clientv3.Op, 129)
	for i := range manyOps {
		manyOps[i] = clientv3.OpPut(fmt.Sprintf("/bad/many%d", i), "v")
	}
	cases := []struct {
		name string
		code codes.Code
		msg  string
		call func() error
	}{
		{"empty key put", codes.InvalidArgument, "etcdserver: key is not provided", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Value: []byte("v")})
			return err
		}},
		{"empty key range", codes.InvalidArgument, "etcdserver: key is not provided", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{})
			return err
		}},
		{"empty key delete", codes.InvalidArgument, "etcdserver: key is not provided", func() error {
			_, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{})
			return err
		}},
		{"ignore_value with value", codes.InvalidArgument, "etcdserver: value is provided", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("/bad/k1"), Value: []byte("x"), IgnoreValue: true})
			return err
		}},
		{"ignore_lease on missing key", codes.InvalidArgument, "etcdserver: key not found", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("/bad/none"), IgnoreLease: true})
			return err
		}},
		{"too many txn ops", codes.InvalidArgument, "etcdserver: too many operations in txn request", func() error {
			_, err := c.Txn(ctx).Then(manyOps...).Commit()
			return err
		}},
		{"duplicate key in txn", codes.InvalidArgument, "etcdserver: duplicate key given in txn request", func() error {
			_, err := c.Txn(ctx).Then(clientv3.OpPut("/bad/d", "1"), clientv3.OpPut("/bad/d", "2")).Commit()
			return err
		}},
		{"put inside deleted range in txn", codes.InvalidArgument, "etcdserver: duplicate key given in txn request", func() error {
			_, err := c.Txn(ctx).Then(clientv3.OpDelete("/bad/", clientv3.WithPrefix()), clientv3.OpPut("/bad/k1", "2")).Commit()
			return err
		}},
		{"request too large", codes.InvalidArgument, "etcdserver: request is too large", func() error {
			_, err := c.Put(ctx, "/bad/big", string(bytes.Repeat([]byte("x"), 1572864)))
			return err
		}},
		{"unknown lease", codes.NotFound, "etcdserver: requested lease not found", func() error {
			_, err := c.Put(ctx, "/bad/k1", "v", clientv3.WithLease(12345))
			return err
		}},
		{"unknown lease in txn", codes.NotFound, "etcdserver: requested lease not found", func() error {
			_, err := c.Txn(ctx).Then(clientv3.OpPut("/bad/k1", "x"), clientv3.OpPut("/bad/k2", "x", clientv3.WithLease(12345))).Commit()
			return err
		}},
		{"lease TTL too large", codes.OutOfRange, "etcdserver: too large lease TTL", func() error {
			_, err := c.Grant(ctx, 9000000001)
			return err
		}},
		{"existing lease ID", codes.FailedPrecondition, "etcdserver: lease already exists", func() error {
			_, err := c.Lease.Grant(ctx, 60) // new ID: fine
			if err != nil {
				return err
			}
			_, err = pb.NewLeaseClient(c.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: int64(lease.ID), TTL: 60})
			return err
		}},
		{"future revision", codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision", func() error {
			_, err := c.Get(ctx, "/bad/k1", clientv3.WithRev(1000))
			return err
		}},
		{"compacted revision", codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted", func() error {
			_, err := c.Get(ctx, "/bad/k1", clientv3.WithRev(2))
			return err
		}},
		{"compact again", codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted", func() error {
			_, err := c.Compact(ctx, 3)
			return err
		}},
		{"compact future", codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision", func() error {
			_, err := c.Compact(ctx, 1000)
			return err
		}},
		{"unknown sort target", codes.InvalidArgument, "etcdserver: invalid sort option", func() error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortTarget: 7})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := fingerprint(t, c)
			err := tc.call()
			code, msg := codeAndText(err)
			if err == nil || code != tc.code || msg != tc.msg {
				t.Fatalf("got %v, want code %v %q", err, tc.code, tc.msg)
			}
			// "existing lease ID" grants one lease first; leases are not
			// part of the key-value state, which must stay as it was.
			if after := fingerprint(t, c); after != before {
				t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	// range_end below key is not an error: the range is empty.
	r, err := c.Get(ctx, "/bad/k3", clientv3.WithRange("/bad/k1"))
	if err != nil || len(r.Kvs) != 0 || r.Count != 0 {
		t.Fatalf("range_end < key: kvs=%d count=%d err=%v", len(r.Kvs), r.Count, err)
	}

	// A body past the gateway's bound (twice what the gRPC server takes
	// in one message, 4 MiB by default) is refused before it is decoded.
	huge := `{"key":"L2JhZC9odWdl","value":"` + strings.Repeat("eHh4", 4<<20/3) + `"}`
	httpCases := []struct {
		name, path, body string
		text             string // the error text, when it matters
	}{
		{"body over the gateway bound", "/v3/kv/put", huge, "etcdserver: request is too large"},
		{"watch body over the gateway bound", "/v3/watch", `{"create_request":{"key":"` + strings.Repeat("eHh4", 4<<20/3) + `"}}`, "etcdserver: request is too large"},
		{"watch body of null", "/v3/watch", `null`, ""},
		{"invalid JSON", "/v3/kv/put", `{"key":`, ""},
		{"not an object", "/v3/kv/range", `[1,2]`, ""},
		{"invalid base64", "/v3/kv/put", `{"key":"!!!","value":"dg=="}`, ""},
		{"wrong type", "/v3/kv/range", `{"key":"L2E=","limit":"x"}`, ""},
		{"empty key over HTTP", "/v3/kv/put", `{"value":"dg=="}`, ""},
		{"watch with invalid base64", "/v3/watch", `{"create_request":{"key":"!!!"}}`, ""},
		{"watch with truncated JSON", "/v3/watch", `{"create_request":`, ""},
		{"keepalive with a bad ID", "/v3/lease/keepalive", `{"ID":"x"}`, ""},
	}
	for _, tc := range httpCases {
		t.Run("http "+tc.name, func(t *testing.T) {
			before := fingerprint(t, c)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Fatalf("status %d (want 4xx): %s", resp.StatusCode, body)
			}
			if !bytes.Contains(body, []byte(`"error"`)) || !bytes.Contains(body, []byte(`"code"`)) {
				t.Fatalf("body is not an etcd error object: %s", body)
			}
			if tc.text != "" && !bytes.Contains(body, []byte(`"error":"`+tc.text+`"`)) {
				t.Fatalf("body %s, want error %q", body, tc.text)
			}
			if after := fingerprint(t, c); after != before {
				t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}
