package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
)

// clientTLS builds the client port's TLS configuration from etcd's flags,
// when a client URL is https:// (nil otherwise).
func clientTLS(o *options, listen []string, log *slog.Logger) (*tls.Config, error) {
	secure := false
	for _, u := range listen {
		secure = secure || strings.HasPrefix(u, "https://")
	}
	if !secure {
		if o.certFile != "" || o.keyFile != "" || o.clientCertAuth {
			log.Warn("no https:// client URL: ignoring --cert-file, --key-file and --client-cert-auth", "listen_client_urls", strings.Join(listen, ","))
		}
		return nil, nil
	}
	if o.certFile == "" || o.keyFile == "" {
		return nil, fmt.Errorf("TLS key/cert (--cert-file, --key-file) must be provided for client url %s", strings.Join(listen, ","))
	}
	return rpc.ClientTLS{CertFile: o.certFile, KeyFile: o.keyFile, TrustedCAFile: o.trustedCAFile, ClientCertAuth: o.clientCertAuth}.Config()
}

// peerTLS builds the peer port's mTLS configuration from etcd's flags;
// the files are re-read when they change.
func peerTLS(o *options) (*tls.Config, error) {
	if o.peerCertFile == "" && o.peerKeyFile == "" && o.peerTrustedCAFile == "" {
		return nil, nil
	}
	if o.peerCertFile == "" || o.peerKeyFile == "" || o.peerTrustedCAFile == "" {
		return nil, errors.New("--peer-cert-file, --peer-key-file and --peer-trusted-ca-file go together")
	}
	cfg, err := rpc.ClientTLS{CertFile: o.peerCertFile, KeyFile: o.peerKeyFile, TrustedCAFile: o.peerTrustedCAFile}.MutualConfig()
	if err != nil {
		return nil, fmt.Errorf("peer TLS: %w", err)
	}
	return cfg, nil
}

// clusterKey reads --cluster-key-file: its bytes, without the line end an
// editor or `echo` adds.
func clusterKey(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--cluster-key-file: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < node.MinClusterKeyBytes {
		return nil, fmt.Errorf("--cluster-key-file %s: the key must be at least %d bytes, got %d", path, node.MinClusterKeyBytes, len(b))
	}
	return b, nil
}

// memberAuth names how members authenticate each other, for the start-up
// log line (never the key itself).
func memberAuth(c node.Config) string {
	switch {
	case c.Gossip == nil:
		return "none (a lone member)"
	case c.PeerTLS != nil && len(c.ClusterKey) > 0:
		return "peer mTLS; gossip encrypted with the cluster key"
	case c.PeerTLS != nil && len(c.Gossip.SecretKey) > 0:
		return "peer mTLS; gossip encrypted with --gossip-key"
	case c.PeerTLS != nil:
		return "peer mTLS; gossip not encrypted"
	case len(c.ClusterKey) > 0:
		return "cluster key"
	}
	return "none (--trusted-peer-network)"
}

// gossipConfig builds gossip's configuration from the flags (nil without
// --gossip-addr).
func gossipConfig(o *options, log *slog.Logger) (*cluster.Config, error) {
	if o.gossipAddr == "" {
		if o.join != "" || o.bootstrapExpect > 1 {
			return nil, errors.New("--join and --bootstrap-expect need --gossip-addr")
		}
		return nil, nil
	}
	gc := &cluster.Config{BindAddr: o.gossipAddr, AdvertiseAddr: o.advertiseGossipAddr, Join: splitList(o.join), Logger: log}
	if o.gossipKey != "" {
		if o.clusterKeyFile != "" {
			return nil, errors.New("--gossip-key and --cluster-key-file: give one (the cluster key encrypts gossip too)")
		}
		key, err := base64.StdEncoding.DecodeString(o.gossipKey)
		if err != nil {
			return nil, fmt.Errorf("--gossip-key: not base64: %w", err)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("--gossip-key: the key must be 16, 24 or 32 bytes, got %d", n)
		}
		gc.SecretKey = key
	}
	return gc, nil
}
