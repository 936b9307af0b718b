package sipagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"intercom/internal/clock"
)

// flowListener is what sipgo's TCP server serves: the connections accepted
// on our listening socket and, handed in by dialFlow, the connections we
// open to the registrar. sipgo reads and reuses a handed-in connection like
// any other (requests to its remote address and responses on it, RFC 3261
// section 18), while we see it close the moment it does, which sipgo does
// not report.
type flowListener struct {
	l net.Listener
	// client and server make the flows TLS (RFC 3261 section 26.2.1):
	// accepted connections serve a handshake, ours complete one before
	// sipgo gets them. Both nil: plain TCP.
	client, server *tls.Config
	conns          chan handoff
	done           chan struct{} // closed when l was closed
	err            error         // why; set before done is closed
	// gate, when set, decides whether an accepted connection is served.
	gate *inbound
	clk  clock.Clock

	// prev is only touched by Accept, which sipgo calls from one goroutine.
	prev chan struct{}
}

var _ net.Listener = (*flowListener)(nil)

// handoff is a connection on its way to sipgo; taken is closed once sipgo
// has added it to its connection pool (nil for accepted connections).
type handoff struct {
	conn  net.Conn
	taken chan struct{}
}

func newFlowListener(l net.Listener, clk clock.Clock) *flowListener {
	return &flowListener{l: l, conns: make(chan handoff), done: make(chan struct{}), clk: clk}
}

const (
	// acceptRetryMax caps the pause after a failed accept.
	acceptRetryMax = time.Second
)

// acceptLoop feeds accepted connections to Accept until the socket is
// closed; Run owns it and closes the socket. A failed accept (out of file
// descriptors, say) is retried after a pause that doubles up to
// acceptRetryMax, as net/http does: it must not end SIP.
func (f *flowListener) acceptLoop() {
	var pause time.Duration
	for {
		c, err := f.l.Accept()
		if errors.Is(err, net.ErrClosed) {
			f.err = err
			close(f.done)
			return
		}
		if err != nil {
			pause = min(max(2*pause, 5*time.Millisecond), acceptRetryMax)
			t := f.clk.NewTimer(pause)
			<-t.C()
			continue
		}
		pause = 0
		if f.gate != nil {
			if c = f.gate.take(c); c == nil {
				continue
			}
		}
		if f.server != nil {
			// The handshake runs on sipgo's first read, in the
			// connection's own goroutine, so a slow client holds up
			// nobody else.
			c = tls.Server(c, f.server)
		}
		f.conns <- handoff{conn: c}
	}
}

// Accept returns the next connection for sipgo. sipgo's serve loop adds
// each connection to its pool before it calls Accept again, so this call
// is when the previous handoff is complete.
func (f *flowListener) Accept() (net.Conn, error) {
	if f.prev != nil {
		close(f.prev)
		f.prev = nil
	}
	select {
	case h := <-f.conns:
		f.prev = h.taken
		return h.conn, nil
	case <-f.done:
		return nil, f.err
	}
}

func (f *flowListener) Close() error   { return f.l.Close() }
func (f *flowListener) Addr() net.Addr { return f.l.Addr() }

// dialFlow connects to remote, completes the TLS handshake if the flows
// are TLS (a failed one is a *handshakeError), and hands the connection
// to sipgo; it returns once sipgo will send requests for remote over it.
func (f *flowListener) dialFlow(ctx context.Context, remote netip.AddrPort) (*flowConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", remote.String())
	if err != nil {
		return nil, fmt.Errorf("sipagent: connect: %w", err)
	}
	if f.client != nil {
		tc := tls.Client(c, f.client)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, &handshakeError{addr: remote, err: err}
		}
		c = tc
	}
	fc := newFlowConn(c)
	h := handoff{conn: fc, taken: make(chan struct{})}
	select {
	case f.conns <- h:
	case <-f.done:
		_ = c.Close()
		return nil, fmt.Errorf("sipagent: connect: %w", net.ErrClosed)
	case <-ctx.Done():
		_ = c.Close()
		return nil, ctx.Err()
	}
	select {
	case <-h.taken:
		return fc, nil
	case <-f.done:
		// sipgo stopped serving; closing the user agent closes the pool.
		return nil, fmt.Errorf("sipagent: connect: %w", net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// flowConn is a connection we opened: it reports that data arrived (the
// pong of a keep-alive, or anything else: the peer is alive) and that the
// connection ended, whoever ended it.
type flowConn struct {
	net.Conn
	remote netip.AddrPort
	alive  chan struct{} // one pending signal at most
	closed chan struct{}
	// readErr is the read error that ended the connection, nil when we
	// closed it; set before closed is closed.
	readErr error
	once    sync.Once
}

func newFlowConn(c net.Conn) *flowConn {
	var remote netip.AddrPort
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		remote = ta.AddrPort()
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	}
	return &flowConn{Conn: c, remote: remote, alive: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (c *flowConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		select {
		case c.alive <- struct{}{}:
		default:
		}
	}
	if err != nil {
		c.once.Do(func() {
			c.readErr = err
			close(c.closed)
		})
	}
	return n, err
}

func (c *flowConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// lostBy is the read error that ended the connection: a TLS alert from
// a server that refused our client certificate, for one. nil while the
// connection is open or when we closed it.
func (c *flowConn) lostBy() error {
	if !c.isClosed() {
		return nil
	}
	return c.readErr
}

// isClosed reports whether the connection has ended.
func (c *flowConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// Limits on the connections strangers hold open: each costs a descriptor,
// a goroutine and buffers in sipgo until the peer closes it.
const (
	maxInbound      = 128
	maxInboundPerIP = 8
)

// inbound admits accepted connections: the registrar, the outbound proxy
// and the peers of answered calls always; a stranger only as the defence
// lets its messages through, and within the limits on open connections.
type inbound struct {
	d *defence

	mu   sync.Mutex
	byIP map[netip.Addr]int
	all  int
}

func newInbound(d *defence) *inbound {
	return &inbound{d: d, byIP: map[netip.Addr]int{}}
}

// take returns c, counted until it closes, or nil after closing it.
func (in *inbound) take(c net.Conn) net.Conn {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		_ = c.Close()
		return nil
	}
	ip := ap.Addr().Unmap()
	if in.d.isTrusted(ip) {
		return c
	}
	if !in.d.admit(ip, false) {
		_ = c.Close()
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.all >= maxInbound || in.byIP[ip] >= maxInboundPerIP {
		in.d.rateLimited.Add(1)
		_ = c.Close()
		return nil
	}
	in.all++
	in.byIP[ip]++
	return &countedConn{Conn: c, release: func() { in.release(ip) }}
}

func (in *inbound) release(ip netip.Addr) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.all--
	if in.byIP[ip]--; in.byIP[ip] <= 0 {
		delete(in.byIP, ip)
	}
}

// countedConn gives its slot back when it closes, once.
type countedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
