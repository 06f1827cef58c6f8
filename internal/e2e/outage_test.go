package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"

	"github.com/etcdsql/etcdsql/internal/faultproxy"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// unavailableText is what a write refused for a database outage carries.
const unavailableText = "etcdserver: storage is unavailable, write rejected"

// outageWatcher follows one prefix from a start revision and checks, as
// events arrive, that every revision comes exactly once and in order.
type outageWatcher struct {
	mu      sync.Mutex
	next    int64 // the revision expected next
	last    int64 // the last revision received (next-1)
	lastAt  time.Time
	arrived []time.Time // arrival time of revision first+i
	err     error       // the first violation or watch error
	done    chan struct{}
}

func watchOutage(ch clientv3.WatchChan, first int64) *outageWatcher {
	w := &outageWatcher{next: first, last: first - 1, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for resp := range ch {
			w.mu.Lock()
			if err := resp.Err(); err != nil && w.err == nil {
				w.err = fmt.Errorf("watch error at revision %d: %v", w.next, err)
			}
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision != w.next && w.err == nil {
					w.err = fmt.Errorf("watch got revision %d, want %d (lost, duplicated or reordered)", ev.Kv.ModRevision, w.next)
				}
				w.last, w.next = ev.Kv.ModRevision, ev.Kv.ModRevision+1
				w.lastAt = time.Now()
				w.arrived = append(w.arrived, w.lastAt)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *outageWatcher) state() (last int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last, w.err
}

// waitFor polls until the watcher has received revision rev, for at most
// timeout, and returns how long that took.
func (w *outageWatcher) waitFor(rev int64, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for i := 0; ; i++ {
		last, err := w.state()
		if err != nil {
			return time.Since(start), err
		}
		if last >= rev {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout || i > int(timeout/(5*time.Millisecond))+1 {
			return time.Since(start), fmt.Errorf("watcher at revision %d, want %d after %v", last, rev, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type outageAck struct {
	key string
	rev int64
	at  time.Time // when the acknowledgement arrived
}

type outagePutErr struct {
	issued  time.Time
	latency time.Duration
	code    codes.Code
	text    string
	// deadline: the client's own deadline passed (clientv3 returns the
	// context's error, not a gRPC status).
	deadline bool
}

// isTimeout: the put's outcome is unknown (it was proposed and did not
// reach the database in time), as the client's deadline or the server's
// "request timed out".
func isTimeout(e outagePutErr) bool {
	return e.deadline || e.code == codes.DeadlineExceeded || e.text == "etcdserver: request timed out"
}

// TestSinkOutageRefusesWritesAndRecovers cuts the connection between a
// member and MariaDB for 10 s under write load: reads and watches go on,
// writes are refused at once with Unavailable, nothing is proposed while
// refused, and once the database is back writes are accepted again with no
// operator action; every acknowledged write is in MariaDB and the watcher
// saw every revision exactly once.
func TestSinkOutageRefusesWritesAndRecovers(t *testing.T) {
	const (
		prefix       = "/outage/"
		writers      = 4
		putTimeout   = 2 * time.Second
		outage       = 10 * time.Second
		maxDetection = 2 * time.Second
		maxRejection = 100 * time.Millisecond
		maxReadGap   = 200 * time.Millisecond
		maxRecovery  = 5 * time.Second
	)
	dsn := mysqltest.NewDatabase(t)
	proxy := faultproxy.New(t, mysqltest.Addr())
	s := testserver.Start(t, testserver.WithMySQL(mysqltest.DSNWithAddr(dsn, proxy.Addr())))
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	start := mustRev(t, c)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watcher := watchOutage(c.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(start+1)), start+1)

	// Writers: unique keys under the watched prefix, so that every revision
	// from start+1 on is one put the watcher must see.
	var (
		mu     sync.Mutex
		acks   []outageAck
		errs   []outagePutErr
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		nPuts  atomic.Int64
		probes atomic.Int64 // keys of the test's own puts
		// issuedAt[w] is when writer w issued the put it waits for
		// (UnixNano), 0 between puts.
		issuedAt [writers]atomic.Int64
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			deadline := time.Now().Add(50 * time.Second)
			for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("%sw%d/%06d", prefix, w, i)
				issued := time.Now()
				issuedAt[w].Store(issued.UnixNano())
				pctx, pcancel := context.WithTimeout(ctx, putTimeout)
				r, err := c.Put(pctx, key, key)
				pcancel()
				issuedAt[w].Store(0)
				nPuts.Add(1)
				mu.Lock()
				if err == nil {
					acks = append(acks, outageAck{key, r.Header.Revision, time.Now()})
				} else {
					code, text := codeAndText(err)
					errs = append(errs, outagePutErr{issued, time.Since(issued), code, text, errors.Is(err, context.DeadlineExceeded)})
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // do not spin on refusals
				}
			}
		}(w)
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	// Readers: a linearizable and a serializable Get every 20 ms, each
	// recording when it last succeeded.
	type readLog struct {
		mu   sync.Mutex
		ok   []time.Time
		fail []string
	}
	var linReads, serReads readLog
	readStop := make(chan struct{})
	var readWG sync.WaitGroup
	for _, rd := range []struct {
		log  *readLog
		opts []clientv3.OpOption
	}{{&linReads, nil}, {&serReads, []clientv3.OpOption{clientv3.WithSerializable()}}} {
		readWG.Add(1)
		go func() {
			defer readWG.Done()
			for i := 0; i < 10000; i++ {
				select {
				case <-readStop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				rctx, rcancel := context.WithTimeout(ctx, time.Second)
				_, err := c.Get(rctx, prefix+"w0/000000", rd.opts...)
				rcancel()
				rd.log.mu.Lock()
				if err == nil {
					rd.log.ok = append(rd.log.ok, time.Now())
				} else {
					rd.log.fail = append(rd.log.fail, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
				}
				rd.log.mu.Unlock()
			}
		}()
	}
	defer func() {
		select {
		case <-readStop:
		default:
			close(readStop)
		}
		readWG.Wait()
	}()

	// About a second of load.
	loadUntil := time.Now().Add(time.Second)
	for i := 0; i < 1000 && time.Now().Before(loadUntil); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	ackedBeforeCut := len(acks)
	var maxAckBeforeCut int64
	for _, a := range acks {
		maxAckBeforeCut = max(maxAckBeforeCut, a.rev)
	}
	errsBeforeCut := append([]outagePutErr(nil), errs...)
	mu.Unlock()
	if ackedBeforeCut < 20 {
		t.Fatalf("only %d writes acknowledged in the second before the cut", ackedBeforeCut)
	}
	for _, e := range errsBeforeCut {
		t.Errorf("put failed before the cut: %v %q", e.code, e.text)
	}

	proxy.Cut()
	cutAt := time.Now()
	t.Logf("cut the database connection after %d acknowledged writes (last revision %d)", ackedBeforeCut, maxAckBeforeCut)

	// (c) Writes acknowledged before the cut reach the watcher during it.
	if d, err := watcher.waitFor(maxAckBeforeCut, 2*time.Second); err != nil {
		t.Errorf("during the cut: %v", err)
	} else {
		t.Logf("watcher had every write acknowledged before the cut %v after it", d)
	}

	// (b) Detection: a put of the test's own is refused with Unavailable.
	// Until the member notices, a put is proposed and waits for the
	// database, so each attempt has a short timeout; such puts are committed
	// and reach the database after the outage (the watcher sees them).
	//
	// clientv3 does not retry these refusals: Put uses its nonRepeatable
	// retry policy, which retries Unavailable only when no connection was
	// ever established ("there is no address available" / "there is no
	// connection available"), so clientv3.Put shows the server's latency.
	put := func(timeout time.Duration) (time.Duration, error) {
		key := fmt.Sprintf("%sprobe/%06d", prefix, probes.Add(1))
		pctx, pcancel := context.WithTimeout(ctx, timeout)
		defer pcancel()
		issued := time.Now()
		_, err := c.Put(pctx, key, "p")
		return time.Since(issued), err
	}
	// detectedAt is when the first refused put was issued (the detection
	// latency); seenAt is when its refusal came back. A put of another
	// connection issued between the two may have reached the member's
	// check first, before it noticed, and been proposed: only puts issued
	// after seenAt must be refused.
	var detectedAt, seenAt time.Time
	for i := 0; i < 1000 && time.Since(cutAt) < maxDetection+time.Second; i++ {
		issued := time.Now()
		_, err := put(10 * time.Millisecond)
		if code, text := codeAndText(err); err != nil && code == codes.Unavailable && text == unavailableText {
			detectedAt, seenAt = issued, time.Now()
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if detectedAt.IsZero() {
		t.Fatalf("writes still not refused %v after the cut", time.Since(cutAt))
	}
	detection := detectedAt.Sub(cutAt)
	t.Logf("outage detected (first refused put issued) %v after the cut", detection)
	if detection > maxDetection {
		t.Errorf("outage detected %v after the cut, want <= %v", detection, maxDetection)
	}

	// Rejection latency of new puts while refused.
	var rejections []time.Duration
	for i := 0; i < 8; i++ {
		lat, err := put(putTimeout)
		rejections = append(rejections, lat)
		code, text := codeAndText(err)
		if err == nil || code != codes.Unavailable || text != unavailableText {
			t.Errorf("put %d during the outage: err=%v (code %v), want Unavailable %q", i, err, code, unavailableText)
		} else if lat > maxRejection {
			t.Errorf("put %d during the outage refused after %v, want <= %v", i, lat, maxRejection)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("put rejection latencies during the outage: %v", rejections)

	// Nothing is proposed while writes are refused: once the puts issued
	// before the outage was detected have ended (they time out), the
	// revision stands still until Restore.
	inflightDeadline := time.Now().Add(putTimeout + 2*time.Second)
	for w := range issuedAt {
		for at := issuedAt[w].Load(); at != 0 && at < seenAt.UnixNano(); at = issuedAt[w].Load() {
			if time.Now().After(inflightDeadline) {
				t.Fatalf("writer %d's put issued %v before detection still in flight", w, seenAt.Sub(time.Unix(0, at)))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	frozenRev, err := c.Get(ctx, "rev", clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.waitFor(frozenRev.Header.Revision, 2*time.Second); err != nil {
		t.Errorf("during the cut, watcher did not catch up with the committed revision %d: %v", frozenRev.Header.Revision, err)
	}

	// Rest of the 10 s window.
	restoreAt := cutAt.Add(outage)
	for i := 0; i < 1000 && time.Now().Before(restoreAt); i++ {
		time.Sleep(min(10*time.Millisecond, time.Until(restoreAt)))
	}
	endRev, err := c.Get(ctx, "rev", clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	if endRev.Header.Revision != frozenRev.Header.Revision {
		t.Errorf("revision moved from %d to %d while writes were refused", frozenRev.Header.Revision, endRev.Header.Revision)
	}
	proxy.Restore()
	restoredAt := time.Now()

	// (a) Reads answered throughout the window.
	for _, rd := range []struct {
		name string
		log  *readLog
	}{{"linearizable", &linReads}, {"serializable", &serReads}} {
		rd.log.mu.Lock()
		prev, worst := cutAt, time.Duration(0)
		n := 0
		for _, at := range append(append([]time.Time(nil), rd.log.ok...), restoredAt) {
			if at.Before(cutAt) {
				continue
			}
			if at.After(restoredAt) {
				at = restoredAt
			}
			worst = max(worst, at.Sub(prev))
			prev = at
			n++
		}
		fails := append([]string(nil), rd.log.fail...)
		rd.log.mu.Unlock()
		t.Logf("%s reads during the outage: %d answered, longest gap %v", rd.name, n-1, worst)
		if worst > maxReadGap {
			t.Errorf("%s reads: a gap of %v without an answer during the outage, want <= %v", rd.name, worst, maxReadGap)
		}
		for i, f := range fails {
			if i == 5 {
				t.Errorf("... %d failed %s reads in all", len(fails), rd.name)
				break
			}
			t.Errorf("%s read failed: %s", rd.name, f)
		}
	}

	// Recovery with no operator action.
	var recoveredAt time.Time
	for i := 0; i < 1000 && time.Since(restoredAt) < maxRecovery+5*time.Second; i++ {
		if _, err := put(3 * time.Second); err == nil {
			recoveredAt = time.Now()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if recoveredAt.IsZero() {
		t.Fatalf("writes still refused %v after the database came back", time.Since(restoredAt))
	}
	recovery := recoveredAt.Sub(restoredAt)
	t.Logf("writes accepted again %v after Restore", recovery)
	if recovery > maxRecovery {
		t.Errorf("writes accepted again only %v after Restore, want <= %v", recovery, maxRecovery)
	}

	// A second more of load, then stop.
	for i := 0; i < 1000 && time.Since(recoveredAt) < time.Second; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(readStop)
	readWG.Wait()

	final, err := c.Get(ctx, "rev")
	if err != nil {
		t.Fatal(err)
	}
	finalRev := final.Header.Revision

	// Writer errors: Unavailable (refused) or a timeout (in flight at the
	// cut, outcome unknown) during the outage, nothing else, and nothing
	// for puts issued after recovery.
	mu.Lock()
	byKind := map[string]int{}
	var afterRecovery []outagePutErr
	for _, e := range errs {
		kind := e.code.String()
		if e.code == codes.Unavailable && e.text != unavailableText {
			kind += " " + e.text
		}
		byKind[kind]++
		switch {
		case e.issued.After(recoveredAt):
			afterRecovery = append(afterRecovery, e)
		case e.code == codes.Unavailable && e.text == unavailableText:
			if e.latency > maxRejection {
				t.Errorf("writer put refused after %v, want <= %v", e.latency, maxRejection)
			}
		case isTimeout(e) && e.issued.Before(seenAt):
		default:
			t.Errorf("writer put issued %v after the cut (detected at %v) failed with %v %q after %v",
				e.issued.Sub(cutAt), detection, e.code, e.text, e.latency)
		}
	}
	for _, e := range afterRecovery {
		t.Errorf("writer put issued %v after recovery failed: %v %q", e.issued.Sub(recoveredAt), e.code, e.text)
	}
	ackList := append([]outageAck(nil), acks...)
	mu.Unlock()
	t.Logf("%d writer puts: %d acknowledged, errors by code %v; revisions %d..%d", nPuts.Load(), len(ackList), byKind, start+1, finalRev)

	// The watcher saw every revision start+1..finalRev exactly once, in
	// order (checked as they arrived).
	if _, err := watcher.waitFor(finalRev, 10*time.Second); err != nil {
		t.Errorf("watcher: %v", err)
	}
	wcancel()
	select {
	case <-watcher.done:
	case <-time.After(5 * time.Second):
		t.Error("watch channel not closed 5 s after its context was canceled")
	}
	if last, err := watcher.state(); err != nil || last != finalRev {
		t.Errorf("watcher ended at revision %d (err %v), want %d", last, err, finalRev)
	}

	// Every acknowledged write is in MariaDB, read directly over the real
	// address, with its revision.
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT `key`, mod_revision FROM kv WHERE `key` LIKE ?", prefix+"%")
	if err != nil {
		t.Fatal(err)
	}
	inDB := map[string]int64{}
	for rows.Next() {
		var k []byte
		var rev int64
		if err := rows.Scan(&k, &rev); err != nil {
			t.Fatal(err)
		}
		inDB[string(k)] = rev
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, a := range ackList {
		if rev, ok := inDB[a.key]; !ok || rev != a.rev {
			missing = append(missing, fmt.Sprintf("%s@%d (database: present=%v mod_revision=%d)", a.key, a.rev, ok, rev))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%d acknowledged writes missing from MariaDB, e.g. %s", len(missing), strings.Join(missing[:min(5, len(missing))], "; "))
	}
	if got, want := int64(len(inDB)), finalRev-start; got != want {
		t.Errorf("MariaDB has %d keys under %s, want %d (one per revision %d..%d)", got, prefix, want, start+1, finalRev)
	}
	st := checkDatabase(t, c, sqlsink.Config{MySQLDSN: dsn})
	if st.Revision != finalRev {
		t.Errorf("MariaDB at revision %d, member at %d", st.Revision, finalRev)
	}
}
