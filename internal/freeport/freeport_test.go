package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreDistinctBindableAndBelowTheEphemeralRange(t *testing.T) {
	// Separate calls, as each member of a test cluster makes one, never
	// return the same port: none is bound between the calls.
	var ports []int
	for range 200 {
		p, err := Ports(3)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p...)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d picked twice", p)
		}
		seen[p] = true
		if p >= ephemeralLow() || p < 10000 {
			t.Errorf("port %d outside [10000, %d)", p, ephemeralLow())
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d: %v", p, err)
			continue
		}
		l.Close()
	}
}
