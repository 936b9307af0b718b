package device

import (
	"fmt"
	"net"
)

var _ Rearmer = (*rtpStream)(nil)

// Rearm binds the RTP and RTCP ports again, which a Run closes when it
// ends, so that the next Run keeps the port pair named in the SDP offer.
func (s *rtpStream) Rearm() error {
	rtpAddr := s.conn.LocalAddr().(*net.UDPAddr)
	rtcpAddr := s.rtcpConn.LocalAddr().(*net.UDPAddr)
	// Run has closed both already, except when it never started.
	_ = s.closeConns()
	network := "udp6"
	switch {
	case rtpAddr.IP.To4() != nil:
		network = "udp4"
	case rtpAddr.IP.IsUnspecified():
		network = "udp" // media.ListenRTP's dual-stack wildcard
	}
	conn, err := net.ListenUDP(network, rtpAddr)
	if err != nil {
		return fmt.Errorf("device: rebind rtp: %w", err)
	}
	rtcpConn, err := net.ListenUDP(network, rtcpAddr)
	if err != nil {
		conn.Close()
		return fmt.Errorf("device: rebind rtcp: %w", err)
	}
	s.conn, s.rtcpConn = conn, rtcpConn
	return nil
}
