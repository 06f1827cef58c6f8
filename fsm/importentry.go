package fsm

import (
	"fmt"
	"reflect"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// An import's entries (envelope version 2): each is a kind and one of
// etcd's own messages, which carries the data as etcd reports it. The
// kinds, what they carry and when the store takes them:
//
//	ImportBegin   ResponseHeader: ClusterId = the source's cluster ID,
//	              Revision = the source revision its key space is read at.
//	              Only on a store never written (revision 1, no key, no
//	              lease); puts the store in import mode.
//	ImportLease   LeaseTimeToLiveResponse: ID, GrantedTTL, TTL (seconds
//	              left at the source). Creates or updates one lease.
//	ImportKeys    RangeResponse: Kvs, each with its own create and mod
//	              revision, version and lease, in (mod revision, key)
//	              order, every mod revision above the store's; the store's
//	              revision becomes Header.Revision. One revision's keys
//	              never span two entries.
//	ImportCompact CompactionRequest: Revision = the store's revision (the
//	              source revision S the key space was read at): history
//	              below it is gone, as after etcd's compaction at S.
//	ImportEvents  WatchResponse: the events of revision Header.Revision,
//	              which must be the store's revision + 1 (etcd's watch
//	              delivers each revision's events together).
//	ImportFinish  LeaseLeasesResponse: Header.Revision = the store's
//	              revision; Leases = the leases the source still has.
//	              Leaves import mode.
//	ImportReset   ResponseHeader (empty). Only in import mode: wipes
//	              every key, lease and revision (back to revision 1),
//	              staying in import mode for a new ImportBegin; the
//	              system of record is wiped with it (Changes.Wipes).
//
// While the store imports it refuses every client write (ErrImporting).

// ImportKind names the kind of an import entry.
type ImportKind byte

// The import entry kinds; their numbers are the replicated format.
const (
	ImportBegin   ImportKind = 1
	ImportLease   ImportKind = 2
	ImportKeys    ImportKind = 3
	ImportCompact ImportKind = 4
	ImportEvents  ImportKind = 5
	ImportFinish  ImportKind = 6
	ImportReset   ImportKind = 7
)

// ImportMessage is what every one of etcd's generated messages has.
type ImportMessage interface {
	Size() int
	MarshalTo([]byte) (int, error)
	Unmarshal([]byte) error
}

// importKinds describes each kind: its name (for the release table and
// errors) and a new message of its type.
var importKinds = map[ImportKind]struct {
	name string
	msg  func() ImportMessage
}{
	ImportBegin:   {"ImportBegin", func() ImportMessage { return &pb.ResponseHeader{} }},
	ImportLease:   {"ImportLease", func() ImportMessage { return &pb.LeaseTimeToLiveResponse{} }},
	ImportKeys:    {"ImportKeys", func() ImportMessage { return &pb.RangeResponse{} }},
	ImportCompact: {"ImportCompact", func() ImportMessage { return &pb.CompactionRequest{} }},
	ImportEvents:  {"ImportEvents", func() ImportMessage { return &pb.WatchResponse{} }},
	ImportFinish:  {"ImportFinish", func() ImportMessage { return &pb.LeaseLeasesResponse{} }},
	ImportReset:   {"ImportReset", func() ImportMessage { return &pb.ResponseHeader{} }},
}

// String returns the kind's name.
func (k ImportKind) String() string {
	if d, ok := importKinds[k]; ok {
		return d.name
	}
	return fmt.Sprintf("ImportKind(%d)", byte(k))
}

// ImportEntry is one import entry: its kind and the message of the type
// that kind carries.
type ImportEntry struct {
	Kind ImportKind
	Msg  ImportMessage
}

// wellTyped reports whether e's message is set and of its kind's type.
func (e *ImportEntry) wellTyped() bool {
	d, ok := importKinds[e.Kind]
	return ok && e.Msg != nil && !reflect.ValueOf(e.Msg).IsNil() && reflect.TypeOf(e.Msg) == reflect.TypeOf(d.msg())
}

// EncodeImport wraps one import entry in envelope version 2.
func EncodeImport(e *ImportEntry) ([]byte, error) {
	if !e.wellTyped() {
		return nil, fmt.Errorf("fsm: encode import entry: %v without its message", e.Kind)
	}
	m := e.Msg
	n := m.Size()
	buf := make([]byte, 2+n)
	buf[0], buf[1] = entryVersion2, byte(e.Kind)
	if _, err := m.MarshalTo(buf[2:]); err != nil {
		return nil, fmt.Errorf("fsm: encode import entry: %w", err)
	}
	return buf, nil
}

// DecodeImport is the inverse of EncodeImport.
func DecodeImport(data []byte) (*ImportEntry, error) {
	_, e, err := decodeEntry(data)
	if err == nil && e == nil {
		return nil, fmt.Errorf("fsm: decode entry: not an import entry")
	}
	return e, err
}

// decodeImport decodes the body of a version 2 envelope.
func decodeImport(body []byte) (*ImportEntry, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("import entry without a kind")
	}
	k := ImportKind(body[0])
	d, ok := importKinds[k]
	if !ok {
		return nil, fmt.Errorf("unknown import entry kind %d", body[0])
	}
	m := d.msg()
	if err := m.Unmarshal(body[1:]); err != nil {
		return nil, fmt.Errorf("%v: %w", k, err)
	}
	return &ImportEntry{Kind: k, Msg: m}, nil
}

// ImportRelease returns the release that introduced kind k ("" for a kind
// this release does not apply).
func ImportRelease(k ImportKind) string {
	d, ok := importKinds[k]
	if !ok {
		return ""
	}
	return entryReleases[d.name]
}

// ValidateImport checks an import entry as a door receives it, reading
// nothing but the entry: its message is set and holds what its kind
// needs. Safe for concurrent use.
func ValidateImport(e *ImportEntry, l Limits) error {
	if !e.wellTyped() {
		return fmt.Errorf("%w: %v without its message", ErrImportInvalid, e.Kind)
	}
	switch m := e.Msg.(type) {
	case *pb.LeaseTimeToLiveResponse:
		if m.ID == 0 || m.GrantedTTL < 1 || m.GrantedTTL > MaxLeaseTTL {
			return fmt.Errorf("%w: lease %x with granted TTL %d", ErrImportInvalid, m.ID, m.GrantedTTL)
		}
	case *pb.RangeResponse:
		if m.Header == nil {
			return fmt.Errorf("%w: keys without a revision", ErrImportInvalid)
		}
		for _, kv := range m.Kvs {
			if err := validateImportKV(kv, l); err != nil {
				return err
			}
		}
	case *pb.WatchResponse:
		if m.Header == nil || len(m.Events) == 0 {
			return fmt.Errorf("%w: events without a revision or without events", ErrImportInvalid)
		}
		for _, ev := range m.Events {
			if ev.Kv == nil {
				return fmt.Errorf("%w: event without a key", ErrImportInvalid)
			}
			if ev.Type == 0 { // PUT
				if err := validateImportKV(ev.Kv, l); err != nil {
					return err
				}
			} else if len(ev.Kv.Key) == 0 {
				return ErrEmptyKey
			}
		}
	case *pb.LeaseLeasesResponse:
		if m.Header == nil {
			return fmt.Errorf("%w: finish without a revision", ErrImportInvalid)
		}
	}
	return nil
}
