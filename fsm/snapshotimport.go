package fsm

// The import section of a version 4 snapshot, after the auth section: 1,
// the source cluster's ID and the key space's source revision while the
// store imports (0, 0 and 0 when not),
// then the number of leases with an imported remaining TTL and, for each
// in ID order, its ID and its remaining seconds; then the number of import
// resets applied; every number an unsigned varint.

// importSection reports whether the snapshot needs version 4.
func (snap *Snapshot) importSection() bool {
	if snap.imp != nil || snap.wipes > 0 {
		return true
	}
	for _, l := range snap.leases {
		if l.Remaining > 0 {
			return true
		}
	}
	return false
}

func (snap *Snapshot) writeImport(putU func(uint64)) {
	if snap.imp != nil {
		putU(1)
		putU(snap.imp.source)
		putU(uint64(snap.imp.base))
	} else {
		putU(0)
		putU(0)
		putU(0)
	}
	n := 0
	for _, l := range snap.leases {
		if l.Remaining > 0 {
			n++
		}
	}
	putU(uint64(n))
	for _, l := range snap.leases {
		if l.Remaining > 0 {
			putU(uint64(l.ID))
			putU(uint64(l.Remaining))
		}
	}
	putU(snap.wipes)
}

// readImport reads the import section into a store being restored; getU
// panics on a short read, as the rest of Restore expects.
func (s *Store) readImport(getU func() uint64) {
	importing, source, base := getU(), getU(), int64(getU())
	if importing == 1 {
		s.imp = &importState{source: source, base: base}
	}
	for n := getU(); n > 0; n-- {
		id, left := int64(getU()), int64(getU())
		if l, ok := s.leases[id]; ok {
			l.remaining = left
		}
	}
	s.wipes = getU()
}
