package rpc

import (
	"bufio"
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc"
)

// The peer service keeps every method release v0.1.0 serves and calls,
// under the same name and with the same request message, so that members
// of the two releases forward to each other in a mixed cluster
// (testdata/peer-v0.1.0.txt lists them). Methods are added, never changed
// or removed; a new one is called only once the cluster version says
// every member serves it.
func TestPeerServiceKeepsV010Methods(t *testing.T) {
	f, err := os.Open("testdata/peer-v0.1.0.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	methods := map[string]func() string{}
	for _, m := range peerServiceDesc.Methods {
		m := m
		methods[m.MethodName] = func() string { return requestType(m.Handler) }
	}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		n++
		req, ok := methods[fields[0]]
		if !ok {
			t.Errorf("method %s of v0.1.0 is gone", fields[0])
			continue
		}
		if got := req(); got != fields[1] {
			t.Errorf("method %s takes %s, v0.1.0 sends %s", fields[0], got, fields[1])
		}
	}
	if n != 11 {
		t.Fatalf("read %d methods from the fixture", n)
	}
}

// requestType returns the message type a method's handler decodes.
func requestType(h func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error)) string {
	var typ string
	stop := errors.New("stop")
	_, _ = h(nil, context.Background(), func(v any) error { typ = reflect.TypeOf(v).Elem().String(); return stop }, nil)
	return typ
}
