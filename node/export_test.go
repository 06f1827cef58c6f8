package node

// SetBootstrapCrash makes every start that bootstraps raft stop right
// after writing the bootstrap entry, with err, as a crash there would; nil
// undoes it.
func SetBootstrapCrash(err error) {
	if err == nil {
		testHookBootstrapped = nil
		return
	}
	testHookBootstrapped = func() error { return err }
}

// TransferLeadership moves n's leadership with raft's own transfer, without
// the hand-over a stopping member makes first.
func TransferLeadership(n *Node) error { return n.raft.LeadershipTransfer().Error() }
