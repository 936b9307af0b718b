//go:build linux && !386

package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// drainsSocket says that the frame loop reads the RTP socket itself: no
// goroutine waits on it.
const drainsSocket = true

// rtpSocket is the frame loop's side of the RTP socket. It reads the
// datagrams waiting without blocking, each with the kernel's receive time
// (SO_TIMESTAMPNS, socket(7)): the loop serves the socket once per frame,
// and the jitter buffer still sees when each packet arrived, not when the
// loop got to it.
//
// The socket leaves the runtime's network poller: the poller would wake a
// thread for every datagram in and every send completing, to tell nobody,
// since no goroutine waits on this socket. Neither reading nor sending can
// block, so both are raw system calls (see recv).
type rtpSocket struct {
	f    *os.File // the socket, in blocking mode so that os keeps it off the poller
	rc   syscall.RawConn
	buf  []byte
	name syscall.RawSockaddrAny
	oob  [64]byte // room for one SCM_TIMESTAMPNS message on any word size
	iov  syscall.Iovec
	msg  syscall.Msghdr
	n    int
	err  syscall.Errno
	read func(fd uintptr) bool // d.recv, bound once so that draining does not allocate

	stamped bool // the kernel stamps receive times
	inet6   bool // the socket is AF_INET6, maybe dual-stack: IPv4 goes v4-mapped
	dest    netip.AddrPort
	to      syscall.RawSockaddrInet6 // dest as a sockaddr; big enough for either family
	toLen   uintptr
	out     []byte
	write   func(fd uintptr) bool // d.sendto, bound once like read
}

// newRTPSocket takes c's socket over, receiving into buf, and closes c.
// c is closed even when it fails.
func newRTPSocket(c *net.UDPConn, buf []byte) (*rtpSocket, error) {
	d := &rtpSocket{buf: buf}
	nfd := -1
	err := control(c, func(fd uintptr) error {
		// A second descriptor of the socket survives closing c, which
		// takes the socket off the poller.
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			return fmt.Errorf("dup: %w", e)
		}
		nfd = int(r)
		sa, err := syscall.Getsockname(nfd)
		if err != nil {
			return fmt.Errorf("getsockname: %w", err)
		}
		_, d.inet6 = sa.(*syscall.SockaddrInet6)
		// Without receive stamps (an emulator may refuse them), packets
		// count as arrived when the loop reads them: up to a frame late.
		switch err := syscall.SetsockoptInt(nfd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); {
		case err == nil:
			d.stamped = true
		case !errors.Is(err, syscall.ENOPROTOOPT):
			return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
		}
		// Every call passes MSG_DONTWAIT; blocking mode only tells os
		// not to put the descriptor on the poller.
		if err := syscall.SetNonblock(nfd, false); err != nil {
			return fmt.Errorf("blocking mode: %w", err)
		}
		return nil
	})
	if cerr := c.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if nfd >= 0 {
			syscall.Close(nfd)
		}
		return nil, fmt.Errorf("media: rtp socket: %w", err)
	}
	d.f = os.NewFile(uintptr(nfd), "rtp")
	if d.rc, err = d.f.SyscallConn(); err != nil {
		d.f.Close()
		return nil, fmt.Errorf("media: rtp socket: %w", err)
	}
	d.read, d.write = d.recv, d.sendto
	return d, nil
}

// control runs fn on c's descriptor.
func control(c *net.UDPConn, fn func(fd uintptr) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(fd) }); err != nil {
		return err
	}
	return ferr
}

// stampsArrivals reports whether drain knows when each packet arrived,
// rather than when it was read.
func (d *rtpSocket) stampsArrivals() bool { return d.stamped }

// close closes the socket; a send or drain in progress finishes first,
// and later ones fail.
func (d *rtpSocket) close() error { return d.f.Close() }

// send sends b to dest in one datagram.
func (d *rtpSocket) send(b []byte, dest netip.AddrPort) error {
	if dest != d.dest || d.toLen == 0 {
		if err := d.setDest(dest); err != nil {
			return err
		}
	}
	d.out = b
	if err := d.rc.Write(d.write); err != nil {
		return err
	}
	if d.err != 0 {
		return d.err
	}
	return nil
}

// setDest makes dest the sockaddr that sendto sends to.
func (d *rtpSocket) setDest(dest netip.AddrPort) error {
	ip := dest.Addr()
	d.to, d.toLen = syscall.RawSockaddrInet6{}, 0
	switch {
	case d.inet6:
		d.to.Family = syscall.AF_INET6
		d.to.Addr = ip.As16() // an IPv4 address comes out v4-mapped
		if z := ip.Zone(); z != "" {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return fmt.Errorf("media: rtp destination %v: %w", dest, err)
			}
			d.to.Scope_id = uint32(ifi.Index)
		}
		d.toLen = syscall.SizeofSockaddrInet6
	case ip.Unmap().Is4():
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&d.to))
		sa.Family = syscall.AF_INET
		sa.Addr = ip.Unmap().As4()
		d.toLen = syscall.SizeofSockaddrInet4
	default:
		return fmt.Errorf("media: rtp destination %v: not IPv4 like the socket", dest)
	}
	// Both sockaddrs keep the port in the same place, in network order.
	p := (*[2]byte)(unsafe.Pointer(&d.to.Port))
	p[0], p[1] = byte(dest.Port()>>8), byte(dest.Port())
	d.dest = dest
	return nil
}

// sendto makes one sendto(2) attempt; like recv, it cannot block.
func (d *rtpSocket) sendto(fd uintptr) bool {
	_, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&d.out[0])), uintptr(len(d.out)),
		syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&d.to)), d.toLen)
	d.err = e
	return true
}

// recv makes one recvmsg(2) attempt. MSG_DONTWAIT on a UDP socket cannot
// block, so it is a raw system call: the scheduler is not told, which
// would otherwise wake its monitor thread once per frame.
func (d *rtpSocket) recv(fd uintptr) bool {
	d.iov.Base = &d.buf[0]
	d.iov.SetLen(len(d.buf))
	d.msg.Name = (*byte)(unsafe.Pointer(&d.name))
	d.msg.Namelen = uint32(syscall.SizeofSockaddrAny)
	d.msg.Iov = &d.iov
	d.msg.Iovlen = 1
	d.msg.Control = &d.oob[0]
	d.msg.SetControllen(len(d.oob))
	r, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&d.msg)), syscall.MSG_DONTWAIT)
	d.n, d.err = int(r), e
	return true
}

// drain hands every waiting datagram to fn with its source and arrival
// time on now's clock, and returns when the socket is empty.
func (d *rtpSocket) drain(now time.Time, fn func(b []byte, from netip.AddrPort, at time.Time)) error {
	wall := time.Now()
	for {
		if err := d.rc.Read(d.read); err != nil {
			return err
		}
		switch d.err {
		case 0:
		case syscall.EAGAIN:
			return nil
		case syscall.EINTR:
			continue
		default:
			return d.err
		}
		at := now
		if ts, ok := d.stamp(); ok {
			at = arrivedAt(now, wall, ts)
		}
		fn(d.buf[:d.n], d.from(), at)
	}
}

// maxStampAge bounds a believable kernel receive time: a packet waits for
// a frame or so, or for a loop stalled up to maxLag.
const maxStampAge = time.Second

// arrivedAt carries a packet's kernel receive time, stamp, over to the
// session clock: the kernel stamps with the wall clock, which read wall
// when the session clock read now, and the session clock may be monotonic
// or fake. An age out of range means that the wall clock was set
// meanwhile: the packet counts as arrived now.
func arrivedAt(now, wall, stamp time.Time) time.Time {
	if age := wall.Sub(stamp); age > 0 && age < maxStampAge {
		return now.Add(-age)
	}
	return now
}

// stamp returns the receive time of the last datagram, if the kernel
// attached one.
func (d *rtpSocket) stamp() (time.Time, bool) {
	if int(d.msg.Controllen) < syscall.CmsgSpace(int(unsafe.Sizeof(syscall.Timespec{}))) {
		return time.Time{}, false
	}
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&d.oob[0]))
	if h.Level != syscall.SOL_SOCKET || h.Type != syscall.SCM_TIMESTAMPNS {
		return time.Time{}, false
	}
	ts := (*syscall.Timespec)(unsafe.Pointer(&d.oob[syscall.CmsgLen(0)]))
	return time.Unix(int64(ts.Sec), int64(ts.Nsec)), true
}

// from returns the last datagram's source address.
func (d *rtpSocket) from() netip.AddrPort {
	switch d.name.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&d.name))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&d.name))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port as the kernel stores it: in network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
