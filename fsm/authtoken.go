package fsm

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Tokens. Authenticate checks a password on the member that takes the
// request and answers a token that every member verifies without asking
// another: an HMAC-SHA256 signature, with the signing key the auth enable
// entry replicated, of the user's name, the token's expiry and a digest of
// the user's password hash. A password change or the user's deletion
// (new hash, or none) invalidates the user's tokens; a disable and a new
// enable (a new key) invalidates every token, as etcd's simple tokens are.
// Unlike simple tokens, a token's lifetime is fixed at issue and not
// extended by use. Safe for concurrent use.

// SigningKeyBytes is the length of the token signing key.
const SigningKeyBytes = 32

// NewSigningKey returns a fresh random signing key, as the member that
// proposes an auth enable makes it.
func NewSigningKey() (string, error) {
	k := make([]byte, SigningKeyBytes)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return string(k), nil
}

// AuthStatus returns the auth switch and etcd's auth revision (a store
// that never changed reports 1, as a fresh etcd does).
func (s *Store) AuthStatus() (enabled bool, revision uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.authOn, s.authRev + 1
}

// WaitAuthRevision waits, within ctx, until the store's auth revision (as
// AuthStatus reports it) is at least rev: a leader checking a request a
// follower already checked at rev first applies what the follower had.
// Safe for concurrent use.
func (s *Store) WaitAuthRevision(ctx context.Context, rev uint64) error {
	for {
		applied := s.AppliedWait()
		if _, cur := s.AuthStatus(); cur >= rev {
			return nil
		}
		select {
		case <-applied:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CheckPassword checks a user's password with bcrypt, outside the store's
// lock, and returns the hash it matched for IssueToken.
func (s *Store) CheckPassword(name, password string) ([]byte, error) {
	s.mu.RLock()
	on, u := s.authOn, s.users[name]
	s.mu.RUnlock()
	if !on {
		return nil, ErrAuthNotEnabled
	}
	if u == nil || (u.Options != nil && u.Options.NoPassword) || len(u.Password) == 0 {
		return nil, ErrAuthFailed
	}
	if bcrypt.CompareHashAndPassword(u.Password, []byte(password)) != nil {
		return nil, ErrAuthFailed
	}
	return u.Password, nil
}

// IssueToken returns a token for name, valid until expiry, if name's
// password hash is still hash and authentication is still enabled.
func (s *Store) IssueToken(name string, hash []byte, expiry time.Time) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[name]
	if !s.authOn {
		return "", ErrAuthNotEnabled
	}
	if u == nil || !hmac.Equal(u.Password, hash) {
		return "", ErrAuthFailed
	}
	payload := make([]byte, 16, 16+len(name))
	binary.BigEndian.PutUint64(payload, uint64(expiry.Unix()))
	copy(payload[8:], hashDigest(hash))
	payload = append(payload, name...)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(sign(s.authKey, payload)), nil
}

// CheckToken returns the user a token names and the auth revision it is
// checked at, or ErrInvalidAuthToken.
func (s *Store) CheckToken(token string, now time.Time) (string, uint64, error) {
	p, sig, ok := strings.Cut(token, ".")
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p)
	mac, err2 := enc.DecodeString(sig)
	if !ok || err1 != nil || err2 != nil || len(payload) < 16 {
		return "", 0, ErrInvalidAuthToken
	}
	name := string(payload[16:])
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.authOn || !hmac.Equal(mac, sign(s.authKey, payload)) {
		return "", 0, ErrInvalidAuthToken
	}
	if now.Unix() >= int64(binary.BigEndian.Uint64(payload)) {
		return "", 0, ErrInvalidAuthToken
	}
	u := s.users[name]
	if u == nil || !hmac.Equal(payload[8:16], hashDigest(u.Password)) {
		return "", 0, ErrInvalidAuthToken
	}
	return name, s.authRev + 1, nil
}

func sign(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(payload)
	return m.Sum(nil)
}

// hashDigest is 8 bytes of a password hash's SHA-256: a token names the
// password it was issued for without carrying the hash.
func hashDigest(hash []byte) []byte {
	d := sha256.Sum256(hash)
	return d[:8]
}
