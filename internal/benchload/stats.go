package benchload

import (
	"slices"
	"sync"
	"time"
)

// Result is what one load measured.
type Result struct {
	Ops     int           // operations completed
	Elapsed time.Duration // wall time of the measured part
	// Lat holds one latency per operation (or per delivered event),
	// sorted.
	Lat []time.Duration
}

// OpsPerSec is Ops over Elapsed.
func (r Result) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Percentile returns the p-th percentile (0-100) of the latencies, zero
// when there are none.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	return r.Lat[min(len(r.Lat)-1, int(float64(len(r.Lat))*p/100))]
}

// Max is the largest latency.
func (r Result) Max() time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	return r.Lat[len(r.Lat)-1]
}

// result sorts the latencies of all workers into one Result.
func result(ops int, elapsed time.Duration, lats ...[]time.Duration) Result {
	all := slices.Concat(lats...)
	slices.Sort(all)
	return Result{Ops: ops, Elapsed: elapsed, Lat: all}
}

// Ms is d in milliseconds, for reports.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// parallel runs f(0) ... f(n-1) each in its own goroutine and returns the
// first error (in index order) once all have returned.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
