package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/etcdsql/etcdsql/node"
)

// errDrainCut is the exit of a member whose drain was cut short: by a
// second signal, or by --drain-timeout passing.
var errDrainCut = errors.New("stopped before the drain finished")

// stopMember drains a member after the first SIGTERM or SIGINT and stops
// it (leaving the cluster first with --leave-on-terminate), all within
// bound. A second signal, or the bound passing, ends the process at once;
// what was not done by then is what a crash leaves, which every member
// and the database recover from.
func stopMember(m *node.Member, bound time.Duration, leave bool, log *slog.Logger) error {
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(again)
	start := time.Now()
	log.Info("draining", "drain_timeout", bound)
	deadline := start.Add(bound)
	done := make(chan error, 1)
	go func() { done <- drainAndClose(m, deadline, leave, log) }()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case err := <-done:
		log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
		return err
	case sig := <-again:
		log.Warn("second signal: exiting at once", "signal", sig.String())
	case <-timer.C:
		log.Warn("the drain did not finish within --drain-timeout: exiting at once", "drain_timeout", bound)
	}
	return errDrainCut
}

// drainAndClose drains the member, leaves the cluster if asked, and stops
// the node. The client port gets three quarters of the time left for its
// calls in flight; the rest is for leaving and stopping raft and the sink.
func drainAndClose(m *node.Member, deadline time.Time, leave bool, log *slog.Logger) error {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Until(deadline)*3/4))
	m.Drain(ctx)
	cancel()
	if leave {
		if err := m.Node.Leave(max(time.Until(deadline), time.Second)); err != nil {
			log.Warn("leaving the cluster", "err", err)
		}
	}
	return m.Close()
}
