package sipagent

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"intercom/internal/clock"
)

// A stranger holds at most maxInboundPerIP connections open; one more is
// closed at once, and a slot comes back when a served connection closes.
// The registrar is not counted.
func TestInboundLimitsStrangerConnections(t *testing.T) {
	var trusted atomic.Bool
	d, err := newDefence(DefenceConfig{Rate: 1000, Burst: 1000}, clock.Real{}, func(netip.Addr) bool { return trusted.Load() })
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFlowListener(l, clock.Real{})
	f.gate = newInbound(d)
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		f.acceptLoop()
	}()
	// sipgo's side of the listener.
	served := make(chan net.Conn, 4*maxInboundPerIP)
	go func() {
		for {
			c, err := f.Accept()
			if err != nil {
				return
			}
			served <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-loopDone
	})
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp4", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	next := func() net.Conn {
		t.Helper()
		select {
		case c := <-served:
			return c
		case <-time.After(waitLong):
			t.Fatal("connection not served")
			return nil
		}
	}
	closedAtOnce := func(c net.Conn) bool {
		t.Helper()
		if err := c.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
			t.Fatal(err)
		}
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}

	var first net.Conn
	for i := range maxInboundPerIP {
		dial()
		if c := next(); i == 0 {
			first = c
		}
	}
	if extra := dial(); !closedAtOnce(extra) {
		t.Fatalf("connection %d from one stranger stayed open", maxInboundPerIP+1)
	}
	if st := d.stats(); st.RateLimited != 1 {
		t.Errorf("rate_limited %d, want the refused connection", st.RateLimited)
	}
	first.Close()
	dial()
	next()

	trusted.Store(true)
	for range 2 {
		dial()
		next()
	}
}

// flakyListener fails its first Accepts, as a socket out of file
// descriptors does, then hands out conns.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
	conns chan net.Conn
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, errors.New("accept: too many open files")
	}
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

// A failed accept does not end serving: the loop pauses and goes on.
func TestAcceptLoopSurvivesAcceptErrors(t *testing.T) {
	l := &flakyListener{conns: make(chan net.Conn, 1)}
	l.fails.Store(3)
	f := newFlowListener(l, clock.Real{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		f.acceptLoop()
	}()
	a, b := net.Pipe()
	defer a.Close()
	l.conns <- b
	c, err := f.Accept()
	if err != nil || c != b {
		t.Fatalf("Accept after failed accepts: %v, %v", c, err)
	}
	close(l.conns)
	<-loopDone
	if _, err := f.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after close: %v, want net.ErrClosed", err)
	}
}
