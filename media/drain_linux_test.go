//go:build linux && !386

package media

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

type datagram struct {
	b    string
	from netip.AddrPort
	at   time.Time
}

func collect(got *[]datagram) func([]byte, netip.AddrPort, time.Time) {
	return func(b []byte, from netip.AddrPort, at time.Time) {
		*got = append(*got, datagram{string(b), from, at})
	}
}

func udpPeer(t *testing.T, network, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Skipf("no %s on %s: %v", network, ip, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a broken send fails the test rather than hang it
	return c
}

func newTestSocket(t *testing.T, c *net.UDPConn) *rtpSocket {
	t.Helper()
	s, err := newRTPSocket(c, make([]byte, maxPacket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

// TestRTPSocketDrain checks that a drain takes in every datagram waiting,
// in order, with its source and its kernel receive time on the given
// clock, and that the socket has left c.
func TestRTPSocketDrain(t *testing.T) {
	conn, _ := listen(t, "127.0.0.1")
	s := newTestSocket(t, conn)
	if _, err := conn.Write([]byte{1}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("conn after newRTPSocket: %v, want closed", err)
	}
	peer := udpPeer(t, "udp4", "127.0.0.1")
	for _, p := range []string{"one", "two", "three"} {
		if _, err := peer.WriteToUDPAddrPort([]byte(p), localAddr(conn)); err != nil {
			t.Fatal(err)
		}
	}
	var got []datagram
	now := epoch
	stamped := 0
	if err := s.drain(now, func(b []byte, from netip.AddrPort, at time.Time) {
		if _, ok := s.stamp(); ok {
			stamped++
		}
		collect(&got)(b, from, at)
	}); err != nil {
		t.Fatal(err)
	}
	switch {
	case !s.stampsArrivals():
		// qemu-user, which the arm tests run under, refuses them.
		t.Log("the kernel refused SO_TIMESTAMPNS: no receive times to check")
	case stamped != 3:
		t.Errorf("%d of 3 datagrams came with a receive time", stamped)
	}
	if len(got) != 3 {
		t.Fatalf("drained %d datagrams, want 3", len(got))
	}
	for i, want := range []string{"one", "two", "three"} {
		d := got[i]
		if d.b != want || d.from != localAddr(peer) {
			t.Errorf("datagram %d: %q from %v, want %q from %v", i, d.b, d.from, want, localAddr(peer))
		}
		// Loopback delivered it before the drain began: by the kernel's
		// stamp it is a little older than now. (The kernel turns receive
		// stamps on a moment after the first socket asks; until then it
		// stamps when the datagram is read, and the age is 0.)
		if d.at.After(now) || now.Sub(d.at) >= maxStampAge {
			t.Errorf("datagram %d arrived at now%+v", i, d.at.Sub(now))
		}
		if i > 0 && d.at.Before(got[i-1].at) {
			t.Errorf("datagram %d arrived before the one sent ahead of it", i)
		}
	}
	got = got[:0]
	if err := s.drain(now, collect(&got)); err != nil || len(got) != 0 {
		t.Fatalf("second drain: %d datagrams, %v", len(got), err)
	}

	if err := s.send([]byte("back"), localAddr(peer)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "back" || from != localAddr(conn) {
		t.Fatalf("peer read %q from %v, %v", buf[:n], from, err)
	}

	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if err := s.drain(now, collect(&got)); err == nil {
		t.Error("drain after close succeeded")
	}
	if err := s.send([]byte("x"), localAddr(peer)); err == nil {
		t.Error("send after close succeeded")
	}
}

// TestRTPSocketDualStack checks sending from the wildcard socket ListenRTP
// binds for no address, to IPv4 (v4-mapped) and IPv6 peers.
func TestRTPSocketDualStack(t *testing.T) {
	conn, rtcp, err := ListenRTP(netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	rtcp.Close()
	port := localAddr(conn).Port()
	s := newTestSocket(t, conn)
	for _, tc := range []struct{ network, ip string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		peer := udpPeer(t, tc.network, tc.ip)
		if err := s.send([]byte(tc.ip), localAddr(peer)); err != nil {
			t.Fatalf("send to %v: %v", localAddr(peer), err)
		}
		buf := make([]byte, 16)
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != tc.ip || from.Port() != port {
			t.Fatalf("%s peer read %q from %v, %v", tc.network, buf[:n], from, err)
		}
		if _, err := peer.WriteToUDPAddrPort([]byte("re"), netip.AddrPortFrom(netip.MustParseAddr(tc.ip), port)); err != nil {
			t.Fatal(err)
		}
		var got []datagram
		if err := s.drain(epoch, collect(&got)); err != nil || len(got) != 1 || got[0].from.Addr().Unmap() != localAddr(peer).Addr() {
			t.Fatalf("drained %+v, %v; want one from %v", got, err, localAddr(peer))
		}
	}
}

func TestRTPSocketWrongFamily(t *testing.T) {
	conn, _ := listen(t, "127.0.0.1")
	s := newTestSocket(t, conn)
	if err := s.send([]byte("x"), netip.MustParseAddrPort("[2001:db8::1]:9")); err == nil {
		t.Fatal("an IPv4 socket sent to an IPv6 address")
	}
	// A bad destination leaves the socket working.
	peer := udpPeer(t, "udp4", "127.0.0.1")
	if err := s.send([]byte("x"), localAddr(peer)); err != nil {
		t.Fatal(err)
	}
}

func TestArrivedAt(t *testing.T) {
	now, wall := epoch, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		stamp time.Time
		want  time.Time
	}{
		{wall.Add(-5 * time.Millisecond), now.Add(-5 * time.Millisecond)},
		{wall.Add(-maxStampAge + time.Nanosecond), now.Add(-maxStampAge + time.Nanosecond)},
		{wall, now},                   // no age
		{wall.Add(time.Hour), now},    // the wall clock went back since
		{wall.Add(-maxStampAge), now}, // or forward
		{wall.Add(-24 * time.Hour), now},
	} {
		if got := arrivedAt(now, wall, tc.stamp); !got.Equal(tc.want) {
			t.Errorf("stamp wall%+v: arrived at now%+v, want now%+v", tc.stamp.Sub(wall), got.Sub(now), tc.want.Sub(now))
		}
	}
}

// TestRTPSocketAllocs checks that a frame's send and drain allocate
// nothing.
func TestRTPSocketAllocs(t *testing.T) {
	conn, _ := listen(t, "127.0.0.1")
	s := newTestSocket(t, conn)
	self := localAddr(conn)
	pkt := audioPacket(1, 0, 1000)
	n := 0
	count := func([]byte, netip.AddrPort, time.Time) { n++ }
	allocs := testing.AllocsPerRun(100, func() {
		if err := s.send(pkt, self); err != nil {
			t.Fatal(err)
		}
		if err := s.drain(epoch, count); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || n != 101 {
		t.Fatalf("%v allocations per frame, %d datagrams drained of 101", allocs, n)
	}
}

// BenchmarkRTPSocket measures a frame's socket work: one datagram out
// (here to itself) and the socket drained.
func BenchmarkRTPSocket(b *testing.B) {
	c, _ := listen(b, "127.0.0.1")
	s, err := newRTPSocket(c, make([]byte, maxPacket))
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	self := localAddr(c)
	pkt := audioPacket(1, 0, 1000)
	count := func([]byte, netip.AddrPort, time.Time) {}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.send(pkt, self); err != nil {
			b.Fatal(err)
		}
		if err := s.drain(epoch, count); err != nil {
			b.Fatal(err)
		}
	}
}
