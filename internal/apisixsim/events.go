package apisixsim

// Event is one watch event as it arrived: the key, its mod_revision, and
// whether it deletes the key (it carries no value, which is how APISIX
// tells a delete).
type Event struct {
	Key         string
	ModRevision int64
	Delete      bool
}

// toEvents pairs a message's events with their decoded nodes.
func toEvents(evs []watchEvent, nodes []node) []Event {
	out := make([]Event, len(nodes))
	for i, n := range nodes {
		out[i] = Event{Key: n.key, ModRevision: n.modified, Delete: evs[i].KV.Value == nil}
	}
	return out
}
