package node

import (
	"testing"

	"github.com/hashicorp/raft"
)

// TestProposalsCountThisLeadersEntries checks what the sink's sync
// batches wait for: entries this member proposed as leader, settled when
// the store applies them or raft refuses them unappended; no-ops,
// configuration entries and other terms' entries are not its proposals.
func TestProposalsCountThisLeadersEntries(t *testing.T) {
	var p proposals
	p.proposed.Add(5) // proposed before this member led: not waited for
	p.reset(3)
	if proposed, settled := p.Proposals(); proposed != settled {
		t.Fatalf("after reset: proposed %d, settled %d", proposed, settled)
	}
	p.proposed.Add(4)
	p.applied([]*raft.Log{
		{Type: raft.LogCommand, Term: 2, Data: []byte("an older leader's")},
		{Type: raft.LogCommand, Term: 3, Data: noopEntry},
		{Type: raft.LogConfiguration, Term: 3},
		{Type: raft.LogCommand, Term: 3, Data: []byte("one")},
		{Type: raft.LogCommand, Term: 3, Data: []byte("two")},
	})
	if proposed, settled := p.Proposals(); proposed-settled != 2 {
		t.Fatalf("two of four applied: proposed %d, settled %d", proposed, settled)
	}
	p.failed(raft.ErrLeadershipLost) // may still be applied: not counted
	p.failed(raft.ErrEnqueueTimeout)
	if proposed, settled := p.Proposals(); proposed-settled != 1 {
		t.Fatalf("one refused unappended: proposed %d, settled %d", proposed, settled)
	}
	p.applied([]*raft.Log{{Type: raft.LogCommand, Term: 3, Data: []byte("three")}})
	if proposed, settled := p.Proposals(); proposed != settled {
		t.Fatalf("all settled: proposed %d, settled %d", proposed, settled)
	}
}
