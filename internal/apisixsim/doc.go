// Package apisixsim is a Go client that behaves like Apache APISIX 3.x and
// its etcd library, lua-resty-etcd, on the wire: HTTP/1.1 and JSON through
// etcd's gRPC gateway, never gRPC.
//
// It has four parts, each following /work/shared/APISIX.md:
//
//   - Client: the lua-resty-etcd transport (§1). Every call is a POST with a
//     JSON body and no Content-Type; keys and values are standard padded
//     base64; endpoints are used round-robin from a random offset, an
//     endpoint is marked unhealthy after a transport error or an HTTP status
//     of 500 or more, and a call is retried on the next endpoint.
//   - CheckVersions and InitDir: what "apisix start" does (§2).
//   - DataPlane: the data-plane configuration sync of APISIX 3.18 (§3): one
//     full range of the prefix, grouped as create_formatter does, then one
//     long-lived watch handled with the rules of config_etcd.lua.
//   - Admin: the Admin API's etcd operations (§4).
//
// The simulator records what APISIX would have logged as an error
// (Anomalies), the header revisions it saw and the full reloads it made, so
// tests can assert that an etcd-compatible server never makes APISIX resync
// or lose updates.
package apisixsim
