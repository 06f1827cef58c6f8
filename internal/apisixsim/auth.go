package apisixsim

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"sync"
	"time"
)

// Authentication as lua-resty-etcd does it with etcd.user and
// etcd.password (§1.5): one token per client object, fetched from
// /v3/auth/authenticate on the next endpoint without a token, then sent raw
// in Authorization on every call (watches included), and refreshed after
// 180 s plus up to 60 s, never because of a 401.

// authPath is etcd's authenticate call.
const authPath = "/v3/auth/authenticate"

// tokenCache is a client's token and when to refresh it.
type tokenCache struct {
	mu      sync.Mutex
	token   string
	refresh time.Time
	rnd     *rand.Rand
}

// tokenFor returns the token to send, authenticating when there is none or
// it is due for refresh; "" without a user.
func (c *Client) tokenFor(ctx context.Context) (string, error) {
	if c.user == "" {
		return "", nil
	}
	c.tok.mu.Lock()
	defer c.tok.mu.Unlock()
	if c.tok.token != "" && time.Now().Before(c.tok.refresh) {
		return c.tok.token, nil
	}
	idx, err := c.pick()
	if err != nil {
		return "", err
	}
	body, _ := json.Marshal(map[string]string{"name": c.user, "password": c.password})
	r, err := c.once(ctx, c.endpoints[idx], http.MethodPost, authPath, body)
	if err != nil {
		return "", err
	}
	if err := r.Err(); err != nil {
		return "", err
	}
	var resp struct {
		Token string `json:"token"`
	}
	if err := r.Decode(&resp); err != nil || resp.Token == "" {
		return "", fmt.Errorf("apisixsim: authenticate on %s: no token in %q", r.Endpoint, truncate(r.Raw))
	}
	if c.tok.rnd == nil {
		c.tok.rnd = rand.New(rand.NewSource(int64(len(c.user))))
	}
	c.tok.token = resp.Token
	c.tok.refresh = time.Now().Add(180*time.Second + time.Duration(c.tok.rnd.Int63n(int64(60*time.Second))))
	return c.tok.token, nil
}

// authorize sets the Authorization header of a request to path.
func (c *Client) authorize(ctx context.Context, req *http.Request, path string) error {
	if path == authPath {
		return nil
	}
	tok, err := c.tokenFor(ctx)
	if tok != "" {
		req.Header.Set("Authorization", tok)
	}
	return err
}
