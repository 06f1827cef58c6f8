package difftest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/protoadapt"
)

const (
	// DefaultCaseTimeout bounds one case on one target.
	DefaultCaseTimeout = 15 * time.Second
	// dialTimeout bounds the clientv3 connection setup.
	dialTimeout = 5 * time.Second
	// keyRoot is the parent of every case's key prefix.
	keyRoot = "/difftest/"
)

// Target is one etcd-compatible endpoint under test.
type Target struct {
	// Name is "reference" or "subject"; it prefixes every message.
	Name string
	// URL is the client URL, serving gRPC and the HTTP/JSON gateway.
	URL string
	// TLS is the client side of an https URL: the CA pool and, for a
	// server that requires one, a client certificate.
	TLS *tls.Config
}

// Endpoint holds the long-lived clients of one Target, shared by all cases.
type Endpoint struct {
	Target Target
	Client *clientv3.Client
	HTTP   *HTTPClient
}

// NewEndpoint dials tg with clientv3 and prepares its HTTP client. Both are
// closed in t.Cleanup.
func NewEndpoint(t testing.TB, tg Target) *Endpoint {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{tg.URL},
		DialTimeout: dialTimeout,
		TLS:         tg.TLS,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("difftest: dial %s %s: %v", tg.Name, tg.URL, err)
	}
	h := NewHTTPClientTLS(tg.URL, tg.TLS)
	t.Cleanup(func() {
		h.Close()
		_ = cli.Close()
	})
	return &Endpoint{Target: tg, Client: cli, HTTP: h}
}

// Case is one named, deterministic scenario. Run is called once per target
// with identical prior state; it records observations and expectations on
// the Conn. Keys must live under c.Key so that cases do not interfere.
type Case struct {
	Name string
	Run  func(c *Conn)
}

// Runner runs cases against a reference and a subject and compares the
// observations they produce.
type Runner struct {
	Ref, Subj *Endpoint
	// CaseTimeout bounds one case on one target.
	CaseTimeout time.Duration
	// DumpDir, when set, receives <case>.json per case holding both
	// transcripts, for reading what each target answered.
	DumpDir string
}

// NewRunner connects to both targets.
func NewRunner(t testing.TB, ref, subj Target) *Runner {
	t.Helper()
	return &Runner{
		Ref:         NewEndpoint(t, ref),
		Subj:        NewEndpoint(t, subj),
		CaseTimeout: DefaultCaseTimeout,
	}
}

// Reporter receives a case's failures and logs; *testing.T satisfies it.
// Fatalf must stop the calling goroutine (testing.T does so with
// runtime.Goexit).
type Reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// maxReportedObservations bounds how many differing observations one case
// prints in full; the rest are counted.
const maxReportedObservations = 8

// Run executes cs on the reference, then on the subject, and reports every
// difference between the two transcripts as an error on t. Expectations the
// case states are checked on both targets.
//
// When the two stores already had different revisions before the case (an
// earlier case diverged), revision fields are compared as offsets from each
// store's revision at the start of the case, so that one divergence does
// not make every later case fail.
func (r *Runner) Run(t Reporter, cs Case) {
	t.Helper()
	refBase := r.currentRevision(t, r.Ref)
	subjBase := r.currentRevision(t, r.Subj)
	ref := r.runOn(t, r.Ref, cs)
	subj := r.runOn(t, r.Subj, cs)
	if err := r.dump(cs.Name, ref.obs, subj.obs); err != nil {
		t.Errorf("%v", err)
	}
	if refBase != subjBase {
		t.Logf("note: the stores diverged before this case (revision ref %d, subj %d); revisions are compared as offsets from those",
			refBase, subjBase)
		rebase(ref.obs, refBase)
		rebase(subj.obs, subjBase)
	}
	fails, notes := compareTranscripts(ref.obs, subj.obs)
	for _, n := range notes {
		t.Logf("tolerated difference (lenient path): %s", n)
	}
	for i, f := range fails {
		if i == maxReportedObservations {
			t.Errorf("... and %d more differing observations", len(fails)-i)
			break
		}
		t.Errorf("%s", f)
	}
}

// dump writes both transcripts to DumpDir/<case>.json when DumpDir is set.
func (r *Runner) dump(name string, ref, subj []*Obs) error {
	if r.DumpDir == "" {
		return nil
	}
	type entry struct {
		Label string `json:"label"`
		Value any    `json:"value"`
	}
	entries := func(obs []*Obs) []entry {
		out := make([]entry, len(obs))
		for i, o := range obs {
			out[i] = entry{o.Label, o.Value}
		}
		return out
	}
	b, err := json.MarshalIndent(map[string]any{"reference": entries(ref), "subject": entries(subj)}, "", "  ")
	if err != nil {
		return fmt.Errorf("difftest: dump %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(r.DumpDir, name+".json"), b, 0o644); err != nil {
		return fmt.Errorf("difftest: dump %s: %w", name, err)
	}
	return nil
}

func rebase(obs []*Obs, base int64) {
	for _, o := range obs {
		o.Value = rebaseRevisions(o.Value, base)
	}
}

// currentRevision reads the store revision with a range on a key no case
// uses.
func (r *Runner) currentRevision(t Reporter, ep *Endpoint) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), r.CaseTimeout)
	defer cancel()
	resp, err := ep.Client.Get(ctx, "/difftest-probe")
	if err != nil {
		t.Fatalf("%s: probe revision: %v", ep.Target.Name, err)
	}
	return resp.Header.Revision
}

func (r *Runner) runOn(t Reporter, ep *Endpoint, cs Case) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), r.CaseTimeout)
	defer cancel()
	c := &Conn{
		Ctx:    ctx,
		Target: ep.Target,
		Client: ep.Client,
		HTTP:   ep.HTTP,
		t:      t,
		name:   cs.Name,
	}
	defer c.closeStreams()
	cs.Run(c)
	if len(c.obs) == 0 {
		t.Errorf("%s: case recorded no observation", ep.Target.Name)
	}
	if c.checks == 0 {
		t.Errorf("%s: case states no expectation", ep.Target.Name)
	}
	return c
}

// compareTranscripts pairs the observations of both targets in order. It
// returns one failure per differing observation, and differences on lenient
// paths as notes.
func compareTranscripts(ref, subj []*Obs) (fails, notes []string) {
	for i := 0; i < len(ref) && i < len(subj); i++ {
		ro, so := ref[i], subj[i]
		if ro.Label != so.Label {
			fails = append(fails, fmt.Sprintf("observation %d: ref %q, subj %q: the case took different paths", i, ro.Label, so.Label))
			return fails, notes
		}
		var hard []string
		for _, d := range Diff(ro.Value, so.Value, DiffOptions{Tolerance: ro.tolerance}) {
			if ro.isLenient(d.Path) {
				notes = append(notes, ro.Label+": "+d.String())
				continue
			}
			hard = append(hard, ro.Label+": "+d.String())
		}
		if len(hard) > 0 {
			fails = append(fails, strings.Join(hard, "\n")+
				fmt.Sprintf("\n  ref  %s\n  subj %s", Compact(ro.Value), Compact(so.Value)))
		}
	}
	if len(ref) != len(subj) {
		fails = append(fails, fmt.Sprintf("ref made %d observations, subj %d", len(ref), len(subj)))
	}
	return fails, notes
}

// Obs is one recorded answer, already in generic JSON form with the
// per-cluster header fields masked.
type Obs struct {
	Label     string
	Value     any
	tolerance map[string]int64
	lenient   []string
}

// Tolerate lets the integer at path differ by up to n between targets (used
// for the remaining TTL of a lease). It returns o.
func (o *Obs) Tolerate(path string, n int64) *Obs {
	if o.tolerance == nil {
		o.tolerance = map[string]int64{}
	}
	o.tolerance[path] = n
	return o
}

// Lenient turns differences at or below the given paths into logged notes
// instead of failures. It is meant for texts that are artefacts of a JSON
// decoder rather than part of the etcd contract. It returns o.
func (o *Obs) Lenient(paths ...string) *Obs {
	o.lenient = append(o.lenient, paths...)
	return o
}

func (o *Obs) isLenient(path string) bool {
	for _, p := range o.lenient {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

// Get returns the value at path, or nil.
func (o *Obs) Get(path string) any {
	v, _ := Lookup(o.Value, path)
	return v
}

// Int returns the integer at path (a JSON number or decimal string), or 0.
func (o *Obs) Int(path string) int64 {
	n, _ := asInt(o.Get(path))
	return n
}

// Str returns the string at path, or "".
func (o *Obs) Str(path string) string {
	s, _ := o.Get(path).(string)
	return s
}

// Conn is what a case sees of one target: the shared clients plus the
// transcript being recorded. It is used by the case goroutine only.
type Conn struct {
	// Ctx bounds the whole case on this target.
	Ctx    context.Context
	Target Target
	Client *clientv3.Client
	HTTP   *HTTPClient

	t       Reporter
	name    string
	obs     []*Obs
	checks  int
	streams []*Stream
}

// Key returns the case-private key for suffix.
func (c *Conn) Key(suffix string) string {
	return keyRoot + c.name + "/" + suffix
}

// Prefix returns the case's key prefix.
func (c *Conn) Prefix() string {
	return c.Key("")
}

// BKey returns base64(c.Key(suffix)), the gateway form of the key.
func (c *Conn) BKey(suffix string) string {
	return B64(c.Key(suffix))
}

// BEnd returns the base64 prefix range end of c.Key(suffix).
func (c *Conn) BEnd(suffix string) string {
	return B64(clientv3.GetPrefixRangeEnd(c.Key(suffix)))
}

// LeaseID returns a lease ID private to the case: a hash of the case name
// (large, so it exercises IDs above 2^53) plus i, which must be in 1..65535.
func (c *Conn) LeaseID(i int) int64 {
	h := fnv.New64a()
	h.Write([]byte(c.name))
	return int64(h.Sum64()&^(1<<63)&^0xffff) | int64(i)
}

// Fatalf reports a harness failure (transport error, broken stream) for
// this target and stops the case.
func (c *Conn) Fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("%s: %s", c.Target.Name, fmt.Sprintf(format, args...))
}

// Record appends an arbitrary observation (converted to generic JSON).
func (c *Conn) Record(label string, v any) *Obs {
	g, err := toGeneric(v)
	if err != nil {
		c.Fatalf("%s: %v", label, err)
	}
	o := &Obs{Label: label, Value: maskHeaders(g)}
	c.obs = append(c.obs, o)
	return o
}

// Post sends a gateway request body (see EncodeBodies) to path and records
// {"status":N,"body":JSON}.
func (c *Conn) Post(label, path string, parts ...any) *Obs {
	body, err := EncodeBodies(parts...)
	if err != nil {
		c.Fatalf("%s: %v", label, err)
	}
	r, err := c.HTTP.Post(c.Ctx, path, body)
	if err != nil {
		c.Fatalf("%s: %v", label, err)
	}
	return c.Record(label, replyValue(r))
}

// GetHTTP sends a GET to path and records the reply like Post.
func (c *Conn) GetHTTP(label, path string) *Obs {
	r, err := c.HTTP.Get(c.Ctx, path)
	if err != nil {
		c.Fatalf("%s: %v", label, err)
	}
	return c.Record(label, replyValue(r))
}

// pbJSON renders protobuf messages as etcd's gateway does: original
// (snake_case) field names, int64 as strings, enums as names, zero values
// and empty lists omitted.
var pbJSON = protojson.MarshalOptions{UseProtoNames: true}

// protoToGeneric converts an etcdserverpb message to the generic JSON form.
func protoToGeneric(m protoadapt.MessageV1) (any, error) {
	b, err := pbJSON.Marshal(protoadapt.MessageV2Of(m))
	if err != nil {
		return nil, fmt.Errorf("difftest: marshal %T: %w", m, err)
	}
	return ParseJSON(b)
}

// GRPC records a gRPC answer: {"code":"OK","body":JSON} or
// {"code":"<grpc code>","error":"<text>"}. When err is set, msg is ignored.
func (c *Conn) GRPC(label string, msg protoadapt.MessageV1, err error) *Obs {
	if err != nil {
		code, text := grpcError(err)
		return c.Record(label, map[string]any{"code": code, "error": text})
	}
	body, err := protoToGeneric(msg)
	if err != nil {
		c.Fatalf("%s: %v", label, err)
	}
	return c.Record(label, map[string]any{"code": "OK", "body": body})
}

// grpcError extracts the gRPC code and the text a client sees.
func grpcError(err error) (code, text string) {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code().String(), ee.Error()
	}
	if st, ok := status.FromError(err); ok {
		return st.Code().String(), st.Message()
	}
	return "non-grpc", err.Error()
}

// Get ranges through clientv3 and records the reply.
func (c *Conn) Get(label, key string, opts ...clientv3.OpOption) *Obs {
	resp, err := c.Client.Get(c.Ctx, key, opts...)
	return c.GRPC(label, (*pb.RangeResponse)(resp), err)
}

// Put writes through clientv3 and records the reply.
func (c *Conn) Put(label, key, val string, opts ...clientv3.OpOption) *Obs {
	resp, err := c.Client.Put(c.Ctx, key, val, opts...)
	return c.GRPC(label, (*pb.PutResponse)(resp), err)
}

// Delete deletes through clientv3 and records the reply.
func (c *Conn) Delete(label, key string, opts ...clientv3.OpOption) *Obs {
	resp, err := c.Client.Delete(c.Ctx, key, opts...)
	return c.GRPC(label, (*pb.DeleteRangeResponse)(resp), err)
}

// Txn commits If(cmps).Then(thenOps).Else(elseOps) through clientv3 and
// records the reply.
func (c *Conn) Txn(label string, cmps []clientv3.Cmp, thenOps, elseOps []clientv3.Op) *Obs {
	resp, err := c.Client.Txn(c.Ctx).If(cmps...).Then(thenOps...).Else(elseOps...).Commit()
	return c.GRPC(label, (*pb.TxnResponse)(resp), err)
}

// Compact compacts through clientv3 (physically, so that it has finished
// when the call returns) and records the reply.
func (c *Conn) Compact(label string, rev int64) *Obs {
	resp, err := c.Client.Compact(c.Ctx, rev, clientv3.WithCompactPhysical())
	return c.GRPC(label, (*pb.CompactionResponse)(resp), err)
}

// KVStub returns the raw etcdserverpb KV client on the clientv3 connection,
// for requests clientv3 would shape or refuse itself.
func (c *Conn) KVStub() pb.KVClient {
	return pb.NewKVClient(c.Client.ActiveConnection())
}

// LeaseStub returns the raw etcdserverpb Lease client on the clientv3
// connection; clientv3's Grant cannot choose the lease ID.
func (c *Conn) LeaseStub() pb.LeaseClient {
	return pb.NewLeaseClient(c.Client.ActiveConnection())
}

// Check states an expectation that must hold on every target.
func (c *Conn) Check(ok bool, format string, args ...any) {
	c.t.Helper()
	c.checks++
	if !ok {
		c.t.Errorf("%s: expectation failed: %s", c.Target.Name, fmt.Sprintf(format, args...))
	}
}

// Want expects the value at path in o to equal want, compared as JSON (so
// int64 fields are written as strings, "5", and HTTP statuses as numbers).
// Pass Absent to require that the path does not exist.
func (c *Conn) Want(o *Obs, path string, want any) {
	c.t.Helper()
	got, ok := Lookup(o.Value, path)
	if _, wantAbsent := want.(absent); wantAbsent {
		c.Check(!ok, "%s: %s: want absent, got %s", o.Label, path, Compact(got))
		return
	}
	w, err := toGeneric(want)
	if err != nil {
		c.Fatalf("%s: %v", o.Label, err)
	}
	c.Check(ok && len(Diff(w, got, DiffOptions{})) == 0, "%s: %s: want %s, got %s (present=%v)",
		o.Label, path, Compact(w), Compact(got), ok)
}

// WantLen expects an array of n elements at path; a missing path counts as
// an empty array only when n is 0.
func (c *Conn) WantLen(o *Obs, path string, n int) {
	c.t.Helper()
	got, ok := Lookup(o.Value, path)
	a, isArray := got.([]any)
	c.Check((!ok && n == 0) || (isArray && len(a) == n), "%s: %s: want %d elements, got %s",
		o.Label, path, n, Compact(got))
}

// WantOK expects a successful unary answer: HTTP 200 or gRPC OK.
func (c *Conn) WantOK(o *Obs) {
	c.t.Helper()
	if _, isHTTP := Lookup(o.Value, "status"); isHTTP {
		c.Want(o, "status", 200)
		return
	}
	c.Want(o, "code", "OK")
}

// WantGRPCError expects a gRPC error with this code name (e.g. "OutOfRange")
// and exact text.
func (c *Conn) WantGRPCError(o *Obs, code, text string) {
	c.t.Helper()
	c.Want(o, "", map[string]any{"code": code, "error": text})
}

// WantHTTPError expects a gateway error reply with this HTTP status, gRPC
// code number and text in both "error" and "message".
func (c *Conn) WantHTTPError(o *Obs, httpStatus, grpcCode int, text string) {
	c.t.Helper()
	c.Want(o, "", map[string]any{
		"status": httpStatus,
		"body":   map[string]any{"error": text, "message": text, "code": grpcCode},
	})
}

func (c *Conn) closeStreams() {
	for _, s := range c.streams {
		s.Close()
	}
}
