// Package rpc serves etcd's v3 API over gRPC and over etcd's HTTP/JSON
// gateway, on one port, in front of a Backend (a node). It validates
// requests as etcd's server does (with fsm's Validate functions, which the
// peer service runs too), fills response headers, runs each watch
// stream, and maps errors to etcd's codes and texts (errors.go): nothing
// outside this package knows about gRPC status codes.
package rpc
