package node

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Member authentication. The peer port (raft and the internal service) and
// gossip accept only members. Operators give either certificates (peer
// mTLS, PeerTLS) or one shared secret, the cluster key. From the key every
// member derives the same two things, so no certificate has to be made or
// distributed:
//   - a CA whose signing key is derived from the cluster key: each member
//     signs a fresh certificate of its own with it at start, and trusts
//     only that CA, so the peer port runs mutual TLS 1.3 and a process
//     without the key can neither connect to a member nor be connected to;
//   - memberlist's gossip encryption key, so gossip without the key is
//     dropped and a stranger is never even seen.
// Knowing the key is being a member: keep it like a password.

// MinClusterKeyBytes is the shortest cluster key accepted.
const MinClusterKeyBytes = 16

// peerServerName is the name every member's key-derived certificate is
// issued for; a member dialing another checks it instead of the address.
const peerServerName = "etcdsql-peer"

// Labels of the keys derived from the cluster key. A new label (another
// version) gives unrelated keys: members that derive differently refuse
// each other, they never half-understand each other.
const (
	labelPeerCA    = "etcdsql peer CA v1"
	labelGossipKey = "etcdsql gossip key v1"
)

var errShortClusterKey = fmt.Errorf("the cluster key must be at least %d bytes", MinClusterKeyBytes)

// deriveKey derives n bytes for one purpose from the cluster key.
func deriveKey(clusterKey []byte, label string, n int) ([]byte, error) {
	if len(clusterKey) < MinClusterKeyBytes {
		return nil, errShortClusterKey
	}
	return hkdf.Key(sha256.New, clusterKey, nil, label, n)
}

// GossipKey is the memberlist encryption key (AES-256) derived from the
// cluster key.
func GossipKey(clusterKey []byte) ([]byte, error) {
	return deriveKey(clusterKey, labelGossipKey, 32)
}

// clusterCA is the CA every member derives from the cluster key. Every
// field is fixed and ed25519 signs deterministically, so every member
// builds the same certificate.
func clusterCA(clusterKey []byte) (*x509.Certificate, ed25519.PrivateKey, error) {
	seed, err := deriveKey(clusterKey, labelPeerCA, ed25519.SeedSize)
	if err != nil {
		return nil, nil, err
	}
	caKey := ed25519.NewKeyFromSeed(seed)
	caPub := caKey.Public().(ed25519.PublicKey)
	ski := sha256.Sum256(caPub)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "etcdsql cluster key CA"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		SubjectKeyId:          ski[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caPub, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("node: cluster key CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("node: cluster key CA: %w", err)
	}
	return ca, caKey, nil
}

// ClusterKeyTLS returns the peer port's TLS configuration derived from the
// cluster key: mutual TLS 1.3 with a certificate of this member's own,
// signed by the CA every member derives from the key, which is the only
// CA trusted. It serves as both the server's and the client's config.
func ClusterKeyTLS(clusterKey []byte) (*tls.Config, error) {
	ca, caKey, err := clusterCA(clusterKey)
	if err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	leafTmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: peerServerName},
		DNSNames:     []string{peerServerName},
		NotBefore:    now.Add(-time.Hour), // members' clocks differ a little
		NotAfter:     now.Add(100 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("node: member certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER, ca.Raw}, PrivateKey: priv}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   peerServerName,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// errNoMemberAuth refuses a cluster whose members cannot tell each other
// from strangers.
var errNoMemberAuth = errors.New("members of a cluster must authenticate each other: give a cluster key (--cluster-key-file) " +
	"or peer certificates (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file); " +
	"or, if only members can reach the peer and gossip ports, say so with --trusted-peer-network")

// peerTLSConfig is the TLS of the peer port: the given certificates, else
// the cluster key's, else none (a lone member, or a trusted network).
func (c Config) peerTLSConfig() (*tls.Config, error) {
	switch {
	case c.PeerTLS != nil:
		return c.PeerTLS, nil
	case len(c.ClusterKey) > 0:
		return ClusterKeyTLS(c.ClusterKey)
	}
	return nil, nil
}
