package media

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
)

// The RTP port range: even ports, as RTP uses by convention (RFC 3550
// §11), within the range many PBXes and firewalls expect.
const (
	rtpPortMin     = 16384
	rtpPortMax     = 32766
	listenAttempts = 64
)

// ListenRTP binds a UDP socket for RTP on ip (all addresses if ip is the
// zero Addr) at a random even port in 16384-32766.
func ListenRTP(ip netip.Addr) (*net.UDPConn, error) {
	network := "udp"
	switch {
	case ip.Is4() || ip.Is4In6():
		ip, network = ip.Unmap(), "udp4"
	case ip.Is6():
		network = "udp6"
	}
	var lastErr error
	for range listenAttempts {
		port := uint16(rtpPortMin + 2*rand.IntN((rtpPortMax-rtpPortMin)/2+1))
		var addr *net.UDPAddr
		if ip.IsValid() {
			addr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port))
		} else {
			addr = &net.UDPAddr{Port: int(port)}
		}
		conn, err := net.ListenUDP(network, addr)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("media: listen rtp: %w", err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("media: listen rtp on %v: no free port after %d attempts: %w", ip, listenAttempts, lastErr)
}
