//go:build !race

package upgradetest

const raceEnabled = false
