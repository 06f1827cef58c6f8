package apisixsim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// DefaultWatchTimeout is etcd.watch_timeout: the longest silence on a watch
// stream before APISIX closes it and reopens from the remembered revision.
const DefaultWatchTimeout = 50 * time.Second

// Reopen pacing after a failed watch open or reload. APISIX reopens at once
// after a closed stream; after an error it waits resync_delay (5 s), which
// the simulator shortens so tests stay fast, and it never spins.
const (
	reopenPause    = 20 * time.Millisecond
	errorPause     = 200 * time.Millisecond
	unhealthyPause = time.Second
	maxAnomalies   = 1000
	maxRevisions   = 1 << 20
	// maxReloadAttempts bounds one reload's retries (about 100 s).
	maxReloadAttempts = 500
)

// Item is one configuration object as APISIX holds it.
type Item struct {
	// Key is the full etcd key.
	Key string
	// Value is the parsed JSON value (nil if it is not JSON).
	Value any
	// CreatedIndex and ModifiedIndex are create_revision and mod_revision.
	CreatedIndex  int64
	ModifiedIndex int64
}

// Tables maps a resource directory ("/routes") to its objects by id (the
// key after "/apisix/routes/"; the single item "/plugins" is stored under
// its full key).
type Tables map[string]map[string]Item

// resource is one core.config.new() object.
type resource struct {
	dir       string // "/routes"
	key       string // "/apisix/routes"
	single    bool
	values    map[string]Item
	prevIndex int64
}

func (r *resource) upgrade(v int64) {
	if v > r.prevIndex {
		r.prevIndex = v
	}
}

func (r *resource) shortKey(k string) string {
	if len(k) < len(r.key)+1 {
		return ""
	}
	return k[len(r.key)+1:]
}

// node is kvs_to_node(kv).
type node struct {
	key      string
	value    any
	created  int64
	modified int64
}

func toNode(kv KV) (node, error) {
	k, err := kv.decodeKey()
	if err != nil {
		return node{}, fmt.Errorf("bad base64 key %q: %w", kv.Key, err)
	}
	b, ok, err := kv.decodeValue()
	if err != nil {
		return node{}, fmt.Errorf("bad base64 value of %q: %w", k, err)
	}
	n := node{key: k, created: int64(kv.CreateRevision), modified: int64(kv.ModRevision)}
	if ok {
		n.value = deserialize(b)
	}
	return n, nil
}

// loaded is one entry of create_formatter's loaded_configuration: either a
// single item or a directory's nodes.
type loaded struct {
	single *node
	nodes  []node
}

// group is create_formatter (§3.2): it walks the sorted kvs; a placeholder
// "/apisix/<dir>/" opens a group that takes the following keys with that
// prefix; "/apisix/<dir>" itself is a single item.
func group(kvs []KV) (map[string]*loaded, error) {
	isDir := map[string]bool{}
	for _, d := range Directories {
		isDir[d] = true
	}
	out := map[string]*loaded{}
	var cur *loaded
	var curKey string
	for _, kv := range kvs {
		n, err := toNode(kv)
		if err != nil {
			return nil, err
		}
		if cur != nil {
			if strings.HasPrefix(n.key, curKey) {
				cur.nodes = append(cur.nodes, n)
				continue
			}
			cur = nil
		}
		if !strings.HasPrefix(n.key, Prefix) {
			continue
		}
		k := n.key[len(Prefix):]
		if isDir[k] {
			nn := n
			out[k] = &loaded{single: &nn}
			continue
		}
		if len(k) > 0 {
			d := k[:len(k)-1]
			if isDir[d] && out[d] == nil {
				cur = &loaded{nodes: []node{}}
				out[d] = cur
				curKey = n.key
			}
		}
	}
	return out, nil
}

func newResources() map[string]*resource {
	m := map[string]*resource{}
	for _, d := range Directories {
		m[d] = &resource{dir: d, key: Prefix + d, single: d == "/plugins", values: map[string]Item{}}
	}
	return m
}

// loadFull is load_full_data for one resource.
func (r *resource) loadFull(l *loaded, headerRev int64) {
	r.values = map[string]Item{}
	if r.single {
		if l.single != nil && l.single.value != nil {
			n := l.single
			r.values[r.key] = Item{Key: n.key, Value: n.value, CreatedIndex: n.created, ModifiedIndex: n.modified}
		}
		if l.single != nil {
			r.upgrade(l.single.modified)
		}
	} else {
		for _, n := range l.nodes {
			if _, ok := n.value.(map[string]any); ok {
				r.values[r.shortKey(n.key)] = Item{Key: n.key, Value: n.value, CreatedIndex: n.created, ModifiedIndex: n.modified}
			}
			r.upgrade(n.modified)
		}
	}
	r.upgrade(headerRev)
}

// LoadTables reads the whole prefix with one range, as APISIX's init phase
// does, and builds the tables the way create_formatter and load_full_data
// do. It returns them with the range's header revision. A resource without
// a placeholder is read by a range of its own, as its sync loop would.
func LoadTables(ctx context.Context, c *Client) (Tables, int64, error) {
	res, rev, err := loadResources(ctx, c)
	if err != nil {
		return nil, 0, err
	}
	return snapshot(res), rev, nil
}

func loadResources(ctx context.Context, c *Client) (map[string]*resource, int64, error) {
	rr, _, err := c.Range(ctx, Prefix, rangeEnd(Prefix))
	if err != nil {
		return nil, 0, fmt.Errorf("apisixsim: full load: %w", err)
	}
	groups, err := group(rr.Kvs)
	if err != nil {
		return nil, 0, fmt.Errorf("apisixsim: full load: %w", err)
	}
	rev := rr.Header.Rev()
	res := newResources()
	for _, d := range Directories {
		r := res[d]
		if l := groups[d]; l != nil {
			r.loadFull(l, rev)
			continue
		}
		// Not preloaded: the resource's own readdir.
		var l loaded
		if r.single {
			one, _, err := c.Range(ctx, r.key, r.key+"\x00")
			if err != nil {
				return nil, 0, fmt.Errorf("apisixsim: readdir %s: %w", r.key, err)
			}
			if len(one.Kvs) > 0 {
				n, err := toNode(one.Kvs[0])
				if err != nil {
					return nil, 0, err
				}
				l.single = &n
			}
			r.loadFull(&l, one.Header.Rev())
			continue
		}
		dr, _, err := c.Range(ctx, r.key+"/", rangeEnd(r.key+"/"))
		if err != nil {
			return nil, 0, fmt.Errorf("apisixsim: readdir %s: %w", r.key, err)
		}
		for i, kv := range dr.Kvs {
			n, err := toNode(kv)
			if err != nil {
				return nil, 0, err
			}
			if i == 0 && n.value == nil {
				continue // placeholder
			}
			l.nodes = append(l.nodes, n)
		}
		r.loadFull(&l, dr.Header.Rev())
	}
	return res, rev, nil
}

func snapshot(res map[string]*resource) Tables {
	t := Tables{}
	for d, r := range res {
		m := make(map[string]Item, len(r.values))
		for k, v := range r.values {
			m[k] = v
		}
		t[d] = m
	}
	return t
}

// DataPlaneConfig configures a DataPlane.
type DataPlaneConfig struct {
	// Client is the sync client (lua-resty-etcd uses max_fails 3 here).
	Client *Client
	// WatchTimeout is the longest silence before the watch is reopened.
	// Zero means DefaultWatchTimeout.
	WatchTimeout time.Duration
	// OnApply, if set, is called after the events of a watch message
	// (header revision rev) are in the tables. Benchmarks time delivery
	// with it.
	OnApply func(rev int64)
	// OnEvents, if set, is called with every watch message that carries
	// events, as it arrives and before APISIX's rules filter it: the
	// watch's ordinal (1 for the first watch opened), its start_revision,
	// the message's header revision and its events. Checkers of the event
	// stream use it.
	OnEvents func(watch int, start, rev int64, events []Event)
	// OnCreated, if set, is called when a watch is created (its created
	// message) with the answering member's ID and the watch's
	// start_revision. Tests see with it which member a gateway watches on,
	// and from where.
	OnCreated func(memberID string, startRevision int64)
}

// DataPlane is the configuration sync of one APISIX worker (3.18).
type DataPlane struct {
	c            *Client
	watchTimeout time.Duration
	onApply      func(rev int64)
	onEvents     func(watch int, start, rev int64, events []Event)
	onCreated    func(memberID string, startRevision int64)
	ctx          context.Context
	cancel       context.CancelFunc
	done         chan struct{}

	mu        sync.Mutex
	res       map[string]*resource
	watchRev  int64 // watch_ctx.rev
	maxRev    int64
	revs      []int64
	reloads   int
	opens     int
	anomalies []string
}

// StartDataPlane makes the full load (failing if it fails, as nginx's init
// phase would) and starts the watch goroutine. Close stops it.
func StartDataPlane(ctx context.Context, cfg DataPlaneConfig) (*DataPlane, error) {
	if cfg.Client == nil {
		return nil, errors.New("apisixsim: DataPlaneConfig.Client is nil")
	}
	if cfg.WatchTimeout <= 0 {
		cfg.WatchTimeout = DefaultWatchTimeout
	}
	res, rev, err := loadResources(ctx, cfg.Client)
	if err != nil {
		return nil, err
	}
	d := &DataPlane{
		c: cfg.Client, watchTimeout: cfg.WatchTimeout, onApply: cfg.OnApply, onEvents: cfg.OnEvents, onCreated: cfg.OnCreated,
		done: make(chan struct{}),
		res:  res, watchRev: rev + 1, maxRev: rev,
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	go d.run()
	return d, nil
}

// Close stops the watch and waits for its goroutines.
func (d *DataPlane) Close() {
	d.cancel()
	<-d.done
}

// Tables returns a copy of the current tables.
func (d *DataPlane) Tables() Tables {
	d.mu.Lock()
	defer d.mu.Unlock()
	return snapshot(d.res)
}

// Revision returns the highest header.revision seen (full load or watch).
func (d *DataPlane) Revision() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.maxRev
}

// Reloads returns how many full reloads happened after the initial load.
func (d *DataPlane) Reloads() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reloads
}

// WatchOpens returns how many watch requests were opened.
func (d *DataPlane) WatchOpens() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.opens
}

// Revisions returns every header.revision of the watch messages APISIX
// acts on (all but created messages), in order.
func (d *DataPlane) Revisions() []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int64(nil), d.revs...)
}

// Anomalies returns what APISIX would have logged as an error or
// mishandled: undecodable lines, blank lines, created messages with events,
// event-less messages, missing header.revision, DELETE events with values,
// PUT events without, cancels without compact_revision, and so on.
func (d *DataPlane) Anomalies() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.anomalies...)
}

func (d *DataPlane) anomaly(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.anomalies) < maxAnomalies {
		d.anomalies = append(d.anomalies, fmt.Sprintf(format, args...))
	}
}

// sleep waits for dur or until Close.
func (d *DataPlane) sleep(dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-d.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// run is the main watcher: it reopens the watch until Close.
func (d *DataPlane) run() {
	defer close(d.done)
	for d.ctx.Err() == nil {
		err := d.watchOnce()
		if d.ctx.Err() != nil {
			return
		}
		pause := reopenPause
		switch {
		case errors.Is(err, ErrNoHealthyEndpoint):
			pause = unhealthyPause
		case err != nil && !errors.Is(err, errTimeout) && !errors.Is(err, errClosed):
			pause = errorPause
		}
		if !d.sleep(pause) {
			return
		}
	}
}

var (
	errTimeout = errors.New("timeout")
	errClosed  = errors.New("closed")
	errReopen  = errors.New("reopen")
)

// line is one piece of the stream, or its end.
type line struct {
	b   []byte
	err error
}

// watchResponse is one {"result":…} message.
type watchResponse struct {
	Header          *Header      `json:"header"`
	Created         bool         `json:"created"`
	Canceled        bool         `json:"canceled"`
	CompactRevision *Int64       `json:"compact_revision"`
	CancelReason    string       `json:"cancel_reason"`
	Events          []watchEvent `json:"events"`
}

type watchEvent struct {
	Type string `json:"type"`
	KV   *KV    `json:"kv"`
}

// watchOnce opens one watch from watch_ctx.rev and handles its messages
// until it ends, times out or must be reopened.
func (d *DataPlane) watchOnce() error {
	d.mu.Lock()
	start := d.watchRev
	d.opens++
	watch := d.opens
	d.mu.Unlock()
	body, err := json.Marshal(map[string]any{"create_request": map[string]any{
		"key": B64(Prefix + "/"), "range_end": B64(Prefix + "0"), "start_revision": start,
	}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(d.ctx)
	defer cancel()
	resp, err := d.c.openStream(ctx, "/v3/watch", body)
	if err != nil {
		return err
	}
	lines := make(chan line)
	readerDone := make(chan struct{})
	go readLines(ctx, resp, lines, readerDone)
	defer func() {
		cancel()
		resp.Body.Close()
		<-readerDone
	}()

	timer := time.NewTimer(d.watchTimeout)
	defer timer.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			return errClosed
		case <-timer.C:
			return errTimeout
		case l := <-lines:
			if l.err != nil {
				if errors.Is(l.err, io.EOF) {
					return errClosed
				}
				return l.err
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(d.watchTimeout)
			err := d.handle(l.b, watch, start, first)
			first = false
			if err != nil {
				return err
			}
		}
	}
}

// readLines splits the body on '\n' as lua-resty-etcd does and sends the
// pieces (without the '\n'). A trailing piece without '\n' is never
// delivered. It stops at the end of the body or when ctx ends.
func readLines(ctx context.Context, resp *http.Response, out chan<- line, done chan<- struct{}) {
	defer close(done)
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		b, err := br.ReadBytes('\n')
		var l line
		if err != nil {
			l.err = err
		} else {
			l.b = b[:len(b)-1]
		}
		select {
		case out <- l:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// handle applies one message with APISIX 3.18's rules (§3.5).
func (d *DataPlane) handle(b []byte, watch int, start int64, first bool) error {
	if len(strings.TrimSpace(string(b))) == 0 {
		d.anomaly("blank line on the watch stream")
		return errReopen
	}
	var msg struct {
		Result *watchResponse  `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &msg); err != nil {
		d.anomaly("undecodable watch line %q: %v", truncate(b), err)
		return errReopen
	}
	if msg.Error != nil {
		d.anomaly("watch stream error: %s", msg.Error)
		return errReopen
	}
	r := msg.Result
	if r == nil {
		d.anomaly("watch line without result: %q", truncate(b))
		return errReopen
	}
	if first && !r.Created {
		d.anomaly("first watch message is not created: %q", truncate(b))
	}
	if r.Canceled {
		if r.CompactRevision == nil {
			d.anomaly("watch canceled without compact_revision: %q", truncate(b))
			return errReopen
		}
		d.mu.Lock()
		d.watchRev = int64(*r.CompactRevision)
		d.mu.Unlock()
		if err := d.reload("compacted"); err != nil {
			return err
		}
		return errReopen
	}
	if r.Created {
		if !first {
			d.anomaly("created on a later message: %q", truncate(b))
		}
		if len(r.Events) > 0 {
			d.anomaly("created message carries %d events (dropped by APISIX)", len(r.Events))
		}
		// APISIX ignores created messages (rule 4), so their header is not
		// in the sequence it acts on; it must still not be below where the
		// watch starts (a member behind the client).
		if r.Header != nil && r.Header.Revision != nil && start > 0 && int64(*r.Header.Revision) < start-1 {
			d.anomaly("created header.revision %d below start_revision %d - 1", int64(*r.Header.Revision), start)
		}
		if d.onCreated != nil && r.Header != nil {
			d.onCreated(r.Header.MemberID, start)
		}
		return nil
	}
	if r.Header == nil || r.Header.Revision == nil {
		d.anomaly("watch message without header.revision: %q", truncate(b))
		return errReopen
	}
	rev := int64(*r.Header.Revision)
	d.record(rev)
	d.mu.Lock()
	restarted := rev < d.watchRev
	switch {
	case restarted:
		d.watchRev = rev
	case rev > d.watchRev:
		d.watchRev = rev + 1
	}
	d.mu.Unlock()
	if restarted {
		d.anomaly("header.revision %d below watch revision (etcd restarted?)", rev)
		if err := d.reload("restarted"); err != nil {
			return err
		}
	}
	if len(r.Events) == 0 {
		d.anomaly("event-less watch message at revision %d: %q", rev, truncate(b))
		return nil
	}
	if rev < start-1 {
		d.anomaly("header.revision %d below start_revision-1 (%d)", rev, start-1)
	}
	nodes := make([]node, len(r.Events))
	for i, ev := range r.Events {
		if ev.KV == nil {
			d.anomaly("event without kv at revision %d", rev)
			return errReopen
		}
		n, err := toNode(*ev.KV)
		if err != nil {
			d.anomaly("event at revision %d: %v", rev, err)
			return errReopen
		}
		if n.modified == 0 {
			d.anomaly("event on %q without mod_revision", n.key)
		}
		if n.modified > rev {
			d.anomaly("event on %q has mod_revision %d above header.revision %d", n.key, n.modified, rev)
		}
		switch {
		case ev.Type == "DELETE" && ev.KV.Value != nil:
			d.anomaly("DELETE event on %q carries a value", n.key)
		case ev.Type == "DELETE" && ev.KV.CreateRevision != 0:
			d.anomaly("DELETE event on %q carries create_revision", n.key)
		case ev.Type != "DELETE" && ev.KV.Value == nil:
			d.anomaly("PUT event on %q without value (APISIX deletes it)", n.key)
		}
		nodes[i] = n
	}
	if d.onEvents != nil {
		d.onEvents(watch, start, rev, toEvents(r.Events, nodes))
	}
	d.mu.Lock()
	for _, res := range d.res {
		d.applyLocked(res, rev, nodes)
	}
	d.mu.Unlock()
	if d.onApply != nil && len(nodes) > 0 {
		d.onApply(rev)
	}
	return nil
}

// applyLocked is http_waitdir + sync_data for one resource.
func (d *DataPlane) applyLocked(r *resource, rev int64, nodes []node) {
	if rev <= r.prevIndex {
		return
	}
	for _, n := range nodes {
		if !strings.HasPrefix(n.key, r.key) {
			continue
		}
		id := r.key
		if !r.single {
			id = r.shortKey(n.key)
		}
		if n.value != nil && !r.single {
			if _, ok := n.value.(map[string]any); !ok {
				r.upgrade(n.modified)
				if len(d.anomalies) < maxAnomalies {
					d.anomalies = append(d.anomalies, fmt.Sprintf("invalid item data of [%s], it should be an object", n.key))
				}
				return
			}
		}
		r.upgrade(n.modified)
		if n.value == nil {
			delete(r.values, id)
			continue
		}
		r.values[id] = Item{Key: n.key, Value: n.value, CreatedIndex: n.created, ModifiedIndex: n.modified}
	}
}

func (d *DataPlane) record(rev int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.revs) < maxRevisions {
		d.revs = append(d.revs, rev)
	}
	if rev > d.maxRev {
		d.maxRev = rev
	}
}

// reload re-reads every resource (a "compacted" or "restarted" broadcast).
// It retries until it succeeds, the data plane is closed, or
// maxReloadAttempts failed.
func (d *DataPlane) reload(why string) error {
	var lastErr error
	for attempt := 0; attempt < maxReloadAttempts; attempt++ {
		ctx, cancel := context.WithTimeout(d.ctx, d.c.timeout)
		res, rev, err := loadResources(ctx, d.c)
		cancel()
		if err == nil {
			d.mu.Lock()
			d.res = res
			d.reloads++
			if rev > d.maxRev {
				d.maxRev = rev
			}
			d.mu.Unlock()
			return nil
		}
		lastErr = err
		d.anomaly("reload (%s) attempt %d: %v", why, attempt, err)
		if !d.sleep(errorPause) {
			return errClosed
		}
	}
	return fmt.Errorf("apisixsim: reload (%s) failed %d times: %w", why, maxReloadAttempts, lastErr)
}
