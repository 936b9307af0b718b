package sipagent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock/clocktest"
)

// busyInvites answers INVITEs 486 and everything else with answer.
func busyInvites(answer answerFunc) answerFunc {
	return func(req *sip.Request) *sip.Response {
		if req.Method == sip.INVITE {
			return sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil)
		}
		return answer(req)
	}
}

func contactsOf(t *testing.T, req *sip.Request) []*sip.ContactHeader {
	t.Helper()
	var out []*sip.ContactHeader
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			t.Fatalf("Contact %q not parsed", h.Value())
		}
		out = append(out, c)
	}
	return out
}

// dialBusy calls target and expects the 486 of a fake.
func dialBusy(t *testing.T, a *Agent, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, err := a.Dial(ctx, DialRequest{Targets: []string{target}, Media: offer(40000, false, "PCMU")})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != sip.StatusBusyHere {
		t.Fatalf("Dial %s: %v, want 486", target, err)
	}
}

func TestNATAutoRegistersPublicContact(t *testing.T) {
	public := netip.MustParseAddrPort("203.0.113.7:40000")
	reg := newUDPRegistrar(t, "udp4", net.IPv4(127, 0, 0, 1), busyInvites(natted("300", public)))
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Registrar: reg.addr.String(), User: "100", Clock: clk})
	local := a.Addr()

	first := reg.next(t, sip.REGISTER)
	if cs := contactsOf(t, first); len(cs) != 1 || cs[0].Address.Host != "127.0.0.1" || cs[0].Address.Port != int(local.Port()) {
		t.Fatalf("first Contact %v", first.GetHeaders("Contact"))
	}
	if !first.Via().Params.Has("rport") {
		t.Errorf("Via %s without rport", first.Via().Value())
	}
	registered(t, a)
	// The response showed the NAT's address: re-register with it at once,
	// removing the private binding in the same request.
	second := reg.next(t, sip.REGISTER)
	cs := contactsOf(t, second)
	if len(cs) != 2 || cs[0].Address.Host != "203.0.113.7" || cs[0].Address.Port != 40000 || cs[0].Params.Has("expires") {
		t.Fatalf("second REGISTER Contacts %v, want the public one first", second.GetHeaders("Contact"))
	}
	if cs[1].Address.Host != "127.0.0.1" || cs[1].Address.Port != int(local.Port()) || cs[1].Params.GetOr("expires", "") != "0" {
		t.Errorf("second REGISTER removes %s, want the private Contact with expires=0", cs[1].Value())
	}
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered || e.Addr != reg.addr {
		t.Errorf("event %+v", e)
	}
	clk.WaitForTimers(1) // holding until the refresh: no third REGISTER
	select {
	case r := <-reg.reqs:
		t.Fatalf("unexpected %s", r.Short())
	default:
	}

	// Calls through the registrar carry the public Contact; calls to
	// anyone else the local one.
	dialBusy(t, a, "sip:201@"+reg.addr.String())
	if c := reg.next(t, sip.INVITE).Contact(); c.Address.Host != "203.0.113.7" || c.Address.Port != 40000 {
		t.Errorf("INVITE to the registrar: Contact %s", c.Value())
	}
	other := newUDPRegistrar(t, "udp4", net.IPv4(127, 0, 0, 2), busyInvites(okWith("300")))
	dialBusy(t, a, "sip:201@"+other.addr.String())
	if c := other.next(t, sip.INVITE).Contact(); c.Address.Host != "127.0.0.1" || c.Address.Port != int(local.Port()) {
		t.Errorf("INVITE to another peer: Contact %s", c.Value())
	}

	// The NAT is gone: the refresh learns it and binds the local address
	// again.
	reg.setAnswer(busyInvites(okWith("300")))
	clk.Advance(150 * time.Second)
	if c := contactsOf(t, reg.next(t, sip.REGISTER)); len(c) != 1 || c[0].Address.Host != "203.0.113.7" {
		t.Fatalf("refresh Contacts %v", c)
	}
	waitEvent[RegistrationChanged](t, a)
	cs = contactsOf(t, reg.next(t, sip.REGISTER))
	if len(cs) != 2 || cs[0].Address.Host != "127.0.0.1" || cs[1].Address.Host != "203.0.113.7" || cs[1].Params.GetOr("expires", "") != "0" {
		t.Errorf("after the NAT went: Contacts %v", cs)
	}
}

func TestNATOffKeepsLocalContact(t *testing.T) {
	reg := newUDPRegistrar(t, "udp4", net.IPv4(127, 0, 0, 1), natted("300", netip.MustParseAddrPort("203.0.113.7:40000")))
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Registrar: reg.addr.String(), User: "100", NAT: "off", Clock: clk})
	reg.next(t, sip.REGISTER)
	registered(t, a)
	clk.WaitForTimers(1)
	select {
	case r := <-reg.reqs:
		t.Fatalf("unexpected %s", r.Short())
	default:
	}
}

func TestNATAutoOverTCPUsesTheConnectionsPublicEnd(t *testing.T) {
	public := netip.MustParseAddrPort("203.0.113.7:40001")
	reg := newTCPRegistrar(t, natted("300", public))
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Transport: "tcp", Registrar: reg.addr.String(), User: "100", Clock: clk})
	fl := reg.accept(t)
	fl.next(t, sip.REGISTER)
	registered(t, a)
	cs := contactsOf(t, fl.next(t, sip.REGISTER))
	if len(cs) != 2 || cs[0].Address.Host != "203.0.113.7" || cs[0].Address.Port != 40001 || cs[0].Address.UriParams.GetOr("transport", "") != "tcp" {
		t.Errorf("Contacts %v, want the connection's public end with transport=tcp", cs)
	}
}

// TestNATOverTCPWithoutNAT: over TCP our connection's port is never our
// listening port; only a different IP means a NAT.
func TestNATOverTCPWithoutNAT(t *testing.T) {
	reg := newTCPRegistrar(t, okWith("300"))
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Transport: "tcp", Registrar: reg.addr.String(), User: "100", Clock: clk})
	fl := reg.accept(t)
	r := fl.next(t, sip.REGISTER)
	if r.Source() == a.Addr().String() {
		t.Fatalf("REGISTER came from the listening port %s", r.Source())
	}
	registered(t, a)
	clk.WaitForTimers(1)
	select {
	case r := <-fl.reqs:
		t.Fatalf("unexpected %s", r.Short())
	default:
	}
}

func TestObservedAndPublicAddr(t *testing.T) {
	local := netip.MustParseAddrPort("192.168.1.10:5060")
	for _, tc := range []struct {
		via  string
		tcp  bool
		want string // "" no public address; "bad" unreadable
	}{
		{"SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1;rport=5060;received=192.168.1.10", false, ""},
		{"SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1", false, ""},
		{"SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1;rport=61000;received=198.51.100.4", false, "198.51.100.4:61000"},
		{"SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1;rport=61000", false, "192.168.1.10:61000"},
		{"SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1;received=198.51.100.4", false, "198.51.100.4:5060"},
		{"SIP/2.0/TCP 192.168.1.10:5060;branch=z9hG4bK1;rport=45000;received=192.168.1.10", true, ""},
		{"SIP/2.0/TCP 192.168.1.10:5060;branch=z9hG4bK1;rport=45000;received=198.51.100.4", true, "198.51.100.4:45000"},
		{"SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bK1;rport=5060;received=2001:db8::99", false, "[2001:db8::99]:5060"},
		{"SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1;rport=99999", false, "bad"},
		{"SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1;received=not-an-ip", false, "bad"},
	} {
		msg, err := sip.ParseMessage([]byte("SIP/2.0 200 OK\r\nVia: " + tc.via + "\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.via, err)
		}
		obs, ok := observedAddr(msg.(*sip.Response))
		if tc.want == "bad" {
			if ok {
				t.Errorf("%s: observed %v, want unreadable", tc.via, obs)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: unreadable", tc.via)
			continue
		}
		l := local
		if obs.Addr().Is6() {
			l = netip.MustParseAddrPort("[2001:db8::10]:5060")
		}
		got := publicAddr(l, obs, tc.tcp)
		if (tc.want == "" && got.IsValid()) || (tc.want != "" && got.String() != tc.want) {
			t.Errorf("%s: public %v, want %q", tc.via, got, tc.want)
		}
	}
}

func TestNewValidatesNAT(t *testing.T) {
	if a, err := New(Config{Listen: "127.0.0.1:0", NAT: "stun"}); err == nil {
		t.Error("NAT stun accepted")
		_ = a.Run(canceledCtx())
	}
}

func TestIPv6RegistrarUDP(t *testing.T) {
	reg := newUDPRegistrar(t, "udp6", net.IPv6loopback, okWith("300"))
	a := startAgent(t, Config{Listen: "[::1]:0", Registrar: reg.addr.String(), User: "100"})
	r := reg.next(t, sip.REGISTER)
	if c := r.Contact(); c.Address.Host != "[::1]" || c.Address.Port != int(a.Addr().Port()) {
		t.Errorf("Contact %s", c.Value())
	}
	if got := r.Recipient.String(); got != "sip:"+reg.addr.String() {
		t.Errorf("Request-URI %s", got)
	}
	if e := registered(t, a); e.Addr != reg.addr {
		t.Errorf("registered from %v, want %v", e.Addr, reg.addr)
	}
}

func TestFirstHopDefaultsTo5060(t *testing.T) {
	for reg, want := range map[string]string{
		"127.0.0.1":          "127.0.0.1:5060",
		"sip:127.0.0.1:5070": "127.0.0.1:5070",
		"[::1]":              "[::1]:5060",
		"::1":                "[::1]:5060",
		"[::1]:5071":         "[::1]:5071",
	} {
		listen := "127.0.0.1:0"
		if strings.Contains(reg, "::") {
			listen = "[::1]:0"
		}
		a, err := New(Config{Listen: listen, Registrar: reg, User: "100"})
		if err != nil {
			t.Fatalf("%s: %v", reg, err)
		}
		got, err := a.firstHop(context.Background())
		_ = a.Run(canceledCtx())
		if err != nil || got.String() != want {
			t.Errorf("registrar %q: first hop %v, %v; want %s", reg, got, err, want)
		}
	}
}

func TestIPv6RegistrarTCP(t *testing.T) {
	reg := newTCPRegistrarAt(t, "tcp6", net.IPv6loopback, okWith("300"))
	a := startAgent(t, Config{Listen: "[::1]:0", Transport: "tcp", Registrar: reg.addr.String(), User: "100"})
	r := reg.accept(t).next(t, sip.REGISTER)
	if c := r.Contact(); c.Address.Host != "[::1]" || c.Address.Port != int(a.Addr().Port()) || c.Address.UriParams.GetOr("transport", "") != "tcp" {
		t.Errorf("Contact %s", c.Value())
	}
	if e := registered(t, a); e.Addr != reg.addr || e.Transport != "tcp" {
		t.Errorf("registered over %s from %v, want tcp from %v", e.Transport, e.Addr, reg.addr)
	}
}
