package etcdbackend

import (
	"crypto/sha256"
	"fmt"
	"hash"

	"go.etcd.io/bbolt"
)

// ChunkBytes is the size of the chunks Stream sends: etcd's.
const ChunkBytes = 32 * 1024

// Stream sends the database at path as etcd's Maintenance.Snapshot does:
// one consistent read of it, in chunks of at most ChunkBytes, each with the
// number of database bytes still to come, and then the sha256 sum of those
// bytes with 0 to come. The chunk passed to send is reused once send
// returns. It returns the size of the database sent (the sum excluded).
func Stream(path string, send func(blob []byte, remaining uint64) error) (int64, error) {
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: openTimeout})
	if err != nil {
		return 0, fmt.Errorf("etcdbackend: open %s: %w", path, err)
	}
	defer db.Close()
	tx, err := db.Begin(false)
	if err != nil {
		return 0, fmt.Errorf("etcdbackend: read %s: %w", path, err)
	}
	defer tx.Rollback()
	c := &chunker{send: send, left: tx.Size(), buf: make([]byte, 0, ChunkBytes), sum: sha256.New()}
	n, err := tx.WriteTo(c)
	if err == nil {
		err = c.flush()
	}
	if err == nil && c.left != 0 {
		err = fmt.Errorf("database of %d bytes ended %d bytes early", tx.Size(), c.left)
	}
	if err == nil {
		err = send(c.sum.Sum(nil), 0)
	}
	if err != nil {
		return n, fmt.Errorf("etcdbackend: send %s: %w", path, err)
	}
	return n, nil
}

// chunker cuts what bbolt writes into chunks and sums it.
type chunker struct {
	send func([]byte, uint64) error
	left int64 // database bytes not yet sent
	buf  []byte
	sum  hash.Hash
}

func (c *chunker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), cap(c.buf)-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	c.left -= int64(len(c.buf))
	if c.left < 0 {
		return fmt.Errorf("database grew past its size while being sent")
	}
	c.sum.Write(c.buf)
	err := c.send(c.buf, uint64(c.left))
	c.buf = c.buf[:0]
	return err
}
