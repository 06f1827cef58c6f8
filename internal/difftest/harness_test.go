package difftest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// captureReporter collects what a Runner reports instead of failing a test.
type captureReporter struct {
	mu   sync.Mutex
	msgs []string
}

func (r *captureReporter) Helper()                   {}
func (r *captureReporter) Logf(string, ...any)       {}
func (r *captureReporter) Errorf(f string, a ...any) { r.add(f, a...) }

func (r *captureReporter) Fatalf(f string, a ...any) {
	r.add(f, a...)
	runtime.Goexit()
}

func (r *captureReporter) add(f string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(f, a...))
}

// runCaptured runs one case on its own goroutine (Fatalf ends it) and
// returns every reported message.
func runCaptured(r *Runner, cs Case) []string {
	rep := &captureReporter{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(rep, cs)
	}()
	<-done
	return rep.msgs
}

// rewriteTransport lets a mutation rewrite gateway replies.
type rewriteTransport struct {
	rewrite func(path string, resp *http.Response) error
}

func (rt rewriteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if err := rt.rewrite(req.URL.Path, resp); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// editJSON returns an HTTP rewrite that applies edit to unary JSON replies on
// path.
func editJSON(path string, edit func(body map[string]any)) func(string, *http.Response) error {
	return func(p string, resp *http.Response) error {
		if p != path {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		var body map[string]any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&body); err == nil {
			edit(body)
			if b, err = json.Marshal(body); err != nil {
				return err
			}
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Del("Content-Length")
		return nil
	}
}

// mutation alters the subject's answers in one way that a correct harness
// must report for the named case.
type mutation struct {
	name     string
	caseName string
	http     func(path string, resp *http.Response) error
	grpc     grpc.UnaryClientInterceptor
	want     string // substring of some reported message
}

var mutations = []mutation{
	{
		name: "deleted dropped", caseName: "delete_single_http",
		http: editJSON("/v3/kv/deleterange", func(b map[string]any) { delete(b, "deleted") }),
		want: `delete a: body.deleted: ref "1" subj absent`,
	},
	{
		name: "count as a number", caseName: "range_limit_http",
		http: editJSON("/v3/kv/range", func(b map[string]any) {
			if s, ok := b["count"].(string); ok {
				b["count"] = json.Number(s)
			}
		}),
		want: `limit 2: body.count: ref "5" subj 5`,
	},
	{
		name: "empty kvs array", caseName: "range_single_http",
		http: editJSON("/v3/kv/range", func(b map[string]any) {
			if _, ok := b["kvs"]; !ok {
				b["kvs"] = []any{}
			}
		}),
		want: `miss: body.kvs: ref absent subj []`,
	},
	{
		name: "raft_term missing", caseName: "put_basic_http",
		http: editJSON("/v3/kv/put", func(b map[string]any) {
			if h, ok := b["header"].(map[string]any); ok {
				delete(h, "raft_term")
			}
		}),
		want: `create: body.header.raft_term: ref "<masked>" subj absent`,
	},
	{
		name: "error status 500", caseName: "range_future_revision_http",
		http: func(path string, resp *http.Response) error {
			if resp.StatusCode == http.StatusBadRequest {
				resp.StatusCode = http.StatusInternalServerError
			}
			return nil
		},
		want: `at r+10: status: ref 400 subj 500`,
	},
	{
		name: "blank line in watch stream", caseName: "watch_replay_http",
		http: func(path string, resp *http.Response) error {
			if path == "/v3/watch" {
				resp.Body = struct {
					io.Reader
					io.Closer
				}{io.MultiReader(strings.NewReader("\n"), resp.Body), resp.Body}
			}
			return nil
		},
		want: `created then replay: messages[0].blank_line: ref absent subj ""`,
	},
	{
		name: "gRPC count dropped", caseName: "range_count_only_grpc",
		grpc: func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if rr, ok := reply.(*pb.RangeResponse); ok && err == nil {
				rr.Count = 0
			}
			return err
		},
		want: `count only: body.count: ref "3" subj absent`,
	},
	{
		name: "gRPC error text", caseName: "range_future_revision_grpc",
		grpc: func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if status.Code(err) == codes.OutOfRange {
				return status.Error(codes.OutOfRange, "revision too new")
			}
			return err
		},
		want: `at r+10: error: ref "etcdserver: mvcc: required revision is a future revision" subj "revision too new"`,
	},
}

// TestHarnessCatchesMutations runs cases against a subject whose answers are
// altered in small ways and checks that each alteration is reported with
// its path. It guards against a harness that compares nothing.
func TestHarnessCatchesMutations(t *testing.T) {
	refURL := StartEtcd(t)
	subjURL := StartEtcd(t)
	ref := NewEndpoint(t, Target{Name: "reference", URL: refURL})
	plain := NewEndpoint(t, Target{Name: "subject", URL: subjURL})
	byName := map[string]Case{}
	for _, cs := range Cases() {
		byName[cs.Name] = cs
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			cs, ok := byName[m.caseName]
			if !ok {
				t.Fatalf("no case %q", m.caseName)
			}
			subj := &Endpoint{Target: plain.Target, Client: plain.Client, HTTP: plain.HTTP}
			if m.http != nil {
				subj.HTTP = plain.HTTP.WithTransport(rewriteTransport{rewrite: m.http})
			}
			if m.grpc != nil {
				subj.Client = dialWithInterceptor(t, subjURL, m.grpc)
			}
			r := &Runner{Ref: ref, Subj: subj, CaseTimeout: DefaultCaseTimeout}
			msgs := runCaptured(r, cs)
			for _, msg := range msgs {
				if strings.Contains(msg, m.want) {
					return
				}
			}
			t.Errorf("mutation not reported as %q; got:\n%s", m.want, strings.Join(msgs, "\n"))
		})
	}
	r := &Runner{Ref: ref, Subj: plain, CaseTimeout: DefaultCaseTimeout}
	// Unaltered, the same pair of stores must agree again.
	t.Run("no mutation", func(t *testing.T) {
		if msgs := runCaptured(r, byName["range_prefix_http"]); len(msgs) != 0 {
			t.Errorf("unaltered run reported:\n%s", strings.Join(msgs, "\n"))
		}
	})
	// After an extra write on the subject only, revisions are compared as
	// offsets, so a correct case still agrees; runs last since the stores
	// stay diverged.
	t.Run("diverged revisions", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultCaseTimeout)
		defer cancel()
		if _, err := plain.Client.Put(ctx, "/difftest-extra", "x"); err != nil {
			t.Fatal(err)
		}
		if msgs := runCaptured(r, byName["range_historical_http"]); len(msgs) != 0 {
			t.Errorf("diverged run reported:\n%s", strings.Join(msgs, "\n"))
		}
		if msgs := runCaptured(r, byName["delete_miss_grpc"]); len(msgs) != 0 {
			t.Errorf("diverged run reported:\n%s", strings.Join(msgs, "\n"))
		}
	})
}

func dialWithInterceptor(t *testing.T, url string, ic grpc.UnaryClientInterceptor) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{url},
		DialTimeout: dialTimeout,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(ic)},
	})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
