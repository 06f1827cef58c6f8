package e2e

import (
	"errors"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/testcluster"
)

// A drain that cannot finish is cut short: --drain-timeout passing, or a
// second SIGTERM, ends the process at once with status 1. The drain is
// held up by a leader whose followers are paused (SIGSTOP): it cannot
// hand leadership over, no leader appears, and stopping raft waits on
// connections to members that answer nothing.
func TestDrainIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bound  time.Duration
		second time.Duration // a second SIGTERM this long after the first; 0: none
		within time.Duration // the process must be gone this long after the first
	}{
		{"drain-timeout passes", 2 * time.Second, 0, 3 * time.Second},
		{"second SIGTERM", time.Minute, 300 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := testcluster.StartProcesses(t, 3, "--drain-timeout", tc.bound.String())
			leader := procLeader(t, ps)
			for i := range ps.Procs {
				if i != leader {
					ps.Pause(i)
				}
			}
			pid := ps.Pid(leader)
			start := time.Now()
			wait := ps.Terminate(leader)
			exited := make(chan error, 1)
			go func() { exited <- wait() }()
			if tc.second > 0 {
				select {
				case err := <-exited:
					t.Fatalf("exited after %v, before the second SIGTERM (%v): the drain was not held up", time.Since(start), err)
				case <-time.After(tc.second):
				}
				if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			select {
			case err = <-exited:
			case <-time.After(tc.within + 10*time.Second):
				t.Fatalf("still running %v after SIGTERM (--drain-timeout %v)", time.Since(start), tc.bound)
			}
			took := time.Since(start)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit: %v, want status 1 (the drain cut short)", err)
			}
			if took > tc.within {
				t.Errorf("exited %v after the first SIGTERM, want within %v", took, tc.within)
			}
			if tc.second == 0 && took < tc.bound {
				t.Errorf("exited %v after SIGTERM, before --drain-timeout %v: the drain was not held up", took, tc.bound)
			}
			t.Logf("exited %v after the first SIGTERM (status %s)", took.Round(time.Millisecond), strconv.Itoa(exit.ExitCode()))
		})
	}
}
