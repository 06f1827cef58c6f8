package apisixsim

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// authRefusals are etcd's texts for a call refused because of who makes
// it (§1.4, §1.5). APISIX never authenticates again after one of them.
var authRefusals = [][]byte{
	[]byte("etcdserver: user name is empty"),
	[]byte("etcdserver: invalid auth token"),
	[]byte("etcdserver: permission denied"),
	[]byte("etcdserver: revision of auth store is old"),
	[]byte("etcdserver: authentication failed, invalid user ID or password"),
	[]byte("authentication failed, invalid user ID or password"),
}

// maxRefusals bounds the refusals a client keeps.
const maxRefusals = 100

// ReplyStats is what a client was answered, as an APISIX log would show
// it.
type ReplyStats struct {
	// Statuses counts the HTTP statuses of every reply (watch opens
	// included).
	Statuses map[int]int
	// Served counts, per endpoint, the 2xx replies to calls other than
	// authenticate: the calls a token was accepted on.
	Served map[string]int
	// Issuers counts, per endpoint, the tokens it issued to the client.
	Issuers map[string]int
	// Refusals are the replies that refused the caller: a 401, or a 4xx
	// naming an authentication or permission error.
	Refusals []string
}

// replies collects a client's ReplyStats. It is safe for concurrent use.
type replies struct {
	mu sync.Mutex
	st ReplyStats
}

func (r *replies) observe(endpoint, path string, status int, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st.Statuses == nil {
		r.st.Statuses, r.st.Served, r.st.Issuers = map[int]int{}, map[string]int{}, map[string]int{}
	}
	r.st.Statuses[status]++
	switch {
	case status/100 == 2 && path == authPath:
		r.st.Issuers[endpoint]++
	case status/100 == 2:
		r.st.Served[endpoint]++
	case status == 401 || status/100 == 4 && slices.ContainsFunc(authRefusals, func(e []byte) bool { return bytes.Contains(body, e) }):
		if len(r.st.Refusals) < maxRefusals {
			r.st.Refusals = append(r.st.Refusals, fmt.Sprintf("%s%s: HTTP %d: %s", endpoint, path, status, truncate(body)))
		}
	}
}

// Replies returns what the client was answered so far.
func (c *Client) Replies() ReplyStats {
	c.seen.mu.Lock()
	defer c.seen.mu.Unlock()
	return ReplyStats{
		Statuses: maps.Clone(c.seen.st.Statuses), Served: maps.Clone(c.seen.st.Served),
		Issuers: maps.Clone(c.seen.st.Issuers), Refusals: slices.Clone(c.seen.st.Refusals),
	}
}
