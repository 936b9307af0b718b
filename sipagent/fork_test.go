package sipagent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// forkProxy is a raw UDP peer playing a forking proxy: it answers one
// INVITE with hand-made responses from several forks, each fork a To tag.
type forkProxy struct {
	t    *testing.T
	conn *net.UDPConn
	door netip.AddrPort
	inv  *sip.Request
}

// response builds a response to the INVITE from fork tag, with an SDP
// answer for media when it is valid and a Contact naming the fork.
func (p *forkProxy) response(code int, reason, tag string, media netip.AddrPort) *sip.Response {
	p.t.Helper()
	var body []byte
	if media.IsValid() {
		var err error
		if body, err = buildSDP(media, []Codec{{"PCMU", 0}}, 0, 0); err != nil {
			p.t.Fatal(err)
		}
	}
	res := sip.NewResponseFromRequest(p.inv, code, reason, body)
	res.To().Params.Add("tag", tag)
	addr := p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: tag, Host: addr.Addr().String(), Port: int(addr.Port())}})
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	return res
}

func (p *forkProxy) send(res *sip.Response) {
	p.t.Helper()
	if _, err := p.conn.WriteTo([]byte(res.String()), net.UDPAddrFromAddrPort(p.door)); err != nil {
		p.t.Fatal(err)
	}
}

// expect reads the next request and checks its method and To tag.
func (p *forkProxy) expect(method sip.RequestMethod, tag string) *sip.Request {
	p.t.Helper()
	req := readRequest(p.t, p.conn)
	if got := toTagOf(req); req.Method != method || got != tag {
		p.t.Fatalf("got %s with To tag %q, want %s with To tag %q", req.Method, got, method, tag)
	}
	return req
}

func toTagOf(req *sip.Request) string {
	if to := req.To(); to != nil {
		tag, _ := to.Params.Get("tag")
		return tag
	}
	return ""
}

// received waits for one value from a callback of Dial.
func received[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLong):
		t.Fatalf("no %s", what)
		var zero T
		return zero
	}
}

// TestDialForkedAnswers: 180 from fork a, 183 with SDP from fork b, 200
// from a, then 200 from b. The call goes to a; b's 200 is ACKed (again
// for its retransmission) and ended with one BYE (RFC 3261 section
// 13.2.2.4); a's ACK is not re-sent for it; nothing is left behind.
func TestDialForkedAnswers(t *testing.T) {
	base := runtime.NumGoroutine()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	door, stop := runAgent(t, Config{User: "door"})
	defer stop()
	waitEvent[RegistrationChanged](t, door)

	rang := make(chan string, 4)
	early := make(chan MediaAnswer, 4)
	res := dialAsync(context.Background(), door, DialRequest{
		Targets:      []string{"sip:flat@" + conn.LocalAddr().String()},
		Media:        offer(40000, false, "PCMU"),
		OnRinging:    func(target string) { rang <- target },
		OnEarlyMedia: func(_ string, m MediaAnswer) { early <- m },
	})
	p := &forkProxy{t: t, conn: conn, door: door.Addr(), inv: readRequest(t, conn)}
	if p.inv.Method != sip.INVITE {
		t.Fatalf("got %s, want INVITE", p.inv.Method)
	}
	mediaA := netip.MustParseAddrPort("127.0.0.1:42010")
	mediaB := netip.MustParseAddrPort("127.0.0.1:42020")
	// sipgo handles each datagram on its own goroutine: wait for each
	// provisional response to be taken in before sending the next.
	p.send(p.response(sip.StatusRinging, "Ringing", "a", netip.AddrPort{}))
	received(t, rang, "ringing")
	p.send(p.response(sip.StatusSessionInProgress, "Session Progress", "b", mediaB))
	if m := received(t, early, "early media"); m.Remote != mediaB {
		t.Errorf("early media from %v, want fork b's %v", m.Remote, mediaB)
	}
	okA := p.response(sip.StatusOK, "OK", "a", mediaA)
	p.send(okA)
	p.expect(sip.ACK, "a")
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	if m := r.call.Media(); m.Remote != mediaA {
		t.Errorf("call media to %v, want fork a's %v", m.Remote, mediaA)
	}

	okB := p.response(sip.StatusOK, "OK", "b", mediaB)
	p.send(okB)
	p.expect(sip.ACK, "b")
	bye := p.expect(sip.BYE, "b")
	if bye.Recipient.User != "b" {
		t.Errorf("BYE to %s, want fork b's Contact", bye.Recipient.String())
	}
	if got, want := bye.CSeq().SeqNo, p.inv.CSeq().SeqNo+1; got != want {
		t.Errorf("BYE CSeq %d, want %d", got, want)
	}
	p.send(sip.NewResponseFromRequest(bye, sip.StatusOK, "OK", nil))
	// A retransmission of b's 200 is ACKed again, without a second BYE.
	p.send(okB)
	p.expect(sip.ACK, "b")

	door.mu.Lock()
	calls := len(door.calls)
	wantID, err := sip.DialogIDFromResponse(okA)
	if err != nil {
		t.Fatal(err)
	}
	found := door.calls[wantID] == r.call
	door.mu.Unlock()
	if calls != 1 || !found {
		t.Errorf("agent has %d calls (fork a's found: %v), want exactly fork a's", calls, found)
	}
	if n := len(rang) + len(early); n != 0 {
		t.Errorf("%d more ringing or early media reports, want none", n)
	}

	hung := make(chan error, 1)
	go func() { hung <- r.call.Hangup(context.Background()) }()
	byeA := p.expect(sip.BYE, "a")
	p.send(sip.NewResponseFromRequest(byeA, sip.StatusOK, "OK", nil))
	if err := <-hung; err != nil {
		t.Errorf("Hangup: %v", err)
	}
	// The hangup ended the INVITE's transaction; a fork's 200 that comes
	// later is still ACKed and its dialog ended.
	okC := p.response(sip.StatusOK, "OK", "c", netip.MustParseAddrPort("127.0.0.1:42030"))
	p.send(okC)
	p.expect(sip.ACK, "c")
	byeC := p.expect(sip.BYE, "c")
	p.send(sip.NewResponseFromRequest(byeC, sip.StatusOK, "OK", nil))
	// A 200 for a Call-ID that is not ours gets nothing.
	forged := okC.Clone()
	forged.ReplaceHeader(sip.NewHeader("Call-ID", "not-ours"))
	p.send(forged)
	if err := conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if n, _, err := conn.ReadFrom(make([]byte, 2048)); err == nil {
		t.Errorf("a 200 for another Call-ID got a %d-byte answer", n)
	}
	stop()
	door.mu.Lock()
	left := len(door.calls)
	door.mu.Unlock()
	if left != 0 {
		t.Errorf("%d calls left after Run, want none", left)
	}
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(waitLong); n > base && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	if n > base {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Run, %d before the call:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

// TestForkRequest builds the ACK and BYE for a forked 2xx from the
// response alone, with its route set (RFC 3261 section 12.1.2).
func TestForkRequest(t *testing.T) {
	for _, tc := range []struct {
		name        string
		recordRoute []string
		wantURI     string
		wantRoutes  []string
	}{
		{name: "direct", wantURI: "sip:b@192.0.2.7:5062"},
		{
			name:        "loose routers",
			recordRoute: []string{"<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"},
			wantURI:     "sip:b@192.0.2.7:5062",
			wantRoutes:  []string{"<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"},
		},
		{
			name:        "strict router",
			recordRoute: []string{"<sip:p1.example.com>"},
			wantURI:     "sip:p1.example.com",
			wantRoutes:  []string{"<sip:p1.example.com>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := sip.NewResponse(sip.StatusOK, "OK")
			res.AppendHeader(&sip.FromHeader{Address: mustURI(t, "sip:door@192.0.2.1"), Params: sip.HeaderParams{{K: "tag", V: "ours"}}})
			res.AppendHeader(&sip.ToHeader{Address: mustURI(t, "sip:flat@192.0.2.9"), Params: sip.HeaderParams{{K: "tag", V: "b"}}})
			callID := sip.CallIDHeader("fork-1")
			res.AppendHeader(&callID)
			res.AppendHeader(&sip.CSeqHeader{SeqNo: 7, MethodName: sip.INVITE})
			res.AppendHeader(&sip.ContactHeader{Address: mustURI(t, "sip:b@192.0.2.7:5062")})
			for _, rr := range tc.recordRoute {
				res.AppendHeader(sip.NewHeader("Record-Route", rr))
			}
			for method, seq := range map[sip.RequestMethod]uint32{sip.ACK: 7, sip.BYE: 8} {
				req, err := forkRequest(method, res, "UDP")
				if err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				if got := req.Recipient.String(); got != tc.wantURI {
					t.Errorf("%s to %s, want %s", method, got, tc.wantURI)
				}
				var routes []string
				for _, h := range req.GetHeaders("Route") {
					routes = append(routes, h.Value())
				}
				if !slices.Equal(routes, tc.wantRoutes) {
					t.Errorf("%s routes %q, want %q", method, routes, tc.wantRoutes)
				}
				if c := req.CSeq(); c.SeqNo != seq || c.MethodName != method {
					t.Errorf("%s CSeq %s, want %d %s", method, c.Value(), seq, method)
				}
				if tag := toTagOf(req); tag != "b" || req.CallID().Value() != "fork-1" {
					t.Errorf("%s in dialog %s/%s, want fork-1/b", method, req.CallID().Value(), tag)
				}
				if from, _ := req.From().Params.Get("tag"); from != "ours" {
					t.Errorf("%s From tag %q, want ours", method, from)
				}
			}
		})
	}
	if _, err := forkRequest(sip.ACK, sip.NewResponse(sip.StatusOK, "OK"), "UDP"); err == nil {
		t.Error("forkRequest without headers succeeded")
	}
}

// TestDialManyForksRinging: a forking proxy passes on the 180s of twenty
// phones before one answers; the call comes about (sipgo alone gives up
// after ten responses).
func TestDialManyForksRinging(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The proxy here is no registrar: let its burst through the defence.
	door := startAgent(t, Config{User: "door", Defence: DefenceConfig{Burst: 100}})
	rang := make(chan string, 16)
	res := dialAsync(context.Background(), door, DialRequest{
		Targets:   []string{"sip:flat@" + conn.LocalAddr().String()},
		Media:     offer(40000, false, "PCMU"),
		OnRinging: func(target string) { rang <- target },
	})
	p := &forkProxy{t: t, conn: conn, door: door.Addr(), inv: readRequest(t, conn)}
	p.send(p.response(sip.StatusTrying, "Trying", "", netip.AddrPort{}))
	for i := range 20 {
		p.send(p.response(sip.StatusRinging, "Ringing", fmt.Sprintf("f%d", i), netip.AddrPort{}))
	}
	received(t, rang, "ringing")
	p.send(p.response(sip.StatusOK, "OK", "f19", netip.MustParseAddrPort("127.0.0.1:42010")))
	p.expect(sip.ACK, "f19")
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	if n := len(rang); n != 0 {
		t.Errorf("%d more ringing reports, want one", n)
	}
	hung := make(chan error, 1)
	go func() { hung <- r.call.Hangup(context.Background()) }()
	bye := p.expect(sip.BYE, "f19")
	p.send(sip.NewResponseFromRequest(bye, sip.StatusOK, "OK", nil))
	if err := <-hung; err != nil {
		t.Errorf("Hangup: %v", err)
	}
}
