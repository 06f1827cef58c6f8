package node

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/internal/release"
)

// Gossip: this member's presence in memberlist (package cluster): what it
// says about itself (addresses, role, cluster ID) and what it knows of the
// others. Formation and membership read it; it decides nothing.

// startGossip joins the gossip cluster, saying who this member is.
func (n *Node) startGossip() error {
	if n.cfg.Gossip == nil {
		return nil
	}
	gc := *n.cfg.Gossip
	gc.Name = n.cfg.Name
	if gc.Logger == nil {
		gc.Logger = n.baseLog
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	if len(n.cfg.ClusterKey) > 0 {
		key, err := GossipKey(n.cfg.ClusterKey)
		if err != nil {
			return err
		}
		gc.SecretKey = key
	}
	gc.Meta.RaftAddr = n.advertisePeer()
	gc.Meta.ClientURLs = n.cfg.ClientURLs
	gc.Meta.PeerURLs = n.cfg.PeerURLs
	gc.Meta.Nonce = hex.EncodeToString(nonce[:])
	gc.Meta.Version = release.Name
	gc.Meta.Format = cluster.MetaFormat
	gc.Meta.Role = cluster.RoleVoter
	if n.cfg.Nonvoter {
		gc.Meta.Role = cluster.RoleNonvoter
	}
	if id := n.ClusterID(); id != 0 {
		gc.Meta.ClusterID = strconv.FormatUint(id, 16)
	}
	c, err := cluster.Start(gc)
	if err != nil {
		return err
	}
	n.gossip = c
	return nil
}

func (n *Node) advertisePeer() string {
	if n.cfg.AdvertisePeerAddr != "" {
		return n.cfg.AdvertisePeerAddr
	}
	return n.cfg.PeerAddr
}

// gossipMember returns what gossip knows of a member.
func (n *Node) gossipMember(name string) (cluster.Member, bool) {
	if n.gossip == nil {
		return cluster.Member{}, false
	}
	for _, m := range n.gossip.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return cluster.Member{}, false
}

// gossipAlive counts the members gossip sees alive, this one included.
func (n *Node) gossipAlive() int {
	alive := 0
	for _, m := range n.gossip.Members() {
		if m.State == cluster.StateAlive {
			alive++
		}
	}
	return alive
}
