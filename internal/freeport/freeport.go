// Package freeport picks loopback ports for tests that must name their
// ports before they bind them (members that list each other, processes).
package freeport

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// given holds every port this process has handed out: a port picked for
// one member and not yet bound must not be picked again for another.
var given = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Ports returns n ports on 127.0.0.1, each free for TCP and UDP a moment
// ago and never returned before in this process. They are picked below the kernel's ephemeral range: outgoing
// connections (to MariaDB, between members) take their local ports from
// that range, and would otherwise take a picked port before its test binds
// it.
func Ports(n int) ([]int, error) {
	lo, hi := 10000, ephemeralLow()-1
	if hi-lo < 1000 {
		return nil, fmt.Errorf("freeport: no room below the ephemeral range (%d)", hi+1)
	}
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	given.Lock()
	defer given.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			return nil, errors.New("freeport: no free port found in 1,000 tries")
		}
		p := lo + rand.IntN(hi-lo+1)
		if given.ports[p] {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(p)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			l.Close()
			continue
		}
		held = append(held, l, u)
		given.ports[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// ephemeralLow returns the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil {
				return lo
			}
		}
	}
	return 32768 // Linux's default
}
