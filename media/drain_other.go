//go:build !linux || 386

package media

import (
	"net"
	"net/netip"
	"time"
)

// drainsSocket says that the frame loop leaves reading the RTP socket to a
// goroutine: without kernel receive times, only a reader blocked on the
// socket knows when a packet arrived.
const drainsSocket = false

// rtpSocket sends through the net package here; receiveLoop reads.
type rtpSocket struct{ c *net.UDPConn }

func newRTPSocket(c *net.UDPConn, _ []byte) (*rtpSocket, error) { return &rtpSocket{c: c}, nil }

// stampsArrivals is true: receiveLoop times each packet as it comes.
func (*rtpSocket) stampsArrivals() bool { return true }

// close closes the socket, which ends receiveLoop's read.
func (s *rtpSocket) close() error { return s.c.Close() }

func (s *rtpSocket) send(b []byte, dest netip.AddrPort) error {
	_, err := s.c.WriteToUDPAddrPort(b, dest)
	return err
}

// drain has nothing to do: receiveLoop takes the packets in.
func (*rtpSocket) drain(time.Time, func(b []byte, from netip.AddrPort, at time.Time)) error {
	return nil
}
