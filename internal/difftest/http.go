package difftest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// maxReplyBytes bounds how much of a unary HTTP reply is read.
const maxReplyBytes = 8 << 20

// M is a JSON object literal used to build gateway request bodies.
type M = map[string]any

// B64 encodes s the way lua-resty-etcd encodes keys and values: standard
// base64 with padding.
func B64(s string) string {
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// HTTPClient talks to an etcd HTTP/JSON gateway exactly as APISIX's
// lua-resty-etcd does: every call is a POST whose body is a JSON object sent
// with Content-Length and without a Content-Type header. It is safe for
// concurrent use.
type HTTPClient struct {
	// BaseURL is the client URL, e.g. "http://127.0.0.1:2379".
	BaseURL string
	client  *http.Client
	token   string
}

// NewHTTPClient returns a client for the gateway at baseURL. Deadlines come
// from the contexts passed to each call.
func NewHTTPClient(baseURL string) *HTTPClient {
	return NewHTTPClientTLS(baseURL, nil)
}

// NewHTTPClientTLS returns a client for an https gateway that speaks
// HTTP/1.1 over TLS with cfg, as OpenResty does (no ALPN, no HTTP/2); a
// nil cfg is NewHTTPClient.
func NewHTTPClientTLS(baseURL string, cfg *tls.Config) *HTTPClient {
	transport := &http.Transport{
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true, // lua-resty-etcd never asks for gzip
	}
	if cfg != nil {
		transport.TLSClientConfig = cfg.Clone()
		// A non-nil empty map keeps the transport from offering h2.
		transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &HTTPClient{BaseURL: baseURL, client: &http.Client{Transport: transport}}
}

// WithTransport returns a copy of h that sends its requests through rt, for
// instance to observe or alter traffic in tests of the harness itself.
func (h *HTTPClient) WithTransport(rt http.RoundTripper) *HTTPClient {
	return &HTTPClient{BaseURL: h.BaseURL, client: &http.Client{Transport: rt}, token: h.token}
}

// WithToken returns a copy of h that sends tok raw in the Authorization
// header, as lua-resty-etcd does once authenticated ("" sends none).
func (h *HTTPClient) WithToken(tok string) *HTTPClient {
	return &HTTPClient{BaseURL: h.BaseURL, client: h.client, token: tok}
}

// Close releases idle connections.
func (h *HTTPClient) Close() {
	h.client.CloseIdleConnections()
}

// Reply is one complete HTTP answer.
type Reply struct {
	Status int
	Body   []byte
}

// Post sends body (see EncodeBodies) to path and reads the whole reply.
func (h *HTTPClient) Post(ctx context.Context, path string, body []byte) (Reply, error) {
	return h.do(ctx, http.MethodPost, path, body)
}

// Get sends a GET without a body, as lua-resty-etcd does for /version.
func (h *HTTPClient) Get(ctx context.Context, path string) (Reply, error) {
	return h.do(ctx, http.MethodGet, path, nil)
}

func (h *HTTPClient) do(ctx context.Context, method, path string, body []byte) (Reply, error) {
	resp, err := h.send(ctx, method, path, body)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return Reply{}, fmt.Errorf("difftest: read %s %s reply: %w", method, path, err)
	}
	return Reply{Status: resp.StatusCode, Body: b}, nil
}

// OpenStream POSTs body to path and returns the response with its body
// unread, for streamed replies such as /v3/watch. The caller closes it;
// cancelling ctx also ends it.
func (h *HTTPClient) OpenStream(ctx context.Context, path string, body []byte) (*http.Response, error) {
	return h.send(ctx, http.MethodPost, path, body)
}

func (h *HTTPClient) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.BaseURL+path, rd)
	if err != nil {
		return nil, fmt.Errorf("difftest: build %s %s: %w", method, path, err)
	}
	if h.token != "" {
		req.Header.Set("Authorization", h.token)
	}
	// No Content-Type: lua-resty-etcd never sets one, and net/http adds
	// none on its own. Content-Length comes from the bytes.Reader.
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("difftest: %s %s: %w", method, path, err)
	}
	return resp, nil
}

// EncodeBodies builds a request body from one or more parts. A string or
// []byte part is sent verbatim (for malformed input and exact APISIX shapes);
// anything else is JSON-encoded. Parts are separated by a newline, which is
// how a second object (e.g. {"progress_request":{}}) follows a watch create.
func EncodeBodies(parts ...any) ([]byte, error) {
	var buf bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			buf.WriteByte('\n')
		}
		switch x := p.(type) {
		case string:
			buf.WriteString(x)
		case []byte:
			buf.Write(x)
		default:
			b, err := json.Marshal(x)
			if err != nil {
				return nil, fmt.Errorf("difftest: encode body part %d: %w", i, err)
			}
			buf.Write(b)
		}
	}
	return buf.Bytes(), nil
}

// replyValue turns an HTTP reply into the generic form that is compared:
// {"status":N,"body":JSON} for one JSON value, {"status":N,"lines":[...]} for
// several (a streamed unary reply), {"status":N,"text":"..."} otherwise.
func replyValue(r Reply) map[string]any {
	v := map[string]any{"status": json.Number(strconv.Itoa(r.Status))}
	vals, err := parseJSONSeq(r.Body)
	switch {
	case err != nil || len(vals) == 0:
		v["text"] = string(r.Body)
	case len(vals) == 1:
		v["body"] = vals[0]
	default:
		v["lines"] = vals
	}
	return v
}
