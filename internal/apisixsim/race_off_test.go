//go:build !race

package apisixsim

const raceEnabled = false
