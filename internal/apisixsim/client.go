package apisixsim

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of lua-resty-etcd and APISIX (§1.7, §1.8).
const (
	// DefaultFailTimeout is how long an endpoint stays unhealthy
	// (health_check_timeout).
	DefaultFailTimeout = 10 * time.Second
	// DefaultTimeout is etcd.timeout, the socket timeout of unary calls.
	DefaultTimeout = 30 * time.Second
	// maxReplyBytes bounds a unary reply.
	maxReplyBytes = 64 << 20
)

// ErrNoHealthyEndpoint is lua-resty-etcd's error when every endpoint is
// marked unhealthy.
var ErrNoHealthyEndpoint = errors.New("has no healthy etcd endpoint available")

// B64 encodes s as lua-resty-etcd does: standard base64 with padding.
func B64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// rangeEnd is lua-resty-etcd's get_range_end: key with its last byte + 1.
func rangeEnd(key string) string {
	if key == "" {
		return "\x00"
	}
	b := []byte(key)
	b[len(b)-1]++
	return string(b)
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Endpoints are the etcd.host URLs, e.g. "http://127.0.0.1:2379".
	Endpoints []string
	// Seed seeds the random start offset of the round-robin.
	Seed int64
	// MaxFails is the number of failures within FailTimeout that mark an
	// endpoint unhealthy (1 for the Admin client, 3 for the sync client).
	// Zero means 1.
	MaxFails int
	// FailTimeout is how long an endpoint stays unhealthy. Zero means
	// DefaultFailTimeout.
	FailTimeout time.Duration
	// Timeout bounds each unary call. Zero means DefaultTimeout.
	Timeout time.Duration
	// User and Password are etcd.user and etcd.password (see auth.go).
	User, Password string
	// TLS is etcd.tls, for https:// endpoints; nil: the defaults (the
	// system's roots, no client certificate).
	TLS *TLS
}

// Client is the lua-resty-etcd HTTP transport. It is safe for concurrent
// use.
type Client struct {
	endpoints   []string
	maxFails    int
	failTimeout time.Duration
	timeout     time.Duration
	hc          *http.Client
	user        string
	password    string
	tok         tokenCache

	mu        sync.Mutex
	next      int
	fails     []int
	firstFail []time.Time
	downUntil []time.Time
	failures  int
	seen      replies
}

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("apisixsim: no endpoints")
	}
	c := &Client{
		endpoints:   append([]string(nil), cfg.Endpoints...),
		maxFails:    cfg.MaxFails,
		failTimeout: cfg.FailTimeout,
		timeout:     cfg.Timeout,
		user:        cfg.User,
		password:    cfg.Password,
		fails:       make([]int, len(cfg.Endpoints)),
		firstFail:   make([]time.Time, len(cfg.Endpoints)),
		downUntil:   make([]time.Time, len(cfg.Endpoints)),
	}
	if c.maxFails <= 0 {
		c.maxFails = 1
	}
	if c.failTimeout <= 0 {
		c.failTimeout = DefaultFailTimeout
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	c.next = rand.New(rand.NewSource(cfg.Seed)).Intn(len(c.endpoints))
	tr := &http.Transport{
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     60 * time.Second, // lua_socket_keepalive_timeout
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		// HTTP/1.1 only, also over TLS.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.config()
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	c.hc = &http.Client{Transport: tr}
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Endpoints returns the configured endpoints.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// Failures returns how many endpoint failures were reported so far.
func (c *Client) Failures() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failures
}

// pick returns the next healthy endpoint, round-robin.
func (c *Client) pick() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for i := 0; i < len(c.endpoints); i++ {
		idx := c.next
		c.next = (c.next + 1) % len(c.endpoints)
		if now.Before(c.downUntil[idx]) {
			continue
		}
		return idx, nil
	}
	return -1, ErrNoHealthyEndpoint
}

// reportFailure counts a failure of endpoint idx; MaxFails failures within
// FailTimeout mark it unhealthy for FailTimeout.
func (c *Client) reportFailure(idx int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures++
	now := time.Now()
	if c.fails[idx] == 0 || now.Sub(c.firstFail[idx]) > c.failTimeout {
		c.fails[idx], c.firstFail[idx] = 0, now
	}
	c.fails[idx]++
	if c.fails[idx] >= c.maxFails {
		c.downUntil[idx] = now.Add(c.failTimeout)
		c.fails[idx] = 0
	}
}

// Reply is one unary HTTP reply.
type Reply struct {
	// Endpoint is the endpoint that answered.
	Endpoint string
	// Status is the HTTP status.
	Status int
	// Raw is the reply body as received.
	Raw []byte
	// Retried holds why each earlier attempt of the call failed (a
	// transport error or a status of 500 or more), oldest first: such an
	// attempt may still have taken effect.
	Retried []string
}

// Decode unmarshals the reply body into v.
func (r *Reply) Decode(v any) error {
	if err := json.Unmarshal(r.Raw, v); err != nil {
		return fmt.Errorf("apisixsim: decode reply %q: %w", truncate(r.Raw), err)
	}
	return nil
}

// Err returns the request-level error carried by a 4xx reply ({"error",
// "message","code"}), as lua-resty-etcd hands body.error to APISIX, or nil.
func (r *Reply) Err() error {
	var e struct {
		Error   any    `json:"error"`
		Message string `json:"message"`
		Code    any    `json:"code"`
	}
	if json.Unmarshal(r.Raw, &e) == nil && e.Error != nil {
		return &EtcdError{Status: r.Status, Message: fmt.Sprint(e.Error), Code: fmt.Sprint(e.Code)}
	}
	if r.Status >= 300 {
		return &EtcdError{Status: r.Status, Message: string(truncate(r.Raw))}
	}
	return nil
}

// EtcdError is an error reply from etcd.
type EtcdError struct {
	Status  int
	Message string
	Code    string
}

func (e *EtcdError) Error() string {
	return fmt.Sprintf("etcd error (HTTP %d, code %s): %s", e.Status, e.Code, e.Message)
}

func truncate(b []byte) []byte {
	if len(b) > 512 {
		return append(b[:512:512], "…"...)
	}
	return b
}

// attempts is #endpoints × max_fails + 1.
func (c *Client) attempts() int { return len(c.endpoints)*c.maxFails + 1 }

// Post sends body (JSON-encoded) to path, retrying on the next endpoint after
// a transport error or a status of 500 or more, as lua-resty-etcd does.
func (c *Client) Post(ctx context.Context, path string, body any) (*Reply, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("apisixsim: encode %s body: %w", path, err)
	}
	return c.PostRaw(ctx, path, b)
}

// PostRaw is Post with a body already encoded.
func (c *Client) PostRaw(ctx context.Context, path string, body []byte) (*Reply, error) {
	var lastErr error
	var retried []string
	for i := 0; i < c.attempts(); i++ {
		idx, err := c.pick()
		if err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("%w (last: %v)", err, lastErr)
			}
			return nil, err
		}
		r, err := c.once(ctx, c.endpoints[idx], http.MethodPost, path, body)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			c.reportFailure(idx)
			lastErr = err
			retried = append(retried, err.Error())
			continue
		}
		if r.Status >= 500 {
			c.reportFailure(idx)
			lastErr = fmt.Errorf("apisixsim: %s %s: HTTP %d: %s", r.Endpoint, path, r.Status, truncate(r.Raw))
			retried = append(retried, lastErr.Error())
			continue
		}
		r.Retried = retried
		return r, nil
	}
	return nil, lastErr
}

// Get sends a GET without body to one endpoint, without retry.
func (c *Client) Get(ctx context.Context, endpoint, path string) (*Reply, error) {
	return c.once(ctx, endpoint, http.MethodGet, path, nil)
}

func (c *Client) once(ctx context.Context, endpoint, method, path string, body []byte) (*Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint+path, rd)
	if err != nil {
		return nil, err
	}
	if err := c.authorize(ctx, req, path); err != nil {
		return nil, err
	}
	// No Content-Type, as lua-resty-etcd; Content-Length from bytes.Reader.
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return nil, fmt.Errorf("apisixsim: read %s%s: %w", endpoint, path, err)
	}
	c.seen.observe(endpoint, path, resp.StatusCode, raw)
	return &Reply{Endpoint: endpoint, Status: resp.StatusCode, Raw: raw}, nil
}

// openStream POSTs body to path on the next healthy endpoint and returns
// the response with its body unread (a watch). A transport error or a
// status of 500 or more is reported as an endpoint failure.
func (c *Client) openStream(ctx context.Context, path string, body []byte) (*http.Response, error) {
	idx, err := c.pick()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoints[idx]+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if err := c.authorize(ctx, req, path); err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.reportFailure(idx)
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		c.seen.observe(c.endpoints[idx], path, resp.StatusCode, b)
		if resp.StatusCode >= 500 {
			c.reportFailure(idx)
		}
		return nil, fmt.Errorf("apisixsim: watch on %s: HTTP %d: %s", c.endpoints[idx], resp.StatusCode, b)
	}
	c.seen.observe(c.endpoints[idx], path, resp.StatusCode, nil)
	return resp, nil
}

// Int64 is an int64 that decodes from a JSON string or number, as
// APISIX's tonumber() accepts both.
type Int64 int64

// UnmarshalJSON accepts "123" and 123.
func (i *Int64) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		return nil
	}
	if unq, err := strconv.Unquote(s); err == nil {
		s = unq
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return fmt.Errorf("apisixsim: not an integer: %s", b)
		}
		n = int64(f)
	}
	*i = Int64(n)
	return nil
}

// Header is a response header.
type Header struct {
	Revision *Int64 `json:"revision"`
	RaftTerm *Int64 `json:"raft_term"`
	// MemberID is the answering member's ID (a uint64, as a string).
	MemberID string `json:"member_id"`
}

// Rev returns the header revision, or 0 when absent.
func (h *Header) Rev() int64 {
	if h == nil || h.Revision == nil {
		return 0
	}
	return int64(*h.Revision)
}

// KV is a key-value as the gateway sends it (key and value in base64).
type KV struct {
	Key            string  `json:"key"`
	Value          *string `json:"value"`
	CreateRevision Int64   `json:"create_revision"`
	ModRevision    Int64   `json:"mod_revision"`
	Version        Int64   `json:"version"`
	Lease          Int64   `json:"lease"`
}

// decodeKey returns the decoded key.
func (kv *KV) decodeKey() (string, error) {
	b, err := base64.StdEncoding.DecodeString(kv.Key)
	return string(b), err
}

// decodeValue returns the decoded value bytes and whether a value was
// present.
func (kv *KV) decodeValue() ([]byte, bool, error) {
	if kv.Value == nil {
		return nil, false, nil
	}
	b, err := base64.StdEncoding.DecodeString(*kv.Value)
	return b, true, err
}

// RangeResponse is a /v3/kv/range reply.
type RangeResponse struct {
	Header *Header `json:"header"`
	Kvs    []KV    `json:"kvs"`
	Count  Int64   `json:"count"`
}

// PutResponse is a /v3/kv/put reply.
type PutResponse struct {
	Header *Header `json:"header"`
	PrevKV *KV     `json:"prev_kv"`
}

// deserialize is lua-resty-etcd's JSON serializer: a value that does not
// parse as JSON becomes nil.
func deserialize(b []byte) any {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil
	}
	return v
}

// rangeBody is readdir's request: every RangeRequest field explicit (§1.3).
func rangeBody(key, end string) map[string]any {
	return map[string]any{
		"key": B64(key), "range_end": B64(end), "limit": 0, "revision": 0,
		"sort_order": 0, "sort_target": 0, "serializable": false, "keys_only": false,
		"count_only": false, "min_mod_revision": 0, "max_mod_revision": 0,
		"min_create_revision": 0, "max_create_revision": 0,
	}
}

// Range sends readdir-style range [key, end) and decodes the reply. A
// request-level error comes back as an *EtcdError.
func (c *Client) Range(ctx context.Context, key, end string) (*RangeResponse, *Reply, error) {
	r, err := c.Post(ctx, "/v3/kv/range", rangeBody(key, end))
	if err != nil {
		return nil, nil, err
	}
	if err := r.Err(); err != nil {
		return nil, r, err
	}
	var rr RangeResponse
	if err := r.Decode(&rr); err != nil {
		return nil, r, err
	}
	if rr.Header.Rev() == 0 {
		return nil, r, fmt.Errorf("apisixsim: range reply without header.revision: %s", truncate(r.Raw))
	}
	return &rr, r, nil
}
