package apisixsim

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Admin performs the etcd operations of APISIX's Admin API (§4). Resource
// paths are relative to the prefix: "routes", "consumers/jack/credentials".
// Reference checks (the ranges that validate upstream_id and friends) are
// skipped.
type Admin struct {
	c *Client
	// Now gives create_time and update_time; time.Now when nil.
	Now func() time.Time
}

// NewAdmin returns an Admin over c (APISIX's Admin client uses max_fails 1).
func NewAdmin(c *Client) *Admin { return &Admin{c: c} }

// AdminResult is the Admin API's answer.
type AdminResult struct {
	// Status is the HTTP status the Admin API would return.
	Status int
	// Key is the etcd key, Value the stored object.
	Key   string
	Value any
	// CreatedIndex and ModifiedIndex are set on GET (and on list items).
	CreatedIndex  int64
	ModifiedIndex int64
	// List and Total are set on list.
	List  []AdminResult
	Total int
	// Message is the error message ("Key not found", an etcd error).
	Message string
	// Detail says more than the Admin API would, for a test's report: on
	// a failed compare-and-swap, the revision compared, who answered and
	// the attempts retried before.
	Detail string
}

func (a *Admin) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func key(res, id string) string { return Prefix + "/" + res + "/" + id }

// etcdFailure is how the Admin API reports an etcd error: 503 and the message.
func etcdFailure(err error) (AdminResult, error) {
	return AdminResult{Status: 503, Message: err.Error()}, err
}

// getExact is core.etcd.get(key): range [key, key+1) and kvs[1].key == key.
func (a *Admin) getExact(ctx context.Context, k string) (*KV, error) {
	kv, _, err := a.getExactFrom(ctx, k)
	return kv, err
}

// getExactFrom is getExact that also says who answered, at which revision.
func (a *Admin) getExactFrom(ctx context.Context, k string) (*KV, string, error) {
	rr, r, err := a.c.Range(ctx, k, rangeEnd(k))
	if err != nil {
		return nil, "", err
	}
	from := fmt.Sprintf("%s at revision %d", r.Endpoint, rr.Header.Rev())
	if len(rr.Kvs) == 0 {
		return nil, from, nil
	}
	got, err := rr.Kvs[0].decodeKey()
	if err != nil {
		return nil, from, err
	}
	if got != k {
		return nil, from, nil
	}
	return &rr.Kvs[0], from, nil
}

// call posts one etcd request and decodes its reply into out; a transport
// failure or an etcd error body comes back as the error.
func (a *Admin) call(ctx context.Context, path string, body, out any) (*Reply, error) {
	r, err := a.c.Post(ctx, path, body)
	if err != nil {
		return nil, err
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if err := r.Decode(out); err != nil {
		return nil, err
	}
	return r, nil
}

// requireRev fails a reply without header.revision, as APISIX 3.17+ does.
func requireRev(h *Header, what string, r *Reply) error {
	if h.Rev() == 0 {
		return fmt.Errorf("apisixsim: %s reply without header.revision: %s", what, truncate(r.Raw))
	}
	return nil
}

// grant is lease grant {"TTL":n,"ID":0}; it returns the ID as APISIX passes
// it on: the JSON string as is, or, if the server sent a number, that number
// as cjson would re-encode a double (14 significant digits).
func (a *Admin) grant(ctx context.Context, ttl int) (any, error) {
	var g struct {
		ID json.RawMessage `json:"ID"`
	}
	r, err := a.call(ctx, "/v3/lease/grant", map[string]any{"TTL": ttl, "ID": 0}, &g)
	if err != nil {
		return nil, err
	}
	var s string
	if json.Unmarshal(g.ID, &s) == nil {
		return s, nil
	}
	var f float64
	if err := json.Unmarshal(g.ID, &f); err != nil {
		return nil, fmt.Errorf("apisixsim: grant reply without ID: %s", truncate(r.Raw))
	}
	return json.Number(strconv.FormatFloat(f, 'g', 14, 64)), nil
}

func encodeValue(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return B64(string(b)), nil
}

// Put is PUT /<res>/<id>[?ttl=]: range the key (to keep create_time), then
// put with prev_kv:true (after a lease grant when ttl > 0). 201 when the
// reply has no prev_kv, 200 when it has one.
func (a *Admin) Put(ctx context.Context, res, id string, value map[string]any, ttl int) (AdminResult, error) {
	k := key(res, id)
	old, err := a.getExact(ctx, k)
	if err != nil {
		return etcdFailure(err)
	}
	v := clone(value)
	now := a.now().Unix()
	v["create_time"], v["update_time"] = now, now
	if old != nil {
		if b, ok, _ := old.decodeValue(); ok {
			if m, ok := deserialize(b).(map[string]any); ok && m["create_time"] != nil {
				v["create_time"] = m["create_time"]
			}
		}
	}
	return a.set(ctx, k, v, ttl)
}

func (a *Admin) set(ctx context.Context, k string, v map[string]any, ttl int) (AdminResult, error) {
	ev, err := encodeValue(v)
	if err != nil {
		return AdminResult{Status: 400, Message: err.Error()}, err
	}
	body := map[string]any{"key": B64(k), "value": ev, "prev_kv": true}
	if ttl > 0 {
		id, err := a.grant(ctx, ttl)
		if err != nil {
			return etcdFailure(err)
		}
		body["lease"] = id
	}
	var pr PutResponse
	r, err := a.call(ctx, "/v3/kv/put", body, &pr)
	if err == nil {
		err = requireRev(pr.Header, "put", r)
	}
	if err != nil {
		return etcdFailure(err)
	}
	status := 201
	if pr.PrevKV != nil {
		status = 200
	}
	return AdminResult{Status: status, Key: k, Value: v}, nil
}

// Post is POST /<res>[?ttl=]: put /apisix/gen_id "1" with prev_kv, id =
// %020d of its header.revision, then PUT.
func (a *Admin) Post(ctx context.Context, res string, value map[string]any, ttl int) (AdminResult, error) {
	var pr PutResponse
	r, err := a.call(ctx, "/v3/kv/put", map[string]any{"key": B64(Prefix + "/gen_id"), "value": B64("1"), "prev_kv": true}, &pr)
	if err == nil {
		err = requireRev(pr.Header, "gen_id put", r)
	}
	if err != nil {
		return etcdFailure(err)
	}
	id := fmt.Sprintf("%020d", pr.Header.Rev())
	out, err := a.Put(ctx, res, id, value, ttl)
	if err == nil {
		out.Status = 201
	}
	return out, err
}

// Get is GET /<res>/<id>: 200 with the item, or 404 "Key not found".
func (a *Admin) Get(ctx context.Context, res, id string) (AdminResult, error) {
	k := key(res, id)
	kv, err := a.getExact(ctx, k)
	if err != nil {
		return etcdFailure(err)
	}
	if kv == nil {
		return AdminResult{Status: 404, Message: "Key not found"}, nil
	}
	return itemResult(k, kv, 200)
}

func itemResult(k string, kv *KV, status int) (AdminResult, error) {
	b, _, err := kv.decodeValue()
	if err != nil {
		return etcdFailure(err)
	}
	return AdminResult{Status: status, Key: k, Value: deserialize(b),
		CreatedIndex: int64(kv.CreateRevision), ModifiedIndex: int64(kv.ModRevision)}, nil
}

// List is GET /<res>: range the resource prefix, drop the placeholder (a
// first kv without a JSON value), sort by createdIndex, return list and
// total.
func (a *Admin) List(ctx context.Context, res string) (AdminResult, error) {
	k := Prefix + "/" + res
	rr, _, err := a.c.Range(ctx, k, rangeEnd(k))
	if err != nil {
		return etcdFailure(err)
	}
	out := AdminResult{Status: 200, List: []AdminResult{}}
	for i := range rr.Kvs {
		kk, err := rr.Kvs[i].decodeKey()
		if err != nil {
			return etcdFailure(err)
		}
		it, err := itemResult(kk, &rr.Kvs[i], 200)
		if err != nil {
			return it, err
		}
		if i == 0 && it.Value == nil {
			continue
		}
		out.List = append(out.List, it)
	}
	sort.SliceStable(out.List, func(i, j int) bool { return out.List[i].CreatedIndex < out.List[j].CreatedIndex })
	out.Total = len(out.List)
	return out, nil
}

// Patch is PATCH /<res>/<id>[?ttl=]: range the exact key (404 if absent),
// merge patch into its value, then a txn comparing MOD EQUAL modifiedIndex
// with a success-only requestPut. succeeded must be JSON true.
func (a *Admin) Patch(ctx context.Context, res, id string, patch map[string]any, ttl int) (AdminResult, error) {
	k := key(res, id)
	kv, readFrom, err := a.getExactFrom(ctx, k)
	if err != nil {
		return etcdFailure(err)
	}
	if kv == nil {
		return AdminResult{Status: 404, Message: "Key not found"}, nil
	}
	b, _, err := kv.decodeValue()
	if err != nil {
		return etcdFailure(err)
	}
	old, _ := deserialize(b).(map[string]any)
	v := clone(old)
	if v == nil {
		v = map[string]any{}
	}
	for pk, pv := range patch {
		if pv == nil {
			delete(v, pk)
		} else {
			v[pk] = pv
		}
	}
	v["update_time"] = a.now().Unix()
	ev, err := encodeValue(v)
	if err != nil {
		return AdminResult{Status: 400, Message: err.Error()}, err
	}
	put := map[string]any{"key": B64(k), "value": ev}
	if ttl > 0 {
		lid, err := a.grant(ctx, ttl)
		if err != nil {
			return etcdFailure(err)
		}
		put["lease"] = lid
	}
	var tr struct {
		Header    *Header         `json:"header"`
		Succeeded json.RawMessage `json:"succeeded"`
	}
	r, err := a.call(ctx, "/v3/kv/txn", map[string]any{
		"compare": []any{map[string]any{"key": B64(k), "target": "MOD", "result": "EQUAL", "mod_revision": int64(kv.ModRevision)}},
		"success": []any{map[string]any{"requestPut": put}},
	}, &tr)
	if err == nil {
		err = requireRev(tr.Header, "txn", r)
	}
	if err != nil {
		return etcdFailure(err)
	}
	if string(tr.Succeeded) != "true" {
		detail := fmt.Sprintf("compared mod_revision %d, read from %s; the txn answered by %s at revision %d",
			int64(kv.ModRevision), readFrom, r.Endpoint, tr.Header.Rev())
		if len(r.Retried) > 0 {
			detail += fmt.Sprintf(", after %d failed attempts: %s", len(r.Retried), strings.Join(r.Retried, "; "))
		}
		return AdminResult{Status: 503, Message: "value changed before overwritten", Detail: detail}, nil
	}
	return AdminResult{Status: 200, Key: k, Value: v}, nil
}

// Delete is DELETE /<res>/<id>: for a consumer, first a ranged deleterange
// of its credentials; then deleterange of the exact key. A reply without
// "deleted" is 404.
func (a *Admin) Delete(ctx context.Context, res, id string) (AdminResult, error) {
	k := key(res, id)
	if res == "consumers" {
		cred := k + "/credentials/"
		var ignored struct{}
		if _, err := a.call(ctx, "/v3/kv/deleterange", map[string]any{"key": B64(cred), "range_end": B64(rangeEnd(cred))}, &ignored); err != nil {
			return etcdFailure(err)
		}
	}
	var dr struct {
		Header  *Header         `json:"header"`
		Deleted json.RawMessage `json:"deleted"`
	}
	r, err := a.call(ctx, "/v3/kv/deleterange", map[string]any{"key": B64(k)}, &dr)
	if err == nil {
		err = requireRev(dr.Header, "deleterange", r)
	}
	if err != nil {
		return etcdFailure(err)
	}
	// Lua: any present value, even "0" or 0, is truthy.
	if len(dr.Deleted) == 0 || string(dr.Deleted) == "null" || string(dr.Deleted) == "false" {
		return AdminResult{Status: 404, Message: "Key not found"}, nil
	}
	return AdminResult{Status: 200, Key: k, Value: map[string]any{"deleted": strings.Trim(string(dr.Deleted), `"`)}}, nil
}

func clone(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
