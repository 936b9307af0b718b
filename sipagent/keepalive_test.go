package sipagent

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock/clocktest"
)

// registered waits for the registering and registered events of a first
// registration and returns the latter.
func registered(t *testing.T, a *Agent) RegistrationChanged {
	t.Helper()
	return registrationOutcome(t, a, StateRegistered)
}

// registrationOutcome skips registering events and returns the next
// registration event, which must be in state want.
func registrationOutcome(t *testing.T, a *Agent, want string) RegistrationChanged {
	t.Helper()
	for {
		e := waitEvent[RegistrationChanged](t, a)
		switch e.State {
		case StateRegistering:
			continue
		case want:
			return e
		}
		t.Fatalf("event %+v, want %s", e, want)
	}
}

func TestKeepaliveUDPCRLFThenOptions(t *testing.T) {
	reg := newUDPRegistrar(t, "udp4", net.IPv4(127, 0, 0, 1), okWith("3600"))
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Registrar: reg.addr.String(), User: "100", Keepalive: 10 * time.Second, Clock: clk})
	e := registered(t, a)
	if e.Transport != "udp" || e.Addr != reg.addr {
		t.Errorf("registered over %q from %v, want udp from %v", e.Transport, e.Addr, reg.addr)
	}
	reg.next(t, sip.REGISTER)
	for i := 1; i < optionsEvery; i++ {
		clk.WaitForTimers(2) // refresh and keep-alive
		clk.Advance(10 * time.Second)
		if src := reg.ping(t); src != a.Addr() {
			t.Errorf("keep-alive %d from %v, not the listening socket %v", i, src, a.Addr())
		}
	}
	clk.WaitForTimers(2)
	clk.Advance(10 * time.Second)
	opt := reg.next(t, sip.OPTIONS)
	if opt.From().Address.User != "100" || opt.Source() != a.Addr().String() {
		t.Errorf("keep-alive %s from %s", opt.From().Value(), opt.Source())
	}
	clk.WaitForTimers(2)
	clk.Advance(10 * time.Second)
	reg.ping(t)
	select {
	case r := <-reg.reqs:
		t.Errorf("unexpected %s", r.Short())
	default:
	}
}

// TestKeepaliveUDPUnansweredOptionsReregisters: a registrar that stops
// answering is noticed at the next OPTIONS, before the refresh is due.
func TestKeepaliveUDPUnansweredOptionsReregisters(t *testing.T) {
	reg := newUDPRegistrar(t, "udp4", net.IPv4(127, 0, 0, 1), okWith("3600"))
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Registrar: reg.addr.String(), User: "100", Keepalive: 10 * time.Second, Clock: clk})
	registered(t, a)
	reg.next(t, sip.REGISTER)
	// Silence for OPTIONS only: sipgo retransmits it, and an answer to a
	// retransmission would count.
	reg.setAnswer(func(req *sip.Request) *sip.Response {
		if req.Method == sip.OPTIONS {
			return nil
		}
		return okWith("3600")(req)
	})
	for range optionsEvery {
		clk.WaitForTimers(2)
		clk.Advance(10 * time.Second)
	}
	reg.next(t, sip.OPTIONS)
	// The OPTIONS times out in real time (keepaliveTimeout); then the
	// agent re-registers at once.
	reg.next(t, sip.REGISTER)
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered {
		t.Errorf("event %+v", e)
	}
}

func TestTCPRegisterReconnectsWhenConnectionCloses(t *testing.T) {
	reg := newTCPRegistrar(t, okWith("300"))
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Transport: "tcp", Registrar: reg.addr.String(), User: "100", Clock: clk})
	first := reg.accept(t)
	r := first.next(t, sip.REGISTER)
	c := r.Contact()
	if c.Address.Host != "127.0.0.1" || c.Address.Port != int(a.Addr().Port()) || c.Address.UriParams.GetOr("transport", "") != "tcp" {
		t.Errorf("Contact %s, want our listening address with transport=tcp", c.Value())
	}
	if via := r.Via(); via.Transport != "TCP" || !via.Params.Has("rport") || via.Port != int(a.Addr().Port()) {
		t.Errorf("Via %s", via.Value())
	}
	if e := registered(t, a); e.Transport != "tcp" || e.Addr != reg.addr {
		t.Errorf("registered over %q from %v, want tcp from %v", e.Transport, e.Addr, reg.addr)
	}

	// The registrar restarts: the connection closes. No time passes, yet
	// the agent connects again and re-registers.
	first.conn.Close()
	second := reg.accept(t)
	r2 := second.next(t, sip.REGISTER)
	if r2.CallID().Value() != r.CallID().Value() || r2.CSeq().SeqNo <= r.CSeq().SeqNo {
		t.Errorf("re-REGISTER Call-ID/CSeq %s %d after %s %d", r2.CallID(), r2.CSeq().SeqNo, r.CallID(), r.CSeq().SeqNo)
	}
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered {
		t.Errorf("after reconnect: %+v", e)
	}
	// The refresh uses the new connection.
	clk.WaitForTimers(1)
	clk.Advance(150 * time.Second)
	second.next(t, sip.REGISTER)
}

func TestTCPKeepalivePingPongAndDeadFlow(t *testing.T) {
	reg := newTCPRegistrar(t, okWith("3600"))
	clk := clocktest.New(time.Unix(1000, 0))
	ka := 25 * time.Second
	a := startAgent(t, Config{Transport: "tcp", Registrar: reg.addr.String(), User: "100", Keepalive: ka, Clock: clk})
	first := reg.accept(t)
	first.next(t, sip.REGISTER)
	registered(t, a)

	clk.WaitForTimers(2) // refresh and keep-alive
	clk.Advance(ka)
	first.ping(t)
	// The pong re-arms the keep-alive; the pong timer is gone.
	waitNext(t, clk, ka)
	if n := clk.Pending(); n != 2 {
		t.Fatalf("%d timers pending after the pong, want refresh and keep-alive", n)
	}

	reg.setPong(false)
	clk.Advance(ka)
	first.ping(t)
	clk.WaitForTimers(2) // refresh and pong timeout
	if d, _ := clk.Next(); d != pongTimeout {
		t.Fatalf("next timer in %v, want the pong timeout %v", d, pongTimeout)
	}
	clk.Advance(pongTimeout - time.Millisecond)
	select {
	case <-first.closed:
		t.Fatal("connection dropped before the pong timeout")
	default:
	}
	clk.Advance(time.Millisecond)
	first.waitClosed(t)
	second := reg.accept(t)
	second.next(t, sip.REGISTER)
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered {
		t.Errorf("after reconnect: %+v", e)
	}
}

// TestTCPRegistrarDownThenBack: while the registrar is away the agent
// retries with back-off; once it listens again the agent registers.
func TestTCPRegistrarDownThenBack(t *testing.T) {
	reg := newTCPRegistrar(t, okWith("300"))
	addr := reg.addr
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Transport: "tcp", Registrar: addr.String(), User: "100", Clock: clk, RetryMin: time.Second})
	first := reg.accept(t)
	first.next(t, sip.REGISTER)
	registered(t, a)

	// Stop listening and drop the connection: reconnecting fails.
	reg.l.Close()
	first.conn.Close()
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateFailed || e.Err == nil {
		t.Fatalf("event %+v, want failed", e)
	}
	back := listenTCPAt(t, addr)
	clk.WaitForTimers(1) // the retry
	d, _ := clk.Next()
	clk.Advance(d)
	c, err := back.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fl := &tcpFlow{
		conn: c, remote: c.RemoteAddr().(*net.TCPAddr).AddrPort(),
		reqs: make(chan *sip.Request, 10), resps: make(chan *sip.Response, 10), pings: make(chan struct{}, 10), closed: make(chan struct{}),
	}
	reg.wg.Go(func() { reg.serve(fl) })
	fl.next(t, sip.REGISTER)
	registered(t, a)
}

func listenTCPAt(t *testing.T, addr netip.AddrPort) *net.TCPListener {
	t.Helper()
	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestTCPIncomingOverRegistrationConnection: a registrar that cannot
// connect to us (a NAT in between) sends its INVITE over the connection
// our REGISTER came on; the agent takes it and answers on that connection
// (RFC 3261 section 18.2.2).
func TestTCPIncomingOverRegistrationConnection(t *testing.T) {
	reg := newTCPRegistrar(t, okWith("300"))
	a := startAgent(t, Config{Transport: "tcp", Registrar: reg.addr.String(), User: "100"})
	fl := reg.accept(t)
	fl.next(t, sip.REGISTER)
	registered(t, a)

	body, err := buildSDP(netip.MustParseAddrPort("127.0.0.1:40000"), []Codec{{Name: "PCMU"}}, 0, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	inv := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "100", Host: "127.0.0.1", Port: int(a.Addr().Port()), UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}})
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TCP", Host: reg.addr.Addr().String(), Port: int(reg.addr.Port())}
	via.Params.Add("branch", sip.GenerateBranch())
	inv.AppendHeader(via)
	inv.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "201", Host: reg.addr.Addr().String()}, Params: sip.HeaderParams{{K: "tag", V: "t201"}}})
	inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "100", Host: reg.addr.Addr().String()}})
	callID := sip.CallIDHeader("over-the-flow")
	inv.AppendHeader(&callID)
	inv.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	inv.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "201", Host: reg.addr.Addr().String(), Port: int(reg.addr.Port()), UriParams: sip.HeaderParams{{K: "transport", V: "tcp"}}}})
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(body)
	if _, err := fl.conn.Write([]byte(inv.String())); err != nil {
		t.Fatal(err)
	}
	in := waitEvent[IncomingCall](t, a)
	if !in.FromProxy || in.Source != reg.addr {
		t.Errorf("IncomingCall from %v (FromProxy %v), want the registrar %v", in.Source, in.FromProxy, reg.addr)
	}
	if err := in.Call.Reject(sip.StatusBusyHere, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	if res := fl.final(t); res.StatusCode != sip.StatusBusyHere {
		t.Errorf("final response %s", res.StartLine())
	}
	if e := waitEvent[CallEnded](t, a); e.Reason != ReasonRejected {
		t.Errorf("CallEnded %+v", e)
	}
	select {
	case <-reg.conns:
		t.Error("the agent opened a second connection")
	default:
	}
}
