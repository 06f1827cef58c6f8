package fsm

import (
	"bufio"
	"fmt"
	"io"

	"go.etcd.io/etcd/api/v3/authpb"
)

// The auth section of a version 3 snapshot: the number of users, each a
// length-prefixed authpb.User (its bcrypt hash included), then the number
// of roles, each a length-prefixed authpb.Role; every count and length an
// unsigned varint. Both lists are in name order. Then the auth switch (0
// or 1), the auth revision and the length-prefixed signing key.

func writeAuth(w io.Writer, putU func(uint64), a AuthState) error {
	putU(uint64(len(a.Users)))
	for _, u := range a.Users {
		b, err := u.Marshal()
		if err != nil {
			return fmt.Errorf("fsm: snapshot: user: %w", err)
		}
		putU(uint64(len(b)))
		w.Write(b) // a failed write is kept by the countWriter
	}
	putU(uint64(len(a.Roles)))
	for _, r := range a.Roles {
		b, err := r.Marshal()
		if err != nil {
			return fmt.Errorf("fsm: snapshot: role: %w", err)
		}
		putU(uint64(len(b)))
		w.Write(b)
	}
	on := uint64(0)
	if a.Enabled {
		on = 1
	}
	putU(on)
	putU(a.Revision)
	putU(uint64(len(a.Key)))
	w.Write(a.Key)
	return nil
}

// readAuth reads the auth section; getU panics on a short read, as the
// rest of Restore expects.
func readAuth(br *bufio.Reader, getU func() uint64) (AuthState, error) {
	var a AuthState
	read := func() ([]byte, error) {
		b := make([]byte, getU())
		_, err := io.ReadFull(br, b)
		return b, err
	}
	for n := getU(); n > 0; n-- {
		b, err := read()
		if err != nil {
			return a, err
		}
		u := &authpb.User{}
		if err := u.Unmarshal(b); err != nil {
			return a, err
		}
		a.Users = append(a.Users, u)
	}
	for n := getU(); n > 0; n-- {
		b, err := read()
		if err != nil {
			return a, err
		}
		r := &authpb.Role{}
		if err := r.Unmarshal(b); err != nil {
			return a, err
		}
		a.Roles = append(a.Roles, r)
	}
	a.Enabled = getU() == 1
	a.Revision = getU()
	key, err := read()
	if len(key) > 0 {
		a.Key = key
	}
	return a, err
}
