//go:build race

package upgradetest

// raceEnabled is true when the race detector is on: scale tests, which the
// detector slows tenfold, run only in the plain pass of make test.
const raceEnabled = true
