package node

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// sinkSupervisor runs the system-of-record writer (sqlsink) while this
// member leads, one run per term, and stops it, waiting, before anything
// else when leadership changes: a deposed leader writes no more. It owns
// the run's lifetime and the fatal error of the last run (fenced by a
// newer leader, database ahead of or behind the store): an operator must
// act on that. The leadership part calls start and stop; health reads
// fatal. Safe for concurrent use.
type sinkSupervisor struct {
	sink      *sqlsink.Sink
	store     *fsm.Store
	proposals *proposals
	raft      func() *raft.Raft
	log       *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	fatalE atomic.Pointer[error]
}

// start runs the writer for the current term.
func (s *sinkSupervisor) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.cancel, s.done = cancel, done
	r := s.raft()
	term := r.CurrentTerm()
	s.fatalE.Store(nil)
	s.proposals.reset(term)
	go func() {
		defer close(done)
		err := s.sink.Run(ctx, sinkSource{s.store, s.proposals}, term)
		switch {
		case err == nil:
		case errors.Is(err, sqlsink.ErrFenced) && (r.CurrentTerm() != term || r.State() != raft.Leader):
			s.log.Info("sink stopped: a newer leader writes to the database", "term", term)
		default:
			s.fatalE.Store(&err)
			s.log.Error("sink stopped: writes are refused until it is fixed", "err", err)
		}
	}()
}

// sinkSource is the store as the sink reads it, with this leader's
// proposals, which its sync batches wait for.
type sinkSource struct {
	*fsm.Store
	*proposals
}

// stop stops the writer and waits for it.
func (s *sinkSupervisor) stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// fatal returns why the writer cannot run, or nil.
func (s *sinkSupervisor) fatal() error {
	if p := s.fatalE.Load(); p != nil {
		return *p
	}
	return nil
}

// SinkFatal returns why the sink cannot run, or nil.
func (n *Node) SinkFatal() error {
	if n.sinks == nil {
		return nil
	}
	return n.sinks.fatal()
}
