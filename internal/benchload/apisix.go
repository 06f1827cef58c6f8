package benchload

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdsql/etcdsql/internal/apisixsim"
)

// FullLoadConfig is APISIX's start against a store of Routes routes:
// Gateways simulated gateways (apisixsim's data plane, over the HTTP/JSON
// gateway) each make their full load (a range of /apisix) and open their
// watch, all at once.
type FullLoadConfig struct {
	Endpoints []string
	Routes    int
	Gateways  int
}

// FullLoad writes the routes (if /apisix/routes does not hold them yet),
// then times the gateways' start. Result.Lat holds each gateway's time
// to loaded tables; Elapsed is the time until the last one was.
func FullLoad(ctx context.Context, cfg FullLoadConfig) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	newClient := func(seed int64) (*apisixsim.Client, error) {
		return apisixsim.NewClient(apisixsim.ClientConfig{Endpoints: cfg.Endpoints, Seed: seed, MaxFails: 3, Timeout: time.Minute})
	}
	cli, err := newClient(1)
	if err != nil {
		return Result{}, err
	}
	defer cli.Close()
	if err := apisixsim.InitDir(ctx, cli); err != nil {
		return Result{}, err
	}
	if err := writeRoutes(ctx, cfg.Endpoints, cfg.Routes); err != nil {
		return Result{}, err
	}
	lats := make([]time.Duration, cfg.Gateways)
	start := time.Now()
	err = parallel(cfg.Gateways, func(g int) error {
		c, err := newClient(int64(100 + g))
		if err != nil {
			return err
		}
		defer c.Close()
		d, err := apisixsim.StartDataPlane(ctx, apisixsim.DataPlaneConfig{Client: c})
		lats[g] = time.Since(start)
		if err != nil {
			return err
		}
		defer d.Close()
		if n := len(d.Tables()["/routes"]); n != cfg.Routes {
			return fmt.Errorf("gateway %d loaded %d routes, want %d", g, n, cfg.Routes)
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return Result{}, err
	}
	return result(cfg.Gateways, elapsed, lats), nil
}

// writeRoutes puts n APISIX routes (about 200 bytes of JSON each) from 16
// writers, unless they are there already.
func writeRoutes(ctx context.Context, endpoints []string, n int) error {
	c, err := Dial(endpoints...)
	if err != nil {
		return err
	}
	defer c.Close()
	if r, err := c.Get(ctx, fmt.Sprintf("/apisix/routes/%05d", n-1)); err != nil || len(r.Kvs) == 1 {
		return err
	}
	const writers = 16
	return parallel(writers, func(w int) error {
		for i := w; i < n; i += writers {
			v := fmt.Sprintf(`{"id":"%05d","uri":"/r/%05d/*","methods":["GET","POST"],"upstream":{"type":"roundrobin","nodes":{"127.0.0.1:1980":1}},"create_time":1764633600,"update_time":1764633600}`, i, i)
			if _, err := c.Put(ctx, fmt.Sprintf("/apisix/routes/%05d", i), v); err != nil {
				return err
			}
		}
		return nil
	})
}
