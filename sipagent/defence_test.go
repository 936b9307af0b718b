package sipagent

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock/clocktest"
)

var (
	stranger = netip.MustParseAddr("192.0.2.7")
	pbx      = netip.MustParseAddr("192.0.2.1")
)

func testDefence(t *testing.T, cfg DefenceConfig) (*defence, *clocktest.Fake) {
	t.Helper()
	clk := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d, err := newDefence(cfg, clk, func(ip netip.Addr) bool { return ip == pbx })
	if err != nil {
		t.Fatal(err)
	}
	return d, clk
}

// admitN sends n messages from ip and counts the admitted ones.
func admitN(d *defence, ip netip.Addr, n int) int {
	ok := 0
	for range n {
		if d.admit(ip, false) {
			ok++
		}
	}
	return ok
}

func TestDefenceBurstThenBlock(t *testing.T) {
	d, clk := testDefence(t, DefenceConfig{Rate: 2, Burst: 5, BlockFor: 30 * time.Second})
	if got := admitN(d, stranger, 8); got != 5 {
		t.Fatalf("admitted %d of 8, want the burst of 5", got)
	}
	st := d.stats()
	if st.RateLimited != 3 || st.Blocks != 1 || st.BlockedNow != 1 {
		t.Fatalf("stats %+v, want 3 rate-limited, 1 block, 1 blocked now", st)
	}
	// Blocked: even after the bucket would have refilled.
	clk.Advance(29 * time.Second)
	if d.admit(stranger, false) {
		t.Fatal("admitted while blocked")
	}
	// The bucket refills at the rate from the end of the block, not at
	// once: a flood that goes on gets a trickle through, not a burst.
	clk.Advance(2 * time.Second)
	if got := admitN(d, stranger, 6); got != 2 {
		t.Fatalf("a second after the block: admitted %d of 6, want the rate's 2", got)
	}
	if st := d.stats(); st.Blocks != 2 {
		t.Fatalf("stats %+v, want a second block", st)
	}
}

func TestDefenceRefillsAtRate(t *testing.T) {
	d, clk := testDefence(t, DefenceConfig{Rate: 4, Burst: 4})
	for i := range 20 {
		if got := admitN(d, stranger, 4); got != 4 {
			t.Fatalf("second %d: admitted %d of 4 at the rate", i, got)
		}
		clk.Advance(time.Second)
	}
	if st := d.stats(); st.RateLimited != 0 {
		t.Fatalf("stats %+v, want nothing dropped at the rate", st)
	}
}

func TestDefenceTrusted(t *testing.T) {
	d, _ := testDefence(t, DefenceConfig{Burst: 1})
	if got := admitN(d, pbx, 100); got != 100 {
		t.Fatalf("registrar: admitted %d of 100", got)
	}
	mapped := netip.AddrFrom16(pbx.As16())
	if !d.admit(mapped, false) {
		t.Fatal("v4-mapped registrar address not trusted")
	}
	release := d.trustPeer(stranger)
	if got := admitN(d, stranger, 100); got != 100 {
		t.Fatalf("call peer: admitted %d of 100", got)
	}
	release()
	release() // a second release must not end another call's exemption
	if got := admitN(d, stranger, 3); got != 1 {
		t.Fatalf("after the call: admitted %d of 3, want the burst of 1", got)
	}
}

func TestDefenceTableBounded(t *testing.T) {
	d, _ := testDefence(t, DefenceConfig{Burst: 1, Sources: 3})
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		d.admit(ip, false)
		d.admit(ip, false)
	}
	d.mu.Lock()
	n, l := len(d.sources), d.lru.Len()
	d.mu.Unlock()
	if n != 3 || l != 3 {
		t.Fatalf("table holds %d sources (lru %d), want 3", n, l)
	}
	if st := d.stats(); st.BlockedNow != 3 || st.Blocks != 1000 {
		t.Fatalf("stats %+v, want 3 blocked now of 1000 blocks", st)
	}
}

func TestDefenceScanner(t *testing.T) {
	d, _ := testDefence(t, DefenceConfig{Scanners: []string{"EvilDialer"}})
	req := func(ua string) []byte {
		return fmt.Appendf(nil, "OPTIONS sip:100@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1\r\n"+
			"%s\r\nContent-Length: 0\r\n\r\n", ua)
	}
	for _, ua := range []string{
		"User-Agent: friendly-scanner", "user-agent:   SIPVicious 0.3", "USER-AGENT: sipcli/v1.8",
		"User-Agent : VaxSIPUserAgent/3.1", "User-Agent: pplsip", "User-Agent: iWar", "User-Agent: evildialer 2",
	} {
		if !d.rawScanner(req(ua)) {
			t.Errorf("%q: not taken for a scanner", ua)
		}
	}
	for _, ua := range []string{
		"User-Agent: Asterisk PBX 20.5.0", "User-Agent: baresip v3.10.0", "User-Agent: Zoiper SIPClient",
		"Subject: friendly-scanner", "X-User-Agent-Note: sipvicious",
	} {
		if d.rawScanner(req(ua)) {
			t.Errorf("%q: taken for a scanner", ua)
		}
	}
	body := "INVITE sip:100@192.0.2.2 SIP/2.0\r\nContent-Length: 27\r\n\r\nUser-Agent: friendly-scanner"
	if d.rawScanner([]byte(body)) {
		t.Error("a body line taken for a header")
	}
	if d.rawScanner([]byte("SIP/2.0 200 OK\r\nUser-Agent: friendly-scanner\r\n\r\n")) {
		t.Error("a response taken for a scanner's request")
	}
	for _, b := range []string{"", "\r\n\r\n", "OPTIONS", "OPTIONS sip:x SIP/2.0\r\nUser-Agent", "\n\n\n:"} {
		if d.rawScanner([]byte(b)) {
			t.Errorf("%q: taken for a scanner", b)
		}
	}

	if d.admit(stranger, true) || d.admit(stranger, false) {
		t.Fatal("scanner's source not blocked")
	}
	if d.admit(pbx, true) || !d.admit(pbx, false) {
		t.Fatal("registrar: a scanner request must be dropped, but the registrar not blocked")
	}
	if st := d.stats(); st.Scanners != 2 || st.Blocks != 1 || st.RateLimited != 1 {
		t.Fatalf("stats %+v, want 2 scanner drops, one block, one rate-limited", st)
	}
}

func TestDefenceConfigErrors(t *testing.T) {
	for _, cfg := range []DefenceConfig{
		{Rate: -1}, {Burst: -1}, {BlockFor: -time.Second}, {Sources: -1}, {Scanners: []string{" "}},
	} {
		d, err := newDefence(cfg, nil, nil)
		if err == nil || d != nil || !strings.HasPrefix(err.Error(), "sipagent: defence: ") {
			t.Errorf("%+v: got %v, %v; want a sipagent: defence: error", cfg, d, err)
		}
	}
	if _, err := New(Config{Listen: "127.0.0.1:0", Defence: DefenceConfig{Rate: -1}}); err == nil {
		t.Error("New accepted a negative rate")
	}
}

// TestFilterConnDropsBeforeSipgo reads through the wrapper sipgo reads
// from: of a flood, only the burst comes through, then the next datagram
// from an exempt source.
func TestFilterConnDropsBeforeSipgo(t *testing.T) {
	clk := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	marker := netip.MustParseAddr("127.0.0.2")
	d, err := newDefence(DefenceConfig{Burst: 3}, clk, func(ip netip.Addr) bool { return ip == marker })
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := d.packetConn(ln, nil)
	send := func(ip net.IP, msg string) {
		s, err := net.DialUDP("udp4", &net.UDPAddr{IP: ip}, ln.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ln.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
		t.Fatal(err)
	}
	read := func(n int) []string {
		buf := make([]byte, 1500)
		var got []string
		for range n {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(buf[:n]))
		}
		return got
	}

	for i := range 10 {
		send(net.IPv4(127, 0, 0, 1), fmt.Sprintf("flood %d", i))
	}
	send(marker.AsSlice(), "marker")
	if got, want := strings.Join(read(4), ","), "flood 0,flood 1,flood 2,marker"; got != want {
		t.Fatalf("read %q, want %q", got, want)
	}

	// A scanner's request blocks its source: what it sends next is dropped too.
	scanner := net.IPv4(127, 0, 0, 3)
	send(scanner, "OPTIONS sip:x SIP/2.0\r\nUser-Agent: friendly-scanner\r\n\r\n")
	send(scanner, "OPTIONS sip:x SIP/2.0\r\n\r\n")
	send(marker.AsSlice(), "marker")
	if got, want := strings.Join(read(1), ","), "marker"; got != want {
		t.Fatalf("read %q, want %q", got, want)
	}
	if st := d.stats(); st.RateLimited != 8 || st.Scanners != 1 || st.BlockedNow != 2 {
		t.Fatalf("stats %+v, want 8 rate-limited, 1 scanner, 2 blocked", st)
	}
}

// TestDefenceAdmitRequest checks parsed requests: over UDP filterConn
// admitted the datagram already; stream transports are checked per request.
func TestDefenceAdmitRequest(t *testing.T) {
	d, _ := testDefence(t, DefenceConfig{Burst: 2})
	req := func(transport, ua string) *sip.Request {
		r := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", User: "100", Host: "192.0.2.2"})
		r.SetTransport(transport)
		r.SetSource(netip.AddrPortFrom(stranger, 5060).String())
		if ua != "" {
			r.AppendHeader(sip.NewHeader("User-Agent", ua))
		}
		return r
	}
	if !d.admitRequest(req("UDP", "friendly-scanner")) {
		t.Fatal("a UDP request was checked twice")
	}
	parsed, err := sip.ParseMessage([]byte("OPTIONS sip:100@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bK1\r\n" +
		"User-Agent: friendly-scanner\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !d.admitRequest(parsed.(*sip.Request)) {
		t.Fatal("a request from no transport was checked for the transport its Via claims")
	}
	if !d.admitRequest(req("TCP", "softphone")) || !d.admitRequest(req("TLS", "")) {
		t.Fatal("the burst was not admitted over TCP and TLS")
	}
	if d.admitRequest(req("TCP", "softphone")) {
		t.Fatal("a stream request over the burst was admitted")
	}
	if st := d.stats(); st.RateLimited != 1 || st.BlockedNow != 1 {
		t.Fatalf("stats %+v, want one rate-limited, one blocked", st)
	}
	d2, _ := testDefence(t, DefenceConfig{})
	if d2.admitRequest(req("TCP", "sipcli/v1.8")) {
		t.Fatal("a scanner's TCP request was admitted")
	}
}

// TestDefenceDropAllocatesNothing: a flood's datagrams cost no garbage.
func TestDefenceDropAllocatesNothing(t *testing.T) {
	d, _ := testDefence(t, DefenceConfig{Burst: 1})
	msg := []byte("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7\r\nUser-Agent: softphone\r\nContent-Length: 0\r\n\r\n")
	d.admit(stranger, false)
	if n := testing.AllocsPerRun(100, func() {
		if d.admit(stranger, d.rawScanner(msg)) {
			t.Fatal("admitted over the burst")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per dropped datagram, want 0", n)
	}
}

// TestAgentDropsStrangersUnanswered sends OPTIONS over UDP as a scanner
// and as a flooding stranger: only what the defence admits is answered,
// and the counters say why the rest was not.
func TestAgentDropsStrangersUnanswered(t *testing.T) {
	a := startAgent(t, Config{Defence: DefenceConfig{Burst: 2}})
	dial := func(ip net.IP) *net.UDPConn {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: ip}, net.UDPAddrFromAddrPort(a.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	options := func(c *net.UDPConn, callID, ua string) {
		local := c.LocalAddr().String()
		msg := fmt.Sprintf("OPTIONS sip:100@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s\r\nMax-Forwards: 70\r\n"+
			"From: <sip:x@%s>;tag=1\r\nTo: <sip:100@%s>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nUser-Agent: %s\r\nContent-Length: 0\r\n\r\n",
			a.Addr(), local, callID, local, a.Addr(), callID, ua)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	answered := func(c *net.UDPConn) string {
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		res := string(buf[:n])
		if !strings.HasPrefix(res, "SIP/2.0 200 ") {
			t.Fatalf("answer %q, want 200", res)
		}
		for line := range strings.Lines(res) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Call-ID") {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("answer without Call-ID: %q", res)
		return ""
	}

	scanner := dial(net.IPv4(127, 0, 0, 1))
	options(scanner, "scan", "friendly-scanner")
	flood := dial(net.IPv4(127, 0, 0, 2))
	for _, id := range []string{"f1", "f2", "f3", "f4"} {
		options(flood, id, "softphone")
	}
	// sipgo handles requests concurrently: the answers come in any order.
	if got := []string{answered(flood), answered(flood)}; !slices.Equal(slices.Sorted(slices.Values(got)), []string{"f1", "f2"}) {
		t.Fatalf("flood answered %v, want f1 and f2 (the burst)", got)
	}
	other := dial(net.IPv4(127, 0, 0, 3))
	options(other, "o1", "softphone")
	if got := answered(other); got != "o1" {
		t.Fatalf("answered %s, want o1: another source has its own bucket", got)
	}
	if st := a.DefenceStats(); st.Scanners != 1 || st.RateLimited != 2 || st.BlockedNow != 2 {
		t.Fatalf("stats %+v, want 1 scanner, 2 rate-limited, 2 blocked now", st)
	}
}

// A stranger sending from ever new ports, within its rate, leaves sipgo's
// pool of remote addresses bounded: the serve is renewed on the same
// socket, and requests are still answered after it.
func TestUDPServeRenewedForgetsSources(t *testing.T) {
	a, stop := runAgent(t, Config{Defence: DefenceConfig{Rate: 1e6, Burst: 1e6}}, func(a *Agent) {
		// The grace covers the request read just before a renewal, here
		// under the race detector.
		a.renewAfter, a.renewGrace = 20, 500*time.Millisecond
	})
	t.Cleanup(stop)
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateDisabled {
		t.Fatalf("first event %+v, want disabled", e)
	}
	pool := a.ua.TransportLayer().Pool("udp")
	buf := make([]byte, 4096)
	for i := range 100 {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(a.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		local := c.LocalAddr().String()
		msg := fmt.Sprintf("OPTIONS sip:100@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-r%d\r\nMax-Forwards: 70\r\n"+
			"From: <sip:x@%s>;tag=1\r\nTo: <sip:100@%s>\r\nCall-ID: r%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			a.Addr(), local, i, local, a.Addr(), i)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if err := c.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		c.Close()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200 ") {
			t.Fatalf("request %d answered %q", i, buf[:n])
		}
	}
	// Each serve remembers at most renewAfter sources (plus the socket's
	// own entry); without renewals the pool would hold all 100.
	if n := pool.Size(); n > 25 {
		t.Errorf("sipgo's UDP pool holds %d addresses after 100 sources; want at most 25", n)
	}
}
