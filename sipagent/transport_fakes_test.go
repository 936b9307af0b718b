package sipagent

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// answerFunc builds the response to a request a fake registrar got.
type answerFunc func(req *sip.Request) *sip.Response

// okWith answers 200 OK with the given Expires header value.
func okWith(expires string) answerFunc {
	return func(req *sip.Request) *sip.Response {
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		if req.Method == sip.REGISTER {
			res.AppendHeader(sip.NewHeader("Expires", expires))
		}
		return res
	}
}

// natted answers like okWith, with the top Via's received and rport set as
// a registrar behind a NAT sees them (RFC 3581 section 4).
func natted(expires string, public netip.AddrPort) answerFunc {
	ok := okWith(expires)
	return func(req *sip.Request) *sip.Response {
		res := ok(req)
		via := res.Via()
		via.Params.Add("received", public.Addr().String())
		via.Params.Add("rport", strconv.Itoa(int(public.Port())))
		return res
	}
}

// udpRegistrar is a registrar on a bare UDP socket: it sees every datagram,
// keep-alives included, and answers requests with answer.
type udpRegistrar struct {
	conn  *net.UDPConn
	addr  netip.AddrPort
	reqs  chan *sip.Request
	pings chan netip.AddrPort // sources of CRLF keep-alives

	mu     sync.Mutex
	answer answerFunc
}

func newUDPRegistrar(t *testing.T, network string, ip net.IP, answer answerFunc) *udpRegistrar {
	t.Helper()
	conn, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	f := &udpRegistrar{
		conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		reqs: make(chan *sip.Request, 100), pings: make(chan netip.AddrPort, 100), answer: answer,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			data := buf[:n]
			if len(bytes.Trim(data, "\r\n")) == 0 {
				f.pings <- src
				continue
			}
			msg, err := sip.ParseMessage(data)
			if err != nil {
				continue
			}
			req, ok := msg.(*sip.Request)
			if !ok || req.IsAck() {
				continue
			}
			req.SetSource(src.String())
			f.reqs <- req.Clone()
			f.mu.Lock()
			answer := f.answer
			f.mu.Unlock()
			if res := answer(req); res != nil {
				_, _ = conn.WriteToUDPAddrPort([]byte(res.String()), src)
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return f
}

func (f *udpRegistrar) setAnswer(answer answerFunc) {
	f.mu.Lock()
	f.answer = answer
	f.mu.Unlock()
}

func (f *udpRegistrar) next(t *testing.T, method sip.RequestMethod) *sip.Request {
	t.Helper()
	return nextRequest(t, f.reqs, method)
}

func (f *udpRegistrar) ping(t *testing.T) netip.AddrPort {
	t.Helper()
	select {
	case src := <-f.pings:
		return src
	case <-time.After(waitLong):
		t.Fatal("registrar got no keep-alive")
		return netip.AddrPort{}
	}
}

func nextRequest(t *testing.T, reqs <-chan *sip.Request, method sip.RequestMethod) *sip.Request {
	t.Helper()
	timeout := time.After(waitLong)
	for {
		select {
		case r := <-reqs:
			if r.Method == method {
				return r
			}
		case <-timeout:
			t.Fatalf("registrar got no %s", method)
			return nil
		}
	}
}

// tcpRegistrar is a registrar on a bare TCP listener. Each connection is
// reported on conns; it answers requests with answer and, while pong is
// set, double-CRLF pings with a CRLF (RFC 5626 section 4.4.1).
type tcpRegistrar struct {
	l     *net.TCPListener
	addr  netip.AddrPort
	conns chan *tcpFlow

	mu     sync.Mutex
	answer answerFunc
	pong   bool
	wg     sync.WaitGroup
	open   []net.Conn
}

// tcpFlow is one connection a tcpRegistrar accepted.
type tcpFlow struct {
	conn   net.Conn
	remote netip.AddrPort
	reqs   chan *sip.Request
	resps  chan *sip.Response // responses to requests the test wrote
	pings  chan struct{}
	closed chan struct{} // the peer closed it, or we did
}

func newTCPRegistrar(t *testing.T, answer answerFunc) *tcpRegistrar {
	t.Helper()
	return newTCPRegistrarAt(t, "tcp4", net.IPv4(127, 0, 0, 1), answer)
}

func newTCPRegistrarAt(t *testing.T, network string, ip net.IP, answer answerFunc) *tcpRegistrar {
	t.Helper()
	l, err := net.ListenTCP(network, &net.TCPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	return serveTCPRegistrar(t, l, answer, nil)
}

// serveTCPRegistrar runs a tcpRegistrar on l; wrap, when set, turns each
// accepted connection into the one served, or nil to serve none.
func serveTCPRegistrar(t *testing.T, l *net.TCPListener, answer answerFunc, wrap func(net.Conn) net.Conn) *tcpRegistrar {
	t.Helper()
	f := &tcpRegistrar{l: l, addr: l.Addr().(*net.TCPAddr).AddrPort(), conns: make(chan *tcpFlow, 10), answer: answer, pong: true}
	f.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.open = append(f.open, c)
			f.mu.Unlock()
			if wrap != nil {
				if c = wrap(c); c == nil {
					continue
				}
			}
			fl := &tcpFlow{
				conn: c, remote: c.RemoteAddr().(*net.TCPAddr).AddrPort(),
				reqs: make(chan *sip.Request, 100), resps: make(chan *sip.Response, 100),
				pings: make(chan struct{}, 100), closed: make(chan struct{}),
			}
			f.conns <- fl
			f.wg.Go(func() { f.serve(fl) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		f.mu.Lock()
		for _, c := range f.open {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

// final waits for the final response to the request the test wrote on fl.
func (fl *tcpFlow) final(t *testing.T) *sip.Response {
	t.Helper()
	timeout := time.After(waitLong)
	for {
		select {
		case res := <-fl.resps:
			if res.StatusCode >= 200 {
				return res
			}
		case <-timeout:
			t.Fatal("no final response on the connection")
			return nil
		}
	}
}

func (f *tcpRegistrar) serve(fl *tcpFlow) {
	defer close(fl.closed)
	par := sip.NewParser().NewSIPStream()
	buf := make([]byte, 65535)
	for {
		n, err := fl.conn.Read(buf)
		if err != nil {
			return
		}
		data := buf[:n]
		if bytes.Equal(data, ping) {
			fl.pings <- struct{}{}
			f.mu.Lock()
			pong := f.pong
			f.mu.Unlock()
			if pong {
				_, _ = fl.conn.Write([]byte("\r\n"))
			}
			continue
		}
		err = par.ParseSIPStream(data, func(msg sip.Message) {
			if res, ok := msg.(*sip.Response); ok {
				fl.resps <- res
				return
			}
			req, ok := msg.(*sip.Request)
			if !ok || req.IsAck() {
				return
			}
			req.SetSource(fl.remote.String())
			fl.reqs <- req.Clone()
			f.mu.Lock()
			answer := f.answer
			f.mu.Unlock()
			if res := answer(req); res != nil {
				_, _ = fl.conn.Write([]byte(res.String()))
			}
		})
		if err != nil && !errors.Is(err, sip.ErrParseSipPartial) {
			return
		}
	}
}

func (f *tcpRegistrar) setPong(on bool) {
	f.mu.Lock()
	f.pong = on
	f.mu.Unlock()
}

// accept returns the next connection the registrar accepted.
func (f *tcpRegistrar) accept(t *testing.T) *tcpFlow {
	t.Helper()
	select {
	case fl := <-f.conns:
		return fl
	case <-time.After(waitLong):
		t.Fatal("registrar got no connection")
		return nil
	}
}

func (fl *tcpFlow) next(t *testing.T, method sip.RequestMethod) *sip.Request {
	t.Helper()
	return nextRequest(t, fl.reqs, method)
}

func (fl *tcpFlow) ping(t *testing.T) {
	t.Helper()
	select {
	case <-fl.pings:
	case <-time.After(waitLong):
		t.Fatal("registrar got no ping")
	}
}

func (fl *tcpFlow) waitClosed(t *testing.T) {
	t.Helper()
	waitClosed(t, fl.closed, "connection")
}

// waitNext waits until the fake clock's earliest timer is due in d: the
// agent has re-armed the timer the test expects.
func waitNext(t *testing.T, clk interface {
	Next() (time.Duration, bool)
}, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		if next, ok := clk.Next(); ok && next == d {
			return
		}
		if time.Now().After(deadline) {
			next, _ := clk.Next()
			t.Fatalf("next timer in %v, want %v", next, d)
		}
		time.Sleep(time.Millisecond)
	}
}
