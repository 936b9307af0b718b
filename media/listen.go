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

// ListenRTP binds a pair of UDP sockets on ip (all addresses if ip is the
// zero Addr): rtp at a random even port in 16384-32766 and rtcp at the
// port above it, where RFC 3550 §11 puts RTCP.
func ListenRTP(ip netip.Addr) (rtp, rtcp *net.UDPConn, err error) {
	network := "udp"
	switch {
	case ip.Is4() || ip.Is4In6():
		ip, network = ip.Unmap(), "udp4"
	case ip.Is6():
		network = "udp6"
	}
	listen := func(port uint16) (*net.UDPConn, error) {
		addr := &net.UDPAddr{Port: int(port)}
		if ip.IsValid() {
			addr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port))
		}
		return net.ListenUDP(network, addr)
	}
	var lastErr error
	for range listenAttempts {
		port := uint16(rtpPortMin + 2*rand.IntN((rtpPortMax-rtpPortMin)/2+1))
		rtp, err := listen(port)
		if err == nil {
			rtcp, err = listen(port + 1)
			if err == nil {
				return rtp, rtcp, nil
			}
			rtp.Close()
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("media: listen rtp: %w", err)
		}
		lastErr = err
	}
	return nil, nil, fmt.Errorf("media: listen rtp on %v: no free port pair after %d attempts: %w", ip, listenAttempts, lastErr)
}
