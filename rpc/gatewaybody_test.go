package rpc

import (
	"encoding/json"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/protoadapt"
)

func TestLenientJSON(t *testing.T) {
	txn := protoadapt.MessageV2Of(&pb.TxnRequest{}).ProtoReflect().Descriptor()
	watch := protoadapt.MessageV2Of(&pb.WatchRequest{}).ProtoReflect().Descriptor()
	for _, tc := range []struct {
		name, in, want string // want "" means: nothing to rewrite
		watch          bool
	}{
		{"null", `null`, `{}`, false},
		{"null with spaces", " null \n", `{}`, false},
		{"put and range: range", `{"success":[{"request_put":{"key":"YQ=="},"request_range":{"key":"Yg=="}}]}`, `{"success":[{"request_range":{"key":"Yg=="}}]}`, false},
		{"camelCase names", `{"failure":[{"requestTxn":{},"requestDeleteRange":{"key":"YQ=="}}]}`, `{"failure":[{"requestDeleteRange":{"key":"YQ=="}}]}`, false},
		{"nested txn", `{"success":[{"request_txn":{"success":[{"request_txn":{},"request_put":{"key":"YQ=="}}]}}]}`, `{"success":[{"request_txn":{"success":[{"request_put":{"key":"YQ=="}}]}}]}`, false},
		{"watch create and progress", `{"progress_request":{},"create_request":{"key":"YQ=="}}`, `{"create_request":{"key":"YQ=="}}`, true},
		{"one op each", `{"success":[{"request_put":{"key":"YQ=="}},{"request_range":{"key":"YQ=="}}]}`, "", false},
		{"not JSON", `{"success":`, "", false},
		{"not an object", `[1]`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := txn
			if tc.watch {
				md = watch
			}
			got, ok := lenientJSON([]byte(tc.in), md)
			if tc.want == "" {
				if ok {
					t.Fatalf("rewrote %s to %s, want no rewrite", tc.in, got)
				}
				return
			}
			if !ok {
				t.Fatalf("no rewrite of %s", tc.in)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			json.Unmarshal([]byte(tc.want), &w)
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
