package sipagent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock/clocktest"
	"intercom/sipagent/sipdns"
)

// fakeResolver answers RFC 3263 queries from a table by host.
type fakeResolver struct {
	mu      sync.Mutex
	targets map[string][]netip.AddrPort
	queries []sipdns.Query
}

var _ Resolver = (*fakeResolver)(nil)

func (f *fakeResolver) Resolve(_ context.Context, q sipdns.Query) ([]sipdns.Target, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	if ip, err := netip.ParseAddr(strings.Trim(q.Host, "[]")); err == nil {
		port := uint16(q.Port)
		if port == 0 {
			port = 5060
		}
		return []sipdns.Target{{Host: q.Host, Addr: netip.AddrPortFrom(ip, port)}}, nil
	}
	addrs, ok := f.targets[q.Host]
	if !ok {
		return nil, errors.New("fake: no such host")
	}
	var out []sipdns.Target
	for _, a := range addrs {
		out = append(out, sipdns.Target{Host: q.Host, Addr: a})
	}
	return out, nil
}

// silentPeer is a UDP socket that reads and never answers: a SIP server
// that is down without the network saying so.
func silentPeer(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// startAgentTimeout is startAgent with a shorter per-target timeout.
func startAgentTimeout(t *testing.T, cfg Config, perTarget time.Duration) *Agent {
	t.Helper()
	a, stop := runAgent(t, cfg, func(a *Agent) { a.dns.timeout = perTarget })
	t.Cleanup(stop)
	return a
}

func waitRegistered(t *testing.T, a *Agent) RegistrationChanged {
	t.Helper()
	for {
		e := waitEvent[RegistrationChanged](t, a)
		switch e.State {
		case StateRegistered:
			return e
		case StateRegistering:
		default:
			t.Fatalf("registration %+v", e)
		}
	}
}

func TestRegisterFailsOverOn503AndRemembersTheTarget(t *testing.T) {
	down := newFakeRegistrar(t, func(*sip.Request) reply { return reply{503, "Service Unavailable", nil} })
	up := newFakeRegistrar(t, func(*sip.Request) reply {
		return reply{200, "OK", []sip.Header{sip.NewHeader("Expires", "60")}}
	})
	res := &fakeResolver{targets: map[string][]netip.AddrPort{"pbx.test": {down.addr, up.addr}}}
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Registrar: "pbx.test", User: "100", Clock: clk, Resolver: res})
	waitRegistered(t, a)

	first, second := down.next(t, sip.REGISTER), up.next(t, sip.REGISTER)
	// The domain stays in the Request-URI and the AOR (RFC 3263 section 4).
	for _, req := range []*sip.Request{first, second} {
		if req.Recipient.Host != "pbx.test" || req.To().Address.Host != "pbx.test" || req.From().Address.Host != "pbx.test" {
			t.Errorf("%s to %s, To %s, From %s: want the domain", req.Method, req.Recipient.String(), req.To().Value(), req.From().Value())
		}
	}
	// A new transaction: another Via branch, the next CSeq.
	if b1, b2 := branch(first), branch(second); b1 == b2 {
		t.Errorf("same Via branch %q at both targets", b1)
	}
	if first.CSeq().SeqNo >= second.CSeq().SeqNo || first.CallID().Value() != second.CallID().Value() {
		t.Errorf("CSeq %d then %d, Call-ID %s then %s: want a higher CSeq, one Call-ID",
			first.CSeq().SeqNo, second.CSeq().SeqNo, first.CallID().Value(), second.CallID().Value())
	}

	// The refresh goes to the target that answered, not back to the first.
	clk.WaitForTimers(1)
	clk.Advance(30 * time.Second)
	up.next(t, sip.REGISTER)
	waitRegistered(t, a)
	down.none(t)
}

func TestRegisterFailsOverWhenATargetIsSilent(t *testing.T) {
	dead := silentPeer(t)
	up := newFakeRegistrar(t, func(*sip.Request) reply {
		return reply{200, "OK", []sip.Header{sip.NewHeader("Expires", "60")}}
	})
	res := &fakeResolver{targets: map[string][]netip.AddrPort{"pbx.test": {dead, up.addr}}}
	a := startAgentTimeout(t, Config{Registrar: "pbx.test", User: "100", Resolver: res}, 300*time.Millisecond)
	if e := waitRegistered(t, a); e.Registrar != "pbx.test" {
		t.Errorf("registered event %+v", e)
	}
	if req := up.next(t, sip.REGISTER); req.Recipient.Host != "pbx.test" {
		t.Errorf("REGISTER to %s", req.Recipient.String())
	}
	if q := res.queries[0]; q.Transport != "udp" || q.Family != sipdns.IPv4 || q.Port != 0 {
		t.Errorf("query %+v, want udp, IPv4, no port", q)
	}
}

func TestRegisterAllTargetsDown(t *testing.T) {
	a1 := newFakeRegistrar(t, func(*sip.Request) reply { return reply{503, "Service Unavailable", nil} })
	a2 := newFakeRegistrar(t, func(*sip.Request) reply { return reply{503, "Service Unavailable", nil} })
	res := &fakeResolver{targets: map[string][]netip.AddrPort{"pbx.test": {a1.addr, a2.addr}}}
	a := startAgent(t, Config{Registrar: "pbx.test", User: "100", Resolver: res, Clock: clocktest.New(time.Unix(1000, 0))})
	for {
		e := waitEvent[RegistrationChanged](t, a)
		if e.State == StateRegistering {
			continue
		}
		var se *StatusError
		if e.State != StateFailed || !errors.As(e.Err, &se) || se.Code != 503 {
			t.Fatalf("event %+v, want failed with the 503", e)
		}
		break
	}
	a1.next(t, sip.REGISTER)
	a2.next(t, sip.REGISTER)
}

func TestRegisterUnresolvableRegistrarFails(t *testing.T) {
	res := &fakeResolver{}
	a := startAgent(t, Config{Registrar: "nowhere.test", User: "100", Resolver: res, Clock: clocktest.New(time.Unix(1000, 0))})
	for {
		e := waitEvent[RegistrationChanged](t, a)
		if e.State == StateRegistering {
			continue
		}
		if e.State != StateFailed || e.Err == nil || !strings.Contains(e.Err.Error(), "resolve") {
			t.Fatalf("event %+v, want failed to resolve", e)
		}
		return
	}
}

func TestFromProxyKnowsEveryTarget(t *testing.T) {
	up := newFakeRegistrar(t, func(*sip.Request) reply {
		return reply{200, "OK", []sip.Header{sip.NewHeader("Expires", "60")}}
	})
	other := netip.MustParseAddrPort("127.0.0.3:5060")
	res := &fakeResolver{targets: map[string][]netip.AddrPort{"pbx.test": {up.addr, other}}}
	a := startAgent(t, Config{Registrar: "pbx.test", User: "100", Resolver: res, Clock: clocktest.New(time.Unix(1000, 0))})
	waitRegistered(t, a)
	for _, ip := range []netip.Addr{up.addr.Addr(), other.Addr()} {
		if !a.fromProxy(ip) {
			t.Errorf("%s, a target of the registrar, not taken as the registrar", ip)
		}
	}
	if a.fromProxy(netip.MustParseAddr("127.0.0.4")) {
		t.Error("a stranger taken as the registrar")
	}
}

func TestInviteGoesToTheFirstTargetKeepingTheDomain(t *testing.T) {
	invites := make(chan *sip.Request, 4)
	callee := newRawPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			invites <- req.Clone()
			_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
		})
		srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	})
	res := &fakeResolver{targets: map[string][]netip.AddrPort{"flat.test": {callee.addr, silentPeer(t)}}}
	a := startAgent(t, Config{User: "100", Resolver: res})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, err := a.Dial(ctx, DialRequest{Targets: []string{"sip:201@flat.test"}, Media: offer(4000, false, "PCMU")})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 486 {
		t.Fatalf("Dial: %v, want the callee's 486", err)
	}
	inv := <-invites
	if inv.Recipient.Host != "flat.test" || inv.Recipient.User != "201" || inv.To().Address.Host != "flat.test" {
		t.Errorf("INVITE %s, To %s: want sip:201@flat.test in both", inv.Recipient.String(), inv.To().Value())
	}
}

func branch(req *sip.Request) string {
	b, _ := req.Via().Params.Get("branch")
	return b
}

func TestResolveNextHopForms(t *testing.T) {
	res := &fakeResolver{targets: map[string][]netip.AddrPort{
		"pbx.test": {netip.MustParseAddrPort("192.0.2.1:5070"), netip.MustParseAddrPort("192.0.2.2:5070")},
	}}
	a := &Agent{cfg: Config{Resolver: res}, transport: "TCP", listenIP: netip.MustParseAddr("::")}
	for _, tc := range []struct {
		in   string
		want string
		port int
	}{
		{"pbx.test", "192.0.2.1", 0},
		{"pbx.test:5070", "192.0.2.1", 5070},
		{"[2001:db8::1]:5071", "2001:db8::1", 5071},
		{"2001:db8::1", "2001:db8::1", 0},
	} {
		got, err := a.resolve(context.Background(), tc.in)
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("resolve(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
		if q := res.queries[len(res.queries)-1]; q.Port != tc.port || q.Transport != "tcp" || q.Family != sipdns.IPv6 {
			t.Errorf("resolve(%q) asked %+v, want port %d, tcp, IPv6", tc.in, q, tc.port)
		}
	}
	for _, bad := range []string{"pbx.test:99999", "pbx.test:x", "nowhere.test"} {
		if _, err := a.resolve(context.Background(), bad); err == nil || !strings.HasPrefix(err.Error(), "sipagent: resolve") {
			t.Errorf("resolve(%q): err %v, want a sipagent: resolve error", bad, err)
		}
	}

	// The target that answered last comes first.
	hop := &sip.Uri{Host: "pbx.test"}
	a.setPreferred(hop, netip.MustParseAddrPort("192.0.2.2:5070"), true)
	if got, _ := a.resolve(context.Background(), "pbx.test"); got != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("after 192.0.2.2 answered: %v first", got)
	}
	a.setPreferred(hop, netip.MustParseAddrPort("192.0.2.2:5070"), false)
	if got, _ := a.resolve(context.Background(), "pbx.test"); got != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("after 192.0.2.2 failed: %v first", got)
	}
}

// An INVITE to a host whose first target says nothing goes to the next
// after the per-target timeout, with no CANCEL to the silent one; the
// target that answered is tried first by the next call.
func TestInviteFailsOverWhenATargetIsSilent(t *testing.T) {
	dead, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	flat := startAgent(t, Config{User: "flat"})
	res := &fakeResolver{targets: map[string][]netip.AddrPort{
		"pbx.test": {dead.LocalAddr().(*net.UDPAddr).AddrPort(), flat.Addr()},
	}}
	door := startAgentTimeout(t, Config{User: "door", Resolver: res}, 300*time.Millisecond)
	waitEvent[RegistrationChanged](t, door)

	for i := range 2 {
		r := dialAsync(context.Background(), door, DialRequest{Targets: []string{"sip:flat@pbx.test"}, Media: offer(40000, false, "PCMU")})
		in := waitEvent[IncomingCall](t, flat)
		if _, err := in.Call.Accept(context.Background(), offer(41000, false, "PCMU")); err != nil {
			t.Fatalf("call %d: Accept: %v", i, err)
		}
		d := waitDial(t, r)
		if d.err != nil {
			t.Fatalf("call %d: Dial: %v", i, d.err)
		}
		if err := d.call.Hangup(context.Background()); err != nil {
			t.Fatalf("call %d: Hangup: %v", i, err)
		}
	}
	// The silent target got the first call's INVITE, retransmitted
	// until it was given up, and nothing else.
	if err := dead.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var methods []string
	calls := map[string]bool{}
	for {
		n, err := dead.Read(buf)
		if err != nil {
			break
		}
		msg := string(buf[:n])
		method, _, _ := strings.Cut(msg, " ")
		methods = append(methods, method)
		for line := range strings.Lines(msg) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Call-ID") {
				calls[strings.TrimSpace(v)] = true
			}
		}
	}
	if len(calls) != 1 || slices.ContainsFunc(methods, func(m string) bool { return m != "INVITE" }) {
		t.Errorf("the silent target got %v for %d calls; want only the first call's INVITE", methods, len(calls))
	}
}

func TestInviteFailsOverOn503(t *testing.T) {
	busy := newRawPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil))
		})
	})
	flat := startAgent(t, Config{User: "flat"})
	res := &fakeResolver{targets: map[string][]netip.AddrPort{"pbx.test": {busy.addr, flat.Addr()}}}
	door := startAgent(t, Config{User: "door", Resolver: res})
	r := dialAsync(context.Background(), door, DialRequest{Targets: []string{"sip:flat@pbx.test"}, Media: offer(40000, false, "PCMU")})
	in := waitEvent[IncomingCall](t, flat)
	if _, err := in.Call.Accept(context.Background(), offer(41000, false, "PCMU")); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	d := waitDial(t, r)
	if d.err != nil {
		t.Fatalf("Dial: %v", d.err)
	}
	_ = d.call.Hangup(context.Background())
}

// The target reached after two silent ones may still challenge: the
// failovers do not use up the rounds of digest.
func TestInviteAuthenticatesAfterFailover(t *testing.T) {
	silent := func() netip.AddrPort {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	pbx := newAnsweringPeer(t, func(req *sip.Request, tx sip.ServerTransaction) bool {
		return !challenged(req, tx)
	}, nil)
	res := &fakeResolver{targets: map[string][]netip.AddrPort{"pbx.test": {silent(), silent(), pbx.addr}}}
	door := startAgentTimeout(t, Config{User: "door", Password: "pw", Resolver: res}, 300*time.Millisecond)
	waitEvent[RegistrationChanged](t, door)
	d := waitDial(t, dialAsync(context.Background(), door, DialRequest{Targets: []string{"sip:flat@pbx.test"}, Media: offer(40000, false, "PCMU")}))
	if d.err != nil {
		t.Fatalf("Dial: %v", d.err)
	}
	_ = d.call.Hangup(context.Background())
}
