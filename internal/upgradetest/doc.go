// Package upgradetest runs clusters that mix etcdsql releases, to prove
// that a rolling upgrade, and a rollback, goes unnoticed by clients.
//
// Release builds the binary of a release named in RELEASES from the
// repository's own history (git archive of its commit, built in a
// temporary directory, so the checkout is never touched); Current builds
// this tree. Both are built once per test binary. Without the history (no
// git, or a shallow clone) the tests skip, saying so; under CI=true they
// fail instead, since CI's clone must carry every release.
//
// Cluster runs members as processes and replaces a member's binary on the
// same data dir and ports (SIGTERM, then the other binary). The tests put
// APISIX's load on a cluster while it goes from v0.1.0 to this tree and back,
// and check that no write, event or revision is lost on the way.
package upgradetest
