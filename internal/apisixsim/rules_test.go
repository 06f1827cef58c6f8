package apisixsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWatchRules drives the data plane with a scripted gateway to check
// that it applies APISIX 3.18's rules (§3.5): events in a created message
// are dropped, canceled+compact_revision reloads and reopens from
// compact_revision, a lower header.revision reloads ("restarted"), a
// message without header.revision reopens, a kv without value deletes
// whatever the type, and silence reopens from the remembered revision.
func TestWatchRules(t *testing.T) {
	kv := func(k, v string, c, m int) string {
		s := fmt.Sprintf(`{"key":%q,"create_revision":"%d","mod_revision":"%d","version":"1"`, B64(k), c, m)
		if v != "" {
			s += fmt.Sprintf(`,"value":%q`, B64(v))
		}
		return s + "}"
	}
	route := func(id string) string { return fmt.Sprintf(`{"uri":"/%s"}`, id) }
	var mu sync.Mutex
	var starts []int64
	ranges := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v3/kv/range":
			mu.Lock()
			if strings.Contains(string(body), `"key":"`+B64(Prefix)+`"`) {
				ranges++ // a full load; resources without placeholder read their own dir
			}
			rev := 10 + 3*(ranges-1)
			mu.Unlock()
			if !strings.Contains(string(body), `"key":"`+B64(Prefix)+`"`) {
				fmt.Fprintf(w, `{"header":{"revision":"%d"}}`, rev)
				return
			}
			fmt.Fprintf(w, `{"header":{"revision":"%d"},"kvs":[%s,%s],"count":"2"}`,
				rev, kv(Prefix+"/routes/", "init_dir", 2, 2), kv(Prefix+"/routes/1", route("1"), 5, 5))
		case "/v3/watch":
			var req struct {
				Create struct {
					Start int64 `json:"start_revision"`
				} `json:"create_request"`
			}
			if err := json.Unmarshal(body, &req); err != nil {
				t.Errorf("watch body %q: %v", body, err)
			}
			mu.Lock()
			starts = append(starts, req.Create.Start)
			n := len(starts)
			mu.Unlock()
			send := func(s string) {
				fmt.Fprintf(w, `{"result":%s}`+"\n", s)
				w.(http.Flusher).Flush()
			}
			send(`{"header":{"revision":"10"},"created":true}`)
			switch n {
			case 1:
				send(fmt.Sprintf(`{"header":{"revision":"11"},"events":[{"kv":%s}]}`, kv(Prefix+"/routes/2", route("2"), 11, 11)))
				send(fmt.Sprintf(`{"header":{"revision":"12"},"created":true,"events":[{"kv":%s}]}`, kv(Prefix+"/routes/3", route("3"), 12, 12)))
				send(`{"header":{},"canceled":true,"compact_revision":"12"}`)
			case 2:
				send(fmt.Sprintf(`{"header":{"revision":"9"},"events":[{"kv":%s}]}`, kv(Prefix+"/routes/4", route("4"), 9, 9)))
				send(`{"header":{}}`)
			case 3:
				send(fmt.Sprintf(`{"header":{"revision":"17"},"events":[{"kv":%s}]}`, kv(Prefix+"/routes/1", "", 0, 17)))
			}
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	c := newTestClient(t, 1, 3, srv.URL)
	dp := startDP(t, c, 300*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(starts)
		mu.Unlock()
		if n >= 4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	dp.Close()
	srv.CloseClientConnections()

	mu.Lock()
	got := fmt.Sprint(starts)
	mu.Unlock()
	// 11 = full load + 1; 12 = compact_revision; 9 = the lower "restarted"
	// revision; 18 = 17 + 1 after the silence.
	if !strings.HasPrefix(got, "[11 12 9 18") {
		t.Errorf("watch start revisions %s, want [11 12 9 18 …]", got)
	}
	if n := dp.Reloads(); n != 2 {
		t.Errorf("reloads %d, want 2 (compacted, restarted)", n)
	}
	if routes := dp.Tables()["/routes"]; len(routes) != 0 {
		t.Errorf("routes %v, want none: 2 and 4 dropped by reloads, 3 sent with created, 1 deleted by a value-less kv", routes)
	}
	anomalies := strings.Join(dp.Anomalies(), "\n")
	for _, want := range []string{"created message carries 1 events", "below watch revision", "without header.revision", "PUT event on \"/apisix/routes/1\" without value"} {
		if !strings.Contains(anomalies, want) {
			t.Errorf("anomalies lack %q:\n%s", want, anomalies)
		}
	}
	checkNoSimGoroutines(t)
}
