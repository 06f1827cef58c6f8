package apisixsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// wire sends raw gateway requests as lua-resty-etcd does (POST, JSON body,
// Content-Length, no Content-Type) and returns the raw bytes.
type wire struct {
	t   *testing.T
	url string
	hc  *http.Client
}

func newWire(t *testing.T, url string) *wire {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(hc.CloseIdleConnections)
	return &wire{t: t, url: url, hc: hc}
}

func (w *wire) raw(path, body string) (int, []byte) {
	w.t.Helper()
	req, err := http.NewRequest(http.MethodPost, w.url+path, strings.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	if req.Header.Get("Content-Type") != "" {
		w.t.Fatal("a Content-Type header would be sent")
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		w.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatalf("POST %s: read: %v", path, err)
	}
	return resp.StatusCode, b
}

// post sends body (a string verbatim, anything else JSON-encoded) and
// expects 200; it returns the raw bytes and the decoded object.
func (w *wire) post(path string, body any) ([]byte, map[string]any) {
	w.t.Helper()
	st, b := w.postAny(path, body)
	if st != 200 {
		w.t.Fatalf("POST %s %v: HTTP %d %s", path, body, st, b)
	}
	return b, decodeObj(w.t, b)
}

func (w *wire) postAny(path string, body any) (int, []byte) {
	w.t.Helper()
	s, ok := body.(string)
	if !ok {
		b, err := json.Marshal(body)
		if err != nil {
			w.t.Fatal(err)
		}
		s = string(b)
	}
	return w.raw(path, s)
}

func decodeObj(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %q: %v", b, err)
	}
	return m
}

// look returns the value at a dotted path ("header.revision", "kvs.0.key").
func look(v any, path string) (any, bool) {
	if path == "" {
		return v, true
	}
	for _, p := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[p]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// str returns the JSON string at path, failing if it is absent or not a
// string.
func str(t *testing.T, v any, path string) string {
	t.Helper()
	x, ok := look(v, path)
	s, isStr := x.(string)
	if !ok || !isStr {
		t.Fatalf("%s: want a JSON string, got %#v (present %v) in %v", path, x, ok, v)
	}
	return s
}

// i64 returns the int64 carried as a JSON string at path.
func i64(t *testing.T, v any, path string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(str(t, v, path), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

func absent(t *testing.T, v any, path string) {
	t.Helper()
	if x, ok := look(v, path); ok {
		t.Errorf("%s must be absent, got %#v", path, x)
	}
}

// rawWatch is a /v3/watch over a plain TCP connection: the request is one
// JSON object with Content-Length, as APISIX sends it, and the body is read
// as raw bytes.
type rawWatch struct {
	t    *testing.T
	conn net.Conn
	resp *http.Response
	mu   sync.Mutex
	raw  []byte
	// lines receives every '\n'-terminated piece of the body (without '\n').
	lines chan []byte
	done  chan struct{}
}

func openWatch(t *testing.T, url string, create map[string]any) *rawWatch {
	t.Helper()
	body, err := json.Marshal(map[string]any{"create_request": create})
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(url, "http://")
	conn, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", host, err)
	}
	fmt.Fprintf(conn, "POST /v3/watch HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", host, len(body), body)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		t.Fatalf("watch: read response head: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	w := &rawWatch{t: t, conn: conn, resp: resp, lines: make(chan []byte, 1024), done: make(chan struct{})}
	go w.read()
	t.Cleanup(w.close)
	return w
}

func (w *rawWatch) read() {
	defer close(w.done)
	defer close(w.lines)
	buf := make([]byte, 32<<10)
	var pending []byte
	for {
		n, err := w.resp.Body.Read(buf)
		if n > 0 {
			w.mu.Lock()
			w.raw = append(w.raw, buf[:n]...)
			w.mu.Unlock()
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				select {
				case w.lines <- append([]byte(nil), pending[:i]...):
				default: // the test stopped reading; raw keeps everything
				}
				pending = pending[i+1:]
			}
		}
		if err != nil {
			return
		}
	}
}

func (w *rawWatch) close() {
	w.conn.Close()
	<-w.done
}

// rawBody returns a copy of the body bytes received so far.
func (w *rawWatch) rawBody() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]byte(nil), w.raw...)
}

// next returns the next message, or nil after timeout or at the end.
func (w *rawWatch) next(timeout time.Duration) map[string]any {
	w.t.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l, ok := <-w.lines:
		if !ok {
			return nil
		}
		return decodeObj(w.t, l)
	case <-t.C:
		return nil
	}
}

// collectEvents reads messages until n events arrived (created messages
// included in msgs) or timeout.
func (w *rawWatch) collectEvents(n int, timeout time.Duration) (msgs []map[string]any, events []any) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(events) < n && time.Now().Before(deadline) {
		m := w.next(time.Until(deadline))
		if m == nil {
			break
		}
		msgs = append(msgs, m)
		if evs, ok := look(m, "result.events"); ok {
			events = append(events, evs.([]any)...)
		}
	}
	if len(events) < n {
		w.t.Fatalf("watch: got %d events in %v, want %d; messages %v", len(events), timeout, n, msgs)
	}
	return msgs, events
}

// validateStream checks the framing and ordering MUSTs on every message of
// a stream: 26 (one compact {"result":…} object per line, no blank lines),
// 29 (created only first, never with events), 30 (header.revision ≥ every
// mod_revision, non-decreasing, ≥ start-1), 33 (no event-less messages).
func validateStream(t *testing.T, raw []byte, start int64) {
	t.Helper()
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		t.Errorf("MUST 26: stream does not end at a message boundary: %q", truncate(raw))
	}
	pieces := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	var last int64
	for i, p := range pieces {
		if len(p) == 0 {
			t.Errorf("MUST 26: blank line at message %d", i)
			continue
		}
		var c bytes.Buffer
		if err := json.Compact(&c, p); err != nil || !bytes.Equal(c.Bytes(), p) {
			t.Errorf("MUST 26: message %d is not one compact JSON object: %q (%v)", i, p, err)
			continue
		}
		m := decodeObj(t, p)
		if len(m) != 1 || m["result"] == nil {
			t.Errorf("MUST 26: message %d is not wrapped in {\"result\":…}: %s", i, p)
			continue
		}
		_, created := look(m, "result.created")
		evs, hasEvents := look(m, "result.events")
		_, canceled := look(m, "result.canceled")
		if created != (i == 0) {
			t.Errorf("MUST 29: created on message %d: %s", i, p)
		}
		if created && hasEvents {
			t.Errorf("MUST 29: created message carries events: %s", p)
		}
		if created || canceled {
			continue
		}
		if !hasEvents {
			t.Errorf("MUST 33: event-less message %d: %s", i, p)
			continue
		}
		rs, ok := look(m, "result.header.revision")
		if !ok {
			t.Errorf("MUST 7: event message without header.revision: %s", p)
			continue
		}
		rev, _ := strconv.ParseInt(fmt.Sprint(rs), 10, 64)
		for _, ev := range evs.([]any) {
			mr, _ := look(ev, "kv.mod_revision")
			mrev, _ := strconv.ParseInt(fmt.Sprint(mr), 10, 64)
			if mrev > rev {
				t.Errorf("MUST 30: header.revision %d below mod_revision %d: %s", rev, mrev, p)
			}
			if mrev < start {
				t.Errorf("MUST 28: event at %d before start_revision %d", mrev, start)
			}
		}
		if rev < last {
			t.Errorf("MUST 30: header.revision went from %d to %d", last, rev)
		}
		if rev < start-1 {
			t.Errorf("MUST 30: header.revision %d below start_revision-1 = %d", rev, start-1)
		}
		last = rev
	}
}

// put writes key=value over the gateway and returns the new revision.
func (w *wire) put(k, v string, extra ...any) int64 {
	w.t.Helper()
	body := map[string]any{"key": B64(k), "value": B64(v)}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i].(string)] = extra[i+1]
	}
	_, m := w.post("/v3/kv/put", body)
	return i64(w.t, m, "header.revision")
}

func (w *wire) del(k, end string) (int64, map[string]any) {
	w.t.Helper()
	body := map[string]any{"key": B64(k)}
	if end != "" {
		body["range_end"] = B64(end)
	}
	_, m := w.post("/v3/kv/deleterange", body)
	return i64(w.t, m, "header.revision"), m
}

var (
	stringRevRE = regexp.MustCompile(`"revision":"[1-9][0-9]*"`)
	zeroRE      = regexp.MustCompile(`":(0|"0"|false|\[\]|""|null)[,}]`)
	camelRE     = regexp.MustCompile(`"(createRevision|modRevision|prevKv|rangeEnd|compactRevision|cancelReason|watchId|raftTerm|clusterId|memberId)"`)
)

// checkProto3 asserts MUST 4 on a raw reply: snake_case, int64 as strings,
// zero values omitted.
func checkProto3(t *testing.T, label string, b []byte) {
	t.Helper()
	if !stringRevRE.Match(b) {
		t.Errorf("MUST 4/7: %s: no string header.revision in %s", label, b)
	}
	if m := zeroRE.Find(b); m != nil {
		t.Errorf("MUST 4: %s: zero value emitted (%s) in %s", label, m, b)
	}
	if m := camelRE.Find(b); m != nil {
		t.Errorf("MUST 4: %s: camelCase name %s in %s", label, m, b)
	}
	if m := regexp.MustCompile(`"(revision|create_revision|mod_revision|version|count|deleted|lease|ID|TTL)":[0-9]`).Find(b); m != nil {
		t.Errorf("MUST 4: %s: int64 as a JSON number (%s) in %s", label, m, b)
	}
}

// TestWireMUST checks, on the raw HTTP bytes, each wire-format MUST of §6
// that APISIX depends on. Subtests are named after the MUST numbers. They
// share one server per target; MUST 34 (compaction) runs last.
func TestWireMUST(t *testing.T) {
	forEachTarget(t, func(t *testing.T, e env) {
		url := e.eps[0]
		run := func(name string, f func(t *testing.T, w *wire, p string)) {
			t.Run(name, func(t *testing.T) {
				f(t, newWire(t, url), "/must/"+strings.Fields(name)[1]+"/")
			})
		}
		run("MUST 2 version", func(t *testing.T, w *wire, _ string) {
			begin := time.Now()
			resp, err := w.hc.Get(url + "/version")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || time.Since(begin) > 3*time.Second {
				t.Fatalf("GET /version: %d in %v", resp.StatusCode, time.Since(begin))
			}
			m := decodeObj(t, b)
			if !regexp.MustCompile(`^3\.\d+\.\d+`).MatchString(str(t, m, "etcdserver")) {
				t.Errorf("etcdserver %q", m["etcdserver"])
			}
			if !regexp.MustCompile(`^3\.([4-9]|\d\d+)\.0$`).MatchString(str(t, m, "etcdcluster")) {
				t.Errorf("etcdcluster %q, want 3.x.0 with x >= 4", m["etcdcluster"])
			}
			if err := CheckVersions(context.Background(), newTestClient(t, 1, 1, url, url)); err != nil {
				t.Errorf("CLI version check: %v", err)
			}
		})
		run("MUST 3 base64 binary-safe", func(t *testing.T, w *wire, p string) {
			k := p + "\x00\x01\xfb\xfe\xff" // 5 bytes after p: padding
			v := make([]byte, 256)
			for i := range v {
				v[i] = byte(i)
			}
			w.put(k, string(v))
			b, m := w.post("/v3/kv/range", map[string]any{"key": B64(k)})
			wantK, wantV := base64.StdEncoding.EncodeToString([]byte(k)), base64.StdEncoding.EncodeToString(v)
			if !bytes.Contains(b, []byte(`"key":"`+wantK+`"`)) || !bytes.Contains(b, []byte(`"value":"`+wantV+`"`)) {
				t.Errorf("range reply does not carry standard padded base64 %q / %q: %s", wantK, wantV, b)
			}
			if str(t, m, "kvs.0.value") != wantV {
				t.Errorf("value round trip differs")
			}
		})
		run("MUST 4 proto3 JSON", func(t *testing.T, w *wire, p string) {
			b, _ := w.post("/v3/kv/put", map[string]any{"key": B64(p + "a"), "value": B64("v"), "prev_kv": true})
			checkProto3(t, "put new", b)
			b, m := w.post("/v3/kv/range", rangeBody(p, rangeEnd(p)))
			checkProto3(t, "range", b)
			for _, f := range []string{"kvs.0.create_revision", "kvs.0.mod_revision", "kvs.0.version", "count"} {
				str(t, m, f)
			}
			absent(t, m, "kvs.0.lease")
			absent(t, m, "more")
			b, _ = w.post("/v3/kv/deleterange", map[string]any{"key": B64(p + "missing")})
			checkProto3(t, "delete miss", b)
			b, _ = w.post("/v3/kv/txn", map[string]any{"compare": []any{map[string]any{"key": B64(p + "a"), "target": "MOD", "result": "EQUAL", "mod_revision": 1}},
				"success": []any{map[string]any{"requestPut": map[string]any{"key": B64(p + "a"), "value": B64("x")}}}})
			checkProto3(t, "failed txn", b)
		})
		run("MUST 5 input styles", func(t *testing.T, w *wire, p string) {
			r1 := w.put(p+"a", "1")
			w.put(p+"b", "2")
			// Explicit zero and false fields, enums as numbers.
			_, m := w.post("/v3/kv/range", rangeBody(p, rangeEnd(p)))
			if i64(t, m, "count") != 2 {
				t.Errorf("range with explicit zero fields: %v", m)
			}
			// camelCase names, int64 as strings, enums as names.
			_, m = w.post("/v3/kv/range", map[string]any{"key": B64(p), "rangeEnd": B64(rangeEnd(p)), "revision": strconv.FormatInt(r1, 10), "sortOrder": "DESCEND", "sortTarget": "KEY", "limit": "5"})
			if i64(t, m, "count") != 1 || str(t, m, "kvs.0.key") != B64(p+"a") {
				t.Errorf("camelCase range at revision %d as string: %v", r1, m)
			}
			_, m = w.post("/v3/kv/range", map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p)), "sort_order": 2, "sort_target": 0})
			if str(t, m, "kvs.0.key") != B64(p+"b") {
				t.Errorf("sort_order 2 (DESCEND) as a number: %v", m)
			}
			_, m = w.post("/v3/kv/put", map[string]any{"key": B64(p + "a"), "value": B64("3"), "prevKv": true})
			if str(t, m, "prev_kv.value") != B64("1") {
				t.Errorf("put with camelCase prevKv: %v", m)
			}
			_, m = w.post("/v3/kv/range", map[string]any{"key": B64(p + "a")})
			mod := i64(t, m, "kvs.0.mod_revision")
			_, m = w.post("/v3/kv/txn", map[string]any{
				"compare": []any{map[string]any{"key": B64(p + "a"), "target": 2, "result": 0, "modRevision": strconv.FormatInt(mod, 10)}},
				"success": []any{map[string]any{"request_put": map[string]any{"key": B64(p + "a"), "value": B64("4")}}}})
			if m["succeeded"] != true {
				t.Errorf("txn with enum numbers, camelCase modRevision as string, snake_case request_put: %v", m)
			}
			w2 := openWatch(t, url, map[string]any{"key": B64(p + "a"), "start_revision": strconv.FormatInt(r1, 10)})
			if _, evs := w2.collectEvents(1, 3*time.Second); str(t, evs[0], "kv.mod_revision") != strconv.FormatInt(r1, 10) {
				t.Errorf("watch with start_revision as a string: %v", evs)
			}
		})
		run("MUST 6 lease IDs are strings", func(t *testing.T, w *wire, p string) {
			b, m := w.post("/v3/lease/grant", map[string]any{"TTL": 60, "ID": 0})
			if !regexp.MustCompile(`"ID":"[1-9][0-9]*"`).Match(b) || str(t, m, "TTL") != "60" {
				t.Errorf("grant: %s", b)
			}
			first := m["ID"]
			big := "4611686018427387905" // 2^62 + 1
			b, _ = w.post("/v3/lease/grant", map[string]any{"TTL": 60, "ID": big})
			if !bytes.Contains(b, []byte(`"ID":"`+big+`"`)) {
				t.Errorf("grant with ID %s: %s", big, b)
			}
			w.put(p+"a", "v", "lease", big)
			b, _ = w.post("/v3/kv/range", map[string]any{"key": B64(p + "a")})
			if !bytes.Contains(b, []byte(`"lease":"`+big+`"`)) {
				t.Errorf("kv lease not the exact string ID: %s", b)
			}
			w.post("/v3/lease/revoke", map[string]any{"ID": big})
			w.post("/v3/lease/revoke", map[string]any{"ID": first})
		})
		run("MUST 7 header.revision everywhere", func(t *testing.T, w *wire, p string) {
			rev := w.put(p+"a", "1")
			for _, c := range []struct {
				label, path string
				body        any
			}{
				{"range hit", "/v3/kv/range", map[string]any{"key": B64(p + "a")}},
				{"range miss", "/v3/kv/range", map[string]any{"key": B64(p + "nope")}},
				{"delete miss", "/v3/kv/deleterange", map[string]any{"key": B64(p + "nope")}},
				{"failed txn", "/v3/kv/txn", map[string]any{"compare": []any{map[string]any{"key": B64(p + "a"), "target": "MOD", "result": "EQUAL", "mod_revision": rev - 1}},
					"success": []any{map[string]any{"requestPut": map[string]any{"key": B64(p + "a"), "value": B64("2")}}}}},
			} {
				_, m := w.post(c.path, c.body)
				if got := i64(t, m, "header.revision"); got != rev {
					t.Errorf("%s: header.revision %d, want the store revision %d", c.label, got, rev)
				}
			}
			_, m := w.post("/v3/lease/grant", map[string]any{"TTL": 60, "ID": 0})
			i64(t, m, "header.revision")
			_, k := w.post("/v3/lease/keepalive", map[string]any{"ID": m["ID"]})
			i64(t, k, "result.header.revision")
			w.post("/v3/lease/revoke", map[string]any{"ID": m["ID"]})
		})
		run("MUST 9 range bounds", func(t *testing.T, w *wire, p string) {
			for _, s := range []string{"a", "b", "b0", "c"} {
				w.put(p+s, s)
			}
			_, m := w.post("/v3/kv/range", map[string]any{"key": B64(p + "a"), "range_end": B64(p + "c")})
			if got := keysOf(t, m); !slices.Equal(got, []string{p + "a", p + "b", p + "b0"}) {
				t.Errorf("[a, c): %q", got)
			}
			_, m = w.post("/v3/kv/range", map[string]any{"key": B64(p + "b")})
			if got := keysOf(t, m); !slices.Equal(got, []string{p + "b"}) {
				t.Errorf("exact get b: %q", got)
			}
			// The Admin GET trap: [k, k+1) returns k and longer keys; the
			// exact one comes first.
			_, m = w.post("/v3/kv/range", map[string]any{"key": B64(p + "b"), "range_end": B64(p + "c")})
			if got := keysOf(t, m); !slices.Equal(got, []string{p + "b", p + "b0"}) {
				t.Errorf("[b, c): %q", got)
			}
		})
		run("MUST 10 byte order, case-sensitive", func(t *testing.T, w *wire, p string) {
			ids := []string{"route1", "Route1", "1abc", "10", "1", "2", "~", "\xff", "\x01", "B", "a", "é"}
			for i, id := range ids {
				w.put(p+id, strconv.Itoa(i))
			}
			_, m := w.post("/v3/kv/range", rangeBody(p, rangeEnd(p)))
			want := make([]string, len(ids))
			for i, id := range ids {
				want[i] = p + id
			}
			sort.Strings(want) // Go compares strings byte-wise
			if got := keysOf(t, m); !slices.Equal(got, want) {
				t.Errorf("order %q, want %q", got, want)
			}
		})
		run("MUST 12 empty range has no kvs", func(t *testing.T, w *wire, p string) {
			b, m := w.post("/v3/kv/range", rangeBody(p, rangeEnd(p)))
			if bytes.Contains(b, []byte(`"kvs"`)) || bytes.Contains(b, []byte(`"count"`)) {
				t.Errorf("empty range carries kvs or count: %s", b)
			}
			i64(t, m, "header.revision")
		})
		run("MUST 15 revisions on every kv", func(t *testing.T, w *wire, p string) {
			r1 := w.put(p+"a", "same")
			r2 := w.put(p+"a", "same")
			w.put(p+"b", "x")
			_, m := w.post("/v3/kv/range", rangeBody(p, rangeEnd(p)))
			for i := range 2 {
				if i64(t, m, fmt.Sprintf("kvs.%d.create_revision", i)) == 0 || i64(t, m, fmt.Sprintf("kvs.%d.mod_revision", i)) == 0 {
					t.Errorf("zero revision in %v", m)
				}
			}
			if r2 <= r1 || i64(t, m, "kvs.0.mod_revision") != r2 || i64(t, m, "kvs.0.create_revision") != r1 || str(t, m, "kvs.0.version") != "2" {
				t.Errorf("identical rewrite: put revisions %d, %d; kv %v", r1, r2, m["kvs"])
			}
		})
		run("MUST 16 prev_kv iff the key existed", func(t *testing.T, w *wire, p string) {
			b, _ := w.post("/v3/kv/put", map[string]any{"key": B64(p + "a"), "value": B64("1"), "prev_kv": true})
			if bytes.Contains(b, []byte("prev_kv")) {
				t.Errorf("put of a new key with prev_kv: %s", b)
			}
			_, m := w.post("/v3/kv/put", map[string]any{"key": B64(p + "a"), "value": B64("2"), "prev_kv": true})
			if str(t, m, "prev_kv.value") != B64("1") || str(t, m, "prev_kv.key") != B64(p+"a") {
				t.Errorf("put of an existing key: %v", m)
			}
			admin := NewAdmin(newTestClient(t, 1, 1, url))
			ctx := context.Background()
			if r, err := admin.Put(ctx, "must16", "x", map[string]any{"a": 1}, 0); err != nil || r.Status != 201 {
				t.Errorf("Admin PUT new: %+v %v", r, err)
			}
			if r, err := admin.Put(ctx, "must16", "x", map[string]any{"a": 1}, 0); err != nil || r.Status != 200 {
				t.Errorf("Admin PUT existing: %+v %v", r, err)
			}
		})
		run("MUST 19 txn compare MOD", func(t *testing.T, w *wire, p string) {
			rev := w.put(p+"a", "1")
			_, g := w.post("/v3/lease/grant", map[string]any{"TTL": 60, "ID": 0})
			lease := str(t, g, "ID")
			txn := func(mod int64) []byte {
				b, _ := w.post("/v3/kv/txn", map[string]any{
					"compare": []any{map[string]any{"key": B64(p + "a"), "target": "MOD", "result": "EQUAL", "mod_revision": mod}},
					"success": []any{map[string]any{"requestPut": map[string]any{"key": B64(p + "a"), "value": B64(fmt.Sprint(mod)), "lease": lease}}}})
				return b
			}
			b := txn(rev)
			if !bytes.Contains(b, []byte(`"succeeded":true`)) {
				t.Errorf("matching txn: %s", b)
			}
			_, m := w.post("/v3/kv/range", map[string]any{"key": B64(p + "a")})
			if str(t, m, "kvs.0.value") != B64(fmt.Sprint(rev)) || str(t, m, "kvs.0.lease") != lease {
				t.Errorf("after txn with lease: %v", m)
			}
			b = txn(rev)
			if bytes.Contains(b, []byte("succeeded")) || !stringRevRE.Match(b) {
				t.Errorf("failed txn must omit succeeded and carry header.revision: %s", b)
			}
			w.post("/v3/lease/revoke", map[string]any{"ID": lease})
		})
		run("MUST 21 deleted count", func(t *testing.T, w *wire, p string) {
			for _, s := range []string{"a", "b1", "b2", "b3"} {
				w.put(p+s, s)
			}
			if _, m := w.del(p+"a", ""); str(t, m, "deleted") != "1" {
				t.Errorf("single delete: %v", m)
			}
			if _, m := w.del(p+"b", p+"c"); str(t, m, "deleted") != "3" {
				t.Errorf("ranged delete: %v", m)
			}
			b, _ := w.post("/v3/kv/deleterange", map[string]any{"key": B64(p + "a")})
			if bytes.Contains(b, []byte("deleted")) {
				t.Errorf("delete miss must omit deleted: %s", b)
			}
			admin := NewAdmin(newTestClient(t, 1, 1, url))
			if r, err := admin.Delete(context.Background(), "must21", "none"); err != nil || r.Status != 404 {
				t.Errorf("Admin DELETE of a missing key: %+v %v", r, err)
			}
		})
		run("MUST 22 request errors are 4xx", func(t *testing.T, w *wire, p string) {
			for _, c := range []struct{ label, path, body string }{
				{"empty key", "/v3/kv/put", `{"value":"dg=="}`},
				{"future revision", "/v3/kv/range", `{"key":"` + B64(p) + `","revision":"1000000000"}`},
				{"unknown lease", "/v3/kv/put", `{"key":"` + B64(p+"a") + `","value":"dg==","lease":"123456789"}`},
				{"malformed JSON", "/v3/kv/range", `{"key":`},
			} {
				st, b := w.raw(c.path, c.body)
				if st < 400 || st >= 500 {
					t.Errorf("%s: HTTP %d %s, want 4xx", c.label, st, b)
					continue
				}
				m := decodeObj(t, b)
				_, e := m["error"].(string)
				_, msg := m["message"].(string)
				_, code := m["code"].(json.Number)
				if !e || !msg || !code {
					t.Errorf("%s: body %s, want {\"error\",\"message\",\"code\"}", c.label, b)
				}
			}
			// Through the lua-resty-etcd transport no endpoint is marked
			// unhealthy by request errors.
			c := newTestClient(t, 1, 1, url)
			for range 3 {
				if _, err := c.PostRaw(context.Background(), "/v3/kv/put", []byte(`{"value":"dg=="}`)); err != nil {
					t.Errorf("transport error on a request error: %v", err)
				}
			}
			if c.Failures() != 0 {
				t.Errorf("request errors counted as %d endpoint failures", c.Failures())
			}
		})
		run("MUST 25 chunked, created at once", func(t *testing.T, w *wire, p string) {
			begin := time.Now()
			ww := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p))})
			if !slices.Equal(ww.resp.TransferEncoding, []string{"chunked"}) {
				t.Errorf("Transfer-Encoding %v, want chunked", ww.resp.TransferEncoding)
			}
			m := ww.next(2 * time.Second)
			if m == nil || m["result"].(map[string]any)["created"] != true {
				t.Fatalf("no created message within 2 s: %v", m)
			}
			t.Logf("created after %v", time.Since(begin))
		})
		run("MUST 26 27 framing and half-close", func(t *testing.T, w *wire, p string) {
			start := w.put(p+"a", "1")
			ww := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p)), "start_revision": start})
			ww.collectEvents(1, 3*time.Second)
			// The request body ended long ago (Content-Length); the
			// stream must stay open and keep delivering (MUST 27). The
			// idle spells are what is tested, so these sleeps stay.
			time.Sleep(1500 * time.Millisecond)
			w.put(p+"b", strings.Repeat("x", 100000)) // spans many chunks
			w.del(p+"a", "")
			ww.collectEvents(2, 3*time.Second)
			time.Sleep(1000 * time.Millisecond)
			w.put(p+"c", "3")
			ww.collectEvents(1, 3*time.Second)
			// Room for a stray message after the last one, were there
			// one, before the whole stream is validated.
			time.Sleep(300 * time.Millisecond)
			validateStream(t, ww.rawBody(), start)
		})
		run("MUST 28 30 replay and future start", func(t *testing.T, w *wire, p string) {
			r1 := w.put(p+"a", "1")
			w.put(p+"a", "2")
			rd, _ := w.del(p+"a", "")
			w.put(p+"b", "3")
			ww := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p)), "start_revision": r1})
			_, evs := ww.collectEvents(4, 3*time.Second)
			want := []string{"PUT a 1", "PUT a 2", "DELETE a", "PUT b 3"}
			if got := describe(t, evs, p); !slices.Equal(got, want) {
				t.Errorf("replay %q, want %q", got, want)
			}
			if mr := i64(t, evs[2], "kv.mod_revision"); mr != rd {
				t.Errorf("DELETE mod_revision %d, want %d", mr, rd)
			}
			cur := rd + 1
			fut := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p)), "start_revision": cur + 3})
			if m := fut.next(2 * time.Second); m == nil || m["result"].(map[string]any)["created"] != true || m["result"].(map[string]any)["canceled"] != nil {
				t.Fatalf("future start_revision: %v", m)
			}
			var last int64
			for i := range 4 {
				last = w.put(fmt.Sprintf("%sf%d", p, i), "x")
			}
			_, evs = fut.collectEvents(2, 3*time.Second)
			if i64(t, evs[0], "kv.mod_revision") != cur+3 || i64(t, evs[1], "kv.mod_revision") != last {
				t.Errorf("future watch from %d delivered %v", cur+3, evs)
			}
			// Room for a stray message after the last one, were there
			// one, before the whole streams are validated.
			time.Sleep(300 * time.Millisecond)
			validateStream(t, ww.rawBody(), r1)
			validateStream(t, fut.rawBody(), cur+3)
		})
		run("MUST 29 created first, never with events", func(t *testing.T, w *wire, p string) {
			r1 := w.put(p+"a", "1")
			w.put(p+"b", "2")
			ww := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p)), "start_revision": r1})
			msgs, _ := ww.collectEvents(2, 3*time.Second)
			if _, ev := look(msgs[0], "result.events"); msgs[0]["result"].(map[string]any)["created"] != true || ev {
				t.Errorf("first message %v", msgs[0])
			}
			// Room for a stray message after the last one, were there
			// one, before the whole stream is validated.
			time.Sleep(300 * time.Millisecond)
			validateStream(t, ww.rawBody(), r1)
		})
		run("SHOULD 29 one txn, one message", func(t *testing.T, w *wire, p string) {
			ww := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p))})
			ww.next(2 * time.Second)
			w.post("/v3/kv/txn", map[string]any{"success": []any{
				map[string]any{"requestPut": map[string]any{"key": B64(p + "a"), "value": B64("1")}},
				map[string]any{"requestPut": map[string]any{"key": B64(p + "b"), "value": B64("2")}}}})
			msgs, _ := ww.collectEvents(2, 3*time.Second)
			if len(msgs) != 1 {
				t.Errorf("txn events came in %d messages: %v", len(msgs), msgs)
			}
		})
		run("MUST 32 DELETE events", func(t *testing.T, w *wire, p string) {
			w.put(p+"a", "1")
			ww := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p))})
			ww.next(2 * time.Second)
			rd, _ := w.del(p+"a", "")
			rp := w.put(p+"b", "2")
			_, evs := ww.collectEvents(2, 3*time.Second)
			del, put := evs[0].(map[string]any), evs[1].(map[string]any)
			if del["type"] != "DELETE" {
				t.Errorf("delete event type %v", del["type"])
			}
			kv := del["kv"].(map[string]any)
			if kv["key"] != B64(p+"a") || kv["mod_revision"] != strconv.FormatInt(rd, 10) {
				t.Errorf("delete kv %v, want key and mod_revision %d", kv, rd)
			}
			for _, f := range []string{"value", "create_revision", "version"} {
				if _, ok := kv[f]; ok {
					t.Errorf("delete kv carries %s: %v", f, kv)
				}
			}
			if _, ok := put["type"]; ok {
				t.Errorf("put event carries type: %v", put)
			}
			if pk := put["kv"].(map[string]any); pk["value"] != B64("2") || pk["mod_revision"] != strconv.FormatInt(rp, 10) || pk["create_revision"] == nil {
				t.Errorf("put kv %v", pk)
			}
		})
		run("MUST 33 no event-less messages", func(t *testing.T, w *wire, p string) {
			ww := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p))})
			ww.next(2 * time.Second)
			for i := range 10 {
				w.put(fmt.Sprintf("/must/33-outside/%d", i), "x") // outside the watched range
				time.Sleep(100 * time.Millisecond)                // spread over a second: a message per put would show
			}
			w.put(p+"a", "1")
			ww.collectEvents(1, 3*time.Second)
			// Nothing more may come: watch the stream for 1.5 s, failing
			// as soon as a third line shows.
			for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if raw := ww.rawBody(); bytes.Count(raw, []byte("\n")) > 2 {
					t.Fatalf("want exactly created + one event message, got more: %s", raw)
				}
			}
			raw := ww.rawBody()
			if n := bytes.Count(raw, []byte("\n")); n != 2 {
				t.Errorf("want exactly created + one event message, got %d lines: %s", n, raw)
			}
			validateStream(t, raw, 0)
		})
		run("MUST 39 lease grant, put, keepalive", func(t *testing.T, w *wire, p string) {
			_, g := w.post("/v3/lease/grant", map[string]any{"TTL": 60, "ID": 0})
			id := str(t, g, "ID")
			if str(t, g, "TTL") != "60" {
				t.Errorf("grant TTL %v", g["TTL"])
			}
			w.put(p+"a", "1", "lease", id)
			begin := time.Now()
			b, _ := w.post("/v3/lease/keepalive", map[string]any{"ID": id})
			if time.Since(begin) > 3*time.Second {
				t.Errorf("keepalive reply took %v to end", time.Since(begin))
			}
			if bytes.Count(b, []byte("\n")) != 1 || !bytes.HasSuffix(b, []byte("\n")) || !bytes.HasPrefix(b, []byte(`{"result":{`)) {
				t.Errorf("keepalive body must be exactly one {\"result\":…} line: %q", b)
			}
			m := decodeObj(t, b)
			if str(t, m, "result.ID") != id || str(t, m, "result.TTL") != "60" {
				t.Errorf("keepalive %v", m)
			}
			b, _ = w.post("/v3/lease/keepalive", map[string]any{"ID": "987654321"})
			if bytes.Contains(b, []byte(`"TTL"`)) {
				t.Errorf("keepalive of an unknown lease must omit TTL: %s", b)
			}
			w.post("/v3/lease/revoke", map[string]any{"ID": id})
		})
		run("MUST 40 lease expiry deletes with events", func(t *testing.T, w *wire, p string) {
			_, g := w.post("/v3/lease/grant", map[string]any{"TTL": 2, "ID": 0})
			rp := w.put(p+"a", "1", "lease", str(t, g, "ID"))
			ww := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p)), "start_revision": rp + 1})
			_, evs := ww.collectEvents(1, 10*time.Second)
			if describe(t, evs, p)[0] != "DELETE a" || i64(t, evs[0], "kv.mod_revision") <= rp {
				t.Errorf("expiry event %v, want DELETE a at a revision above %d", evs, rp)
			}
			if _, m := w.post("/v3/kv/range", map[string]any{"key": B64(p + "a")}); m["kvs"] != nil {
				t.Errorf("expired key still there: %v", m)
			}
		})
		run("MUST 34 compaction", func(t *testing.T, w *wire, p string) {
			r1 := w.put(p+"a", "1")
			w.put(p+"a", "2")
			c := w.put(p+"a", "3")
			w.post("/v3/kv/compaction", map[string]any{"revision": c, "physical": true})
			ww := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p)), "start_revision": r1})
			var canceled map[string]any
			for range 2 {
				m := ww.next(3 * time.Second)
				if m == nil {
					break
				}
				if r := m["result"].(map[string]any); r["canceled"] == true {
					canceled = r
					break
				}
			}
			if canceled == nil || canceled["compact_revision"] != strconv.FormatInt(c, 10) {
				t.Fatalf("watch below compaction: %v, want canceled with compact_revision %d; body %s", canceled, c, ww.rawBody())
			}
			again := openWatch(t, url, map[string]any{"key": B64(p), "range_end": B64(rangeEnd(p)), "start_revision": c})
			_, evs := again.collectEvents(1, 3*time.Second)
			if i64(t, evs[0], "kv.mod_revision") != c {
				t.Errorf("watch from compact_revision %d: %v", c, evs)
			}
			if bytes.Contains(again.rawBody(), []byte("canceled")) {
				t.Errorf("watch from compact_revision was canceled: %s", again.rawBody())
			}
		})
	})
}

func keysOf(t *testing.T, m map[string]any) []string {
	t.Helper()
	kvs, _ := m["kvs"].([]any)
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		b, err := base64.StdEncoding.DecodeString(str(t, kv, "key"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func describe(t *testing.T, evs []any, p string) []string {
	t.Helper()
	var out []string
	for _, ev := range evs {
		kb, _ := base64.StdEncoding.DecodeString(str(t, ev, "kv.key"))
		k := strings.TrimPrefix(string(kb), p)
		if typ, _ := look(ev, "type"); typ == "DELETE" {
			out = append(out, "DELETE "+k)
			continue
		}
		vb, _ := base64.StdEncoding.DecodeString(str(t, ev, "kv.value"))
		out = append(out, "PUT "+k+" "+string(vb))
	}
	return out
}
