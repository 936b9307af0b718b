package sipagent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"intercom/internal/clock"
)

const (
	// pongTimeout is how long a TCP keep-alive ping waits for its pong
	// before the connection counts as failed (RFC 5626 section 4.4.1).
	pongTimeout = 10 * time.Second
	// optionsEvery makes every n-th UDP keep-alive an OPTIONS: the CRLFs
	// between them keep NAT bindings open at four bytes each, the OPTIONS
	// finds out whether the registrar still answers.
	optionsEvery = 4
)

var (
	// ping is RFC 5626 section 4.4.1's keep-alive: a double CRLF, which a
	// TCP peer answers with a single CRLF (pong). On UDP nobody answers.
	ping = []byte("\r\n\r\n")
	// errMoved: the NAT maps us to a new public address; re-register.
	errMoved = errors.New("sipagent: public address changed")
)

// connect makes sure that, over TCP or TLS, our own connection to the
// registrar (or outbound proxy) is open, and opens a new one when it is
// not: a registrar that restarted has lost both the connection and our
// binding. It goes where the registrar last answered from, else to the
// first hop. When connecting fails the REGISTER goes out anyway: sipgo
// connects by itself, to this address or, failing over, to another, just
// without our watch. A failed TLS handshake is returned instead: the
// server answered but is not the one we trust, or does not trust us.
func (r *registration) connect(ctx context.Context) error {
	a := r.a
	if a.flows == nil || (r.flow != nil && !r.flow.isClosed()) {
		return nil
	}
	r.flow = nil
	remote := r.addr
	if !remote.IsValid() {
		var err error
		if remote, err = a.firstHop(ctx); err != nil {
			a.log.Debug("sipagent: connect", "err", err)
			return nil
		}
	}
	fc, err := a.flows.dialFlow(ctx, remote)
	var hs *handshakeError
	if errors.As(err, &hs) {
		return err
	}
	if err != nil {
		a.log.Debug("sipagent: connect", "addr", remote, "err", err)
		a.setFlowContact(nil)
		return nil
	}
	r.flow = fc
	a.setFlowContact(fc)
	a.log.Info("sipagent: connected to registrar", "transport", strings.ToLower(a.transport), "addr", remote, "local", fc.LocalAddr().String())
	return nil
}

// hold waits until the binding needs refreshing, sending keep-alives
// meanwhile. It returns early to re-register at once when the registrar
// looks lost: our TCP connection to it closed, a ping got no pong, an
// OPTIONS no answer, or the NAT mapped us to a new address.
func (r *registration) hold(ctx context.Context, granted time.Duration) {
	a := r.a
	// Refresh at half the granted time: early enough for a full UDP
	// transaction timeout (32 s) to fit before the binding lapses.
	refresh := a.clk.NewTimer(granted / 2)
	defer refresh.Stop()
	var lost, alive <-chan struct{}
	if r.flow != nil {
		lost = r.flow.closed
	}
	var keepalive, pongWait <-chan time.Time
	var ka, pong clock.Timer
	if a.cfg.Keepalive > 0 {
		ka = a.clk.NewTimer(a.cfg.Keepalive)
		defer ka.Stop()
		keepalive = ka.C()
	}
	defer func() {
		if pong != nil {
			pong.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C():
			return
		case <-lost:
			a.log.Warn("sipagent: connection to the registrar closed, reconnecting", "addr", r.addr)
			return
		case <-keepalive:
			if r.flow != nil && r.flow.remote == r.addr {
				if err := r.ping(); err != nil {
					a.log.Warn("sipagent: keep-alive failed, reconnecting", "addr", r.addr, "err", err)
					_ = r.flow.Close()
					return
				}
				// The next ping is scheduled once this one is answered.
				pong = a.clk.NewTimer(pongTimeout)
				pongWait, alive = pong.C(), r.flow.alive
				continue
			}
			if err := r.beat(ctx); err != nil {
				if ctx.Err() == nil {
					a.log.Warn("sipagent: keep-alive: re-registering", "addr", r.addr, "err", err)
				}
				return
			}
			ka.Reset(a.cfg.Keepalive)
		case <-alive:
			pong.Stop()
			pongWait, alive = nil, nil
			ka.Reset(a.cfg.Keepalive)
		case <-pongWait:
			a.log.Warn("sipagent: keep-alive got no pong, reconnecting", "addr", r.addr, "waited", pongTimeout)
			// Closing ends sipgo's use of the connection as well.
			_ = r.flow.Close()
			return
		}
	}
}

// ping sends a double-CRLF ping on our TCP connection. Whatever arrives on
// the connection after it counts as the pong: the single CRLF normally,
// but a request or response proves the peer alive just as well.
func (r *registration) ping() error {
	// Forget data that came before the ping.
	select {
	case <-r.flow.alive:
	default:
	}
	// Four bytes block only with the socket's send buffer full, which a
	// registration's few requests never fill; sipgo writes each message
	// in one call too, so the ping cannot land inside one.
	if _, err := r.flow.Write(ping); err != nil {
		return fmt.Errorf("sipagent: keep-alive: %w", err)
	}
	return nil
}

// beat is a keep-alive without a connection of ours to ping. Over UDP it
// is a CRLF datagram to the registrar from our listening socket, which
// refreshes NAT bindings on the way, and every optionsEvery-th time an
// OPTIONS, whose answer proves the registrar alive. Over a TCP connection
// sipgo opened it is an OPTIONS.
func (r *registration) beat(ctx context.Context) error {
	r.ticks++
	if r.a.udp == nil || r.ticks%optionsEvery == 0 || !r.addr.IsValid() {
		return r.options(ctx)
	}
	if _, err := r.a.udp.WriteToUDPAddrPort(ping, r.addr); err != nil {
		return fmt.Errorf("sipagent: keep-alive: %w", err)
	}
	return nil
}
