package difftest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// overLimitValue is larger than etcd's default --max-request-bytes (1.5 MiB)
// but well below gRPC's receive limit (request limit + 512 KiB), so the
// request reaches etcd's own size check.
var overLimitValue = strings.Repeat("x", 1536*1024+64*1024)

// decoderTexts are the error texts produced by the gateway's JSON decoder,
// which are not part of the etcd contract: only logged when they differ.
var decoderTexts = []string{"body.error", "body.message"}

// want4xx expects an HTTP client error with a gateway error body.
func want4xx(c *Conn, o *Obs) {
	c.t.Helper()
	st := o.Int("status")
	c.Check(st >= 400 && st < 500, "%s: want a 4xx status, got %d", o.Label, st)
	_, hasError := Lookup(o.Value, "body.error")
	c.Check(hasError, "%s: want a JSON body with an error field, got %s", o.Label, Compact(o.Value))
}

// errorCases cover request validation over both transports.
func errorCases() []Case {
	const emptyKey = "etcdserver: key is not provided"
	return []Case{
		{Name: "err_empty_key_grpc", Run: func(c *Conn) {
			kv := c.KVStub()
			p, err := kv.Put(c.Ctx, &pb.PutRequest{Value: []byte("v")})
			c.WantGRPCError(c.GRPC("put", p, err), "InvalidArgument", emptyKey)
			r, err := kv.Range(c.Ctx, &pb.RangeRequest{})
			c.WantGRPCError(c.GRPC("range", r, err), "InvalidArgument", emptyKey)
			d, err := kv.DeleteRange(c.Ctx, &pb.DeleteRangeRequest{RangeEnd: []byte("z")})
			c.WantGRPCError(c.GRPC("delete with range_end only", d, err), "InvalidArgument", emptyKey)
			t := c.Txn("txn put", nil, []clientv3.Op{clientv3.OpPut("", "v")}, nil)
			c.WantGRPCError(t, "InvalidArgument", emptyKey)
		}},
		{Name: "err_empty_key_http", Run: func(c *Conn) {
			c.WantHTTPError(c.Post("put", "/v3/kv/put", M{"key": "", "value": B64("v")}), 400, 3, emptyKey)
			c.WantHTTPError(c.Post("range without key", "/v3/kv/range", M{}), 400, 3, emptyKey)
			c.WantHTTPError(c.Post("range, empty body", "/v3/kv/range", ""), 400, 3, emptyKey)
			c.WantHTTPError(c.Post("delete", "/v3/kv/deleterange", M{"key": ""}), 400, 3, emptyKey)
			t := c.Post("txn put", "/v3/kv/txn", M{"success": []M{{"request_put": M{"value": B64("v")}}}})
			c.WantHTTPError(t, 400, 3, emptyKey)
		}},
		{Name: "err_request_too_large_grpc", Run: func(c *Conn) {
			o := c.Put("put 1.6 MiB", c.Key("big"), overLimitValue)
			c.WantGRPCError(o, "InvalidArgument", "etcdserver: request is too large")
			g := c.Get("not written", c.Key("big"))
			c.Want(g, "body.kvs", Absent)
			ok := c.Put("put 1 MiB", c.Key("ok"), overLimitValue[:1<<20])
			c.WantOK(ok)
		}},
		{Name: "err_request_too_large_http", Run: func(c *Conn) {
			o := c.Post("put 1.6 MiB", "/v3/kv/put", M{"key": c.BKey("big"), "value": B64(overLimitValue)})
			c.WantHTTPError(o, 400, 3, "etcdserver: request is too large")
			ok := c.Post("put 1 MiB", "/v3/kv/put", M{"key": c.BKey("ok"), "value": B64(overLimitValue[:1<<20])})
			c.WantOK(ok)
			g := c.Post("read 1 MiB back", "/v3/kv/range", M{"key": c.BKey("ok"), "keys_only": true})
			c.Want(g, "body.count", "1")
		}},
		{Name: "err_invalid_json_http", Run: func(c *Conn) {
			for i, body := range []string{
				`{"key":"` + c.BKey("a") + `","value":`,
				`{"key":"` + c.BKey("a") + `","value":"MQ=="`,
				`not json`,
				`{"key":5}`,
				`{"key":"` + c.BKey("a") + `","lease":"abc"}`,
			} {
				o := c.Post(fmt.Sprintf("put body %d %q", i, body), "/v3/kv/put", body).Lenient(decoderTexts...)
				want4xx(c, o)
				c.Want(o, "body.code", 3)
			}
			r := c.Post("range with limit \"abc\"", "/v3/kv/range", `{"key":"`+c.BKey("a")+`","limit":"abc"}`).Lenient(decoderTexts...)
			want4xx(c, r)
			g := c.Post("nothing written", "/v3/kv/range", M{"key": c.BKey("a")})
			c.Want(g, "body.kvs", Absent)
		}},
		{Name: "err_invalid_base64_http", Run: func(c *Conn) {
			for i, body := range []M{
				{"key": "YQ=!", "value": B64("1")},
				{"key": c.BKey("a"), "value": "###"},
				{"key": "YQ="},
			} {
				o := c.Post(fmt.Sprintf("put %d", i), "/v3/kv/put", body).Lenient(decoderTexts...)
				want4xx(c, o)
				c.Want(o, "body.code", 3)
			}
			r := c.Post("range with bad range_end", "/v3/kv/range", M{"key": c.BKey("a"), "range_end": "%%%"}).Lenient(decoderTexts...)
			want4xx(c, r)
		}},
		{Name: "auth_authenticate_grpc", Run: func(c *Conn) {
			resp, err := c.Client.Authenticate(c.Ctx, "root", "secret")
			o := c.GRPC("authenticate", (*pb.AuthenticateResponse)(resp), err)
			c.WantGRPCError(o, "FailedPrecondition", "etcdserver: authentication is not enabled")
		}},
		{Name: "auth_authenticate_http", Run: func(c *Conn) {
			// lua-resty-etcd's exact body; APISIX then expects "token".
			o := c.Post("authenticate", "/v3/auth/authenticate", `{"name":"root","password":"secret"}`)
			c.WantHTTPError(o, 412, 9, "etcdserver: authentication is not enabled")
			e := c.Post("empty user name", "/v3/auth/authenticate", M{"name": "", "password": "x"})
			c.WantHTTPError(e, 412, 9, "etcdserver: authentication is not enabled")
		}},
	}
}

var semverRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$`)

// semverAtLeast reports whether v parses as MAJOR.MINOR.PATCH[-suffix] and
// is at least major.minor.patch.
func semverAtLeast(v string, want [3]int) bool {
	m := semverRE.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	for i := 0; i < 3; i++ {
		n, _ := strconv.Atoi(m[i+1])
		if n != want[i] {
			return n > want[i]
		}
	}
	return true
}

// gatewayCases cover gateway details outside the KV semantics.
func gatewayCases() []Case {
	return []Case{
		{Name: "gateway_version_http", Run: func(c *Conn) {
			r, err := c.HTTP.Get(c.Ctx, "/version")
			if err != nil {
				c.Fatalf("GET /version: %v", err)
			}
			// Only what APISIX checks is compared: etcdcluster >= 3.4.0.
			body, _ := ParseJSON(r.Body)
			cluster, _ := Lookup(body, "etcdcluster")
			s, _ := cluster.(string)
			o := c.Record("version", M{"status": r.Status, "etcdcluster_at_least_3.4.0": semverAtLeast(s, [3]int{3, 4, 0})})
			c.Want(o, "", M{"status": 200, "etcdcluster_at_least_3.4.0": true})
		}},
		{Name: "gateway_health_http", Run: func(c *Conn) {
			r, err := c.HTTP.Get(c.Ctx, "/health")
			if err != nil {
				c.Fatalf("GET /health: %v", err)
			}
			body, _ := ParseJSON(r.Body)
			h, _ := Lookup(body, "health")
			o := c.Record("health", M{"status": r.Status, "health": h})
			c.Want(o, "", M{"status": 200, "health": "true"})
		}},
		{Name: "gateway_paths_http", Run: func(c *Conn) {
			p := c.Post("v3beta put", "/v3beta/kv/put", M{"key": c.BKey("a"), "value": B64("1")})
			c.WantOK(p)
			r := c.Post("v3beta range", "/v3beta/kv/range", M{"key": c.BKey("a")})
			c.Want(r, "body.kvs[0].value", B64("1"))
			n := c.Post("unknown path", "/v3/kv/nosuch", M{}).Lenient("text", "body")
			c.Want(n, "status", 404)
			g := c.GetHTTP("GET on a POST path", "/v3/kv/range").Lenient("text", "body")
			st := g.Int("status")
			c.Check(st >= 400 && st < 500, "GET /v3/kv/range: want 4xx, got %d", st)
		}},
		// etcd 3.4's gateway decodes a body of null as an empty request,
		// which its server then validates.
		{Name: "gateway_null_body_http", Run: func(c *Conn) {
			for _, path := range []string{"/v3/kv/range", "/v3/kv/put", "/v3/kv/deleterange"} {
				c.WantHTTPError(c.Post("null to "+path, path, "null"), 400, 3, "etcdserver: key is not provided")
			}
			t := c.Post("null to /v3/kv/txn", "/v3/kv/txn", "null")
			c.WantOK(t)
			c.Want(t, "body.succeeded", true)
			c.Want(t, "body.responses", Absent)
		}},
		// A RequestOp with two operations set: etcd 3.4's decoder keeps one
		// of them, a different one from one request to the next, so only
		// what does not depend on the choice is compared: both operations
		// here leave the store as it is.
		{Name: "gateway_oneof_twice_http", Run: func(c *Conn) {
			r := rev(c.Put("a", c.Key("a"), "1"))
			body := `{"success":[{"request_range":{"key":"` + c.BKey("a") + `"},"request_delete_range":{"key":"` + c.BKey("none") + `"}}]}`
			reply, err := c.HTTP.Post(c.Ctx, "/v3/kv/txn", []byte(body))
			if err != nil {
				c.Fatalf("txn: %v", err)
			}
			v := replyValue(reply)
			resps, _ := Lookup(v, "body.responses")
			list, _ := resps.([]any)
			kind := ""
			if len(list) == 1 {
				if m, ok := list[0].(map[string]any); ok && len(m) == 1 {
					for k := range m {
						kind = k
					}
				}
			}
			st, _ := Lookup(v, "status")
			hr, _ := Lookup(v, "body.header.revision")
			o := c.Record("txn with range and delete_range in one op", M{
				"status": st, "revision": hr, "responses": len(list),
				"one_of_them": kind == "response_range" || kind == "response_delete_range",
			})
			c.Want(o, "", M{"status": 200, "revision": itoa(r), "responses": 1, "one_of_them": true})
			g := c.Get("a unchanged", c.Key("a"))
			c.Want(g, "body.kvs[0].mod_revision", itoa(r))
		}},
		{Name: "gateway_json_forms_http", Run: func(c *Conn) {
			seed(c, "a", "1", "b", "2", "c", "3")
			camel := c.Post("camelCase range", "/v3/kv/range", M{
				"key": c.BKey(""), "rangeEnd": c.BEnd(""), "sortOrder": "DESCEND", "sortTarget": "KEY",
				"keysOnly": true, "limit": "2", "minModRevision": "1", "maxCreateRevision": 0,
			})
			wantKeys(c, camel, "body.kvs", "c", "b")
			c.Want(camel, "body.kvs[0].value", Absent)
			c.Want(camel, "body.more", true)
			count := c.Post("countOnly", "/v3/kv/range", M{"key": c.BKey(""), "rangeEnd": c.BEnd(""), "countOnly": true})
			c.Want(count, "body.count", "3")
			put := c.Post("camelCase put", "/v3/kv/put", M{"key": c.BKey("a"), "value": B64("9"), "prevKv": true})
			c.Want(put, "body.prev_kv.value", B64("1"))
			del := c.Post("camelCase delete", "/v3/kv/deleterange", M{"key": c.BKey("b"), "rangeEnd": c.BKey("c"), "prevKv": true})
			c.Want(del, "body.prev_kvs[0].key", c.BKey("b"))
			unknown := c.Post("unknown field", "/v3/kv/range", M{"key": c.BKey("a"), "no_such_field": 1})
			c.Want(unknown, "body.count", "1")
		}},
	}
}

// apisixCases replay the request shapes APISIX 3.x sends (APISIX.md §1.3,
// §3.3, §4), byte for byte where the shape matters.
func apisixCases() []Case {
	return []Case{
		{Name: "apisix_init_dir_and_readdir_http", Run: func(c *Conn) {
			for _, dir := range []string{"routes/", "upstreams/", "plugins/"} {
				o := c.Post("init_dir "+dir, "/v3/kv/put", fmt.Sprintf(`{"value":"aW5pdF9kaXI=","key":%q}`, c.BKey(dir)))
				c.WantOK(o)
			}
			seed(c, "plugins", `["limit-count"]`, "routes/1", `{"uri":"/1"}`, "routes/2", `{"uri":"/2"}`)
			// The case prefix without its slash plays /apisix: readdir ranges
			// [/apisix, /apisiy).
			apisixPrefix := strings.TrimSuffix(c.Prefix(), "/")
			body := fmt.Sprintf(`{"key":%q,"range_end":%q,"limit":0,"revision":0,"sort_order":0,"sort_target":0,`+
				`"serializable":false,"keys_only":false,"count_only":false,"min_mod_revision":0,"max_mod_revision":0,`+
				`"min_create_revision":0,"max_create_revision":0}`, B64(apisixPrefix), B64(clientv3.GetPrefixRangeEnd(apisixPrefix)))
			o := c.Post("readdir", "/v3/kv/range", body)
			wantKeys(c, o, "body.kvs", "plugins", "plugins/", "routes/", "routes/1", "routes/2", "upstreams/")
			c.Want(o, "body.count", "6")
			c.Want(o, "body.kvs[2].value", "aW5pdF9kaXI=")
		}},
		{Name: "apisix_get_http", Run: func(c *Conn) {
			seed(c, "routes/1", "{}", "routes/10", "{}", "routes/1abc", "{}", "routes/2", "{}")
			o := c.Post("get routes/1", "/v3/kv/range", M{"key": c.BKey("routes/1"), "range_end": c.BKey("routes/2")})
			wantKeys(c, o, "body.kvs", "routes/1", "routes/10", "routes/1abc")
			miss := c.Post("get routes/3", "/v3/kv/range", M{"key": c.BKey("routes/3"), "range_end": c.BKey("routes/4")})
			c.Want(miss, "body", M{"header": miss.Get("body.header")})
		}},
		{Name: "apisix_put_with_ttl_http", Run: func(c *Conn) {
			first := c.Post("PUT (201)", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q,"prev_kv":true}`, c.BKey("routes/1"), B64(`{"uri":"/a"}`)))
			c.Want(first, "body.prev_kv", Absent)
			second := c.Post("PUT again (200)", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q,"prev_kv":true}`, c.BKey("routes/1"), B64(`{"uri":"/b"}`)))
			c.Want(second, "body.prev_kv.value", B64(`{"uri":"/a"}`))
			id := c.LeaseID(1)
			g := c.Post("grant", "/v3/lease/grant", fmt.Sprintf(`{"TTL":60,"ID":%d}`, id))
			c.Want(g, "body.ID", itoa(id))
			withLease := c.Post("PUT ?ttl=60", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q,"prev_kv":true,"lease":%q}`,
				c.BKey("routes/2"), B64(`{"uri":"/c"}`), g.Str("body.ID")))
			c.WantOK(withLease)
			r := c.Post("read", "/v3/kv/range", M{"key": c.BKey("routes/2")})
			c.Want(r, "body.kvs[0].lease", itoa(id))
			c.WantOK(c.Post("revoke", "/v3/kv/lease/revoke", M{"ID": itoa(id)}))
		}},
		{Name: "apisix_patch_txn_http", Run: func(c *Conn) {
			seed(c, "routes/1", `{"uri":"/a"}`)
			get := c.Post("get", "/v3/kv/range", M{"key": c.BKey("routes/1"), "range_end": c.BKey("routes/2")})
			mod := get.Int("body.kvs[0].mod_revision")
			patch := func(label string, modRev int64, value string) *Obs {
				return c.Post(label, "/v3/kv/txn", fmt.Sprintf(
					`{"compare":[{"key":%q,"target":"MOD","result":"EQUAL","mod_revision":%d}],"success":[{"requestPut":{"key":%q,"value":%q}}]}`,
					c.BKey("routes/1"), modRev, c.BKey("routes/1"), B64(value)))
			}
			ok := patch("PATCH", mod, `{"uri":"/b"}`)
			c.Want(ok, "body.succeeded", true)
			c.Want(ok, "body.responses[0].response_put.header.revision", itoa(rev(ok)))
			stale := patch("PATCH with stale mod_revision", mod, `{"uri":"/c"}`)
			c.Want(stale, "body", M{"header": stale.Get("body.header")})
			setnx := c.Post("setnx (createRevision 0)", "/v3/kv/txn", fmt.Sprintf(
				`{"compare":[{"key":%q,"target":"CREATE","result":"EQUAL","createRevision":0}],"success":[{"requestPut":{"key":%q,"value":%q}}]}`,
				c.BKey("routes/9"), c.BKey("routes/9"), B64("{}")))
			c.Want(setnx, "body.succeeded", true)
		}},
		{Name: "apisix_delete_http", Run: func(c *Conn) {
			seed(c, "consumers/jack", "{}", "consumers/jack/credentials/1", "{}", "consumers/jack/credentials/2", "{}")
			creds := c.Post("rmdir credentials", "/v3/kv/deleterange",
				fmt.Sprintf(`{"key":%q,"range_end":%q}`, c.BKey("consumers/jack/credentials/"), c.BKey("consumers/jack/credentials0")))
			c.Want(creds, "body.deleted", "2")
			hit := c.Post("DELETE", "/v3/kv/deleterange", fmt.Sprintf(`{"key":%q}`, c.BKey("consumers/jack")))
			c.Want(hit, "body.deleted", "1")
			miss := c.Post("DELETE again (404)", "/v3/kv/deleterange", fmt.Sprintf(`{"key":%q}`, c.BKey("consumers/jack")))
			c.Want(miss, "body", M{"header": miss.Get("body.header")})
		}},
		{Name: "apisix_post_gen_id_http", Run: func(c *Conn) {
			first := c.Post("put gen_id", "/v3/kv/put", M{"key": c.BKey("gen_id"), "value": B64("1"), "prev_kv": true})
			id := fmt.Sprintf("%020d", rev(first))
			c.Check(len(id) == 20 && rev(first) > 0, "gen_id revision %d yields id %q", rev(first), id)
			c.WantOK(c.Post("put routes/<id>", "/v3/kv/put", M{"key": c.BKey("routes/" + id), "value": B64("{}"), "prev_kv": true}))
			second := c.Post("put gen_id again", "/v3/kv/put", M{"key": c.BKey("gen_id"), "value": B64("1"), "prev_kv": true})
			c.Want(second, "body.prev_kv.mod_revision", itoa(rev(first)))
			c.Check(rev(second) == rev(first)+2, "revisions are consecutive: %d then %d", rev(first), rev(second))
		}},
		{Name: "apisix_server_info_lease_http", Run: func(c *Conn) {
			id := c.LeaseID(1)
			g := c.Post("grant", "/v3/lease/grant", fmt.Sprintf(`{"TTL":60,"ID":%d}`, id))
			c.Want(g, "body.TTL", "60")
			p := c.Post("report", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q,"lease":%q}`, c.BKey("data_plane/server_info/x"), B64("{}"), itoa(id)))
			c.WantOK(p)
			k := c.Post("keepalive", "/v3/lease/keepalive", fmt.Sprintf(`{"ID":%q}`, itoa(id)))
			c.Want(k, "body.result.TTL", "60")
			c.WantOK(c.Post("revoke", "/v3/lease/revoke", M{"ID": itoa(id)}))
			gone := c.Post("key gone", "/v3/kv/range", M{"key": c.BKey("data_plane/server_info/x")})
			c.Want(gone, "body.kvs", Absent)
		}},
	}
}
