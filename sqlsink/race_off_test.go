//go:build !race

package sqlsink

const raceEnabled = false
