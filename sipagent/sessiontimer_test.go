package sipagent

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock/clocktest"
)

// timerPeer is a hand-driven SIP phone on loopback: it calls an agent or
// answers it, and answers the agent's in-dialog requests with 200 OK and
// answerHeaders, passing each request on to reqs.
type timerPeer struct {
	*rawPeer
	reqs chan *sip.Request

	mu            sync.Mutex
	answerHeaders []sip.Header
	allow         string
	proxy         bool // answers as a proxy would pass the peer's 2xx on: no Contact of its own
	self          netip.AddrPort
	lastOK        *sip.Response // to the last INVITE
}

func newTimerPeer(t *testing.T) *timerPeer {
	t.Helper()
	p := &timerPeer{reqs: make(chan *sip.Request, 16), allow: "INVITE, ACK, BYE, CANCEL, UPDATE"}
	answer := func(req *sip.Request, tx sip.ServerTransaction) {
		p.mu.Lock()
		hdrs, allow, proxy, self := p.answerHeaders, p.allow, p.proxy, p.self
		p.mu.Unlock()
		var body []byte
		if req.IsInvite() {
			body = []byte(peerSDP(40000, 1))
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", body)
		if to := res.To(); to != nil && !to.Params.Has("tag") {
			to.Params.Add("tag", "peer")
		}
		if !proxy {
			res.AppendHeader(&sip.ContactHeader{Address: mustURI(t, "sip:peer@"+self.String())})
		}
		res.AppendHeader(sip.NewHeader("Allow", allow))
		if body != nil {
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		if req.IsInvite() {
			p.mu.Lock()
			p.lastOK = res
			p.mu.Unlock()
		}
		// Queued before the response goes out, so that it comes before
		// the ACK the response triggers.
		p.reqs <- req
		_ = tx.Respond(res)
	}
	raw := newRawPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(answer)
		srv.OnUpdate(answer)
		srv.OnBye(answer)
		srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { p.reqs <- req })
	})
	p.mu.Lock()
	p.rawPeer, p.self = raw, raw.addr
	p.mu.Unlock()
	return p
}

func (p *timerPeer) set(allow string, hdrs ...sip.Header) {
	p.mu.Lock()
	p.allow, p.answerHeaders = allow, hdrs
	p.mu.Unlock()
}

func (p *timerPeer) next(t *testing.T, method sip.RequestMethod) *sip.Request {
	t.Helper()
	select {
	case req := <-p.reqs:
		if req.Method != method {
			t.Fatalf("peer got %s, want %s", req.Method, method)
		}
		return req
	case <-time.After(waitLong):
		t.Fatalf("peer got no %s", method)
		return nil
	}
}

func (p *timerPeer) nothing(t *testing.T) {
	t.Helper()
	select {
	case req := <-p.reqs:
		t.Fatalf("unexpected %s", req.StartLine())
	default:
	}
}

// call INVITEs a with hdrs and returns the peer's dialog and a's call once
// a has accepted and the peer has ACKed.
func (p *timerPeer) call(t *testing.T, a *Agent, hdrs ...sip.Header) (*sipgo.DialogClientSession, *Call) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	dua := sipgo.DialogUA{Client: p.client, ContactHDR: sip.ContactHeader{Address: mustURI(t, "sip:peer@"+p.addr.String())}}
	req := sip.NewRequest(sip.INVITE, mustURI(t, target("flat", a)))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(peerSDP(40000, 1)))
	cs, err := dua.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	in := waitEvent[IncomingCall](t, a)
	accepted := make(chan error, 1)
	go func() {
		_, err := in.Call.Accept(ctx, offer(41000, true, "PCMU"))
		accepted <- err
	}()
	if err := cs.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("INVITE: %v", err)
	}
	// A Record-Route names a proxy that forwards nothing: ACK directly.
	cs.InviteResponse.RemoveHeader("Record-Route")
	if err := cs.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("Accept: %v", err)
	}
	return cs, in.Call
}

func header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

func TestSessionTimerWeRefresh(t *testing.T) {
	clk := clocktest.New(time.Unix(1e9, 0))
	flat := startAgent(t, Config{User: "flat", Clock: clk})
	peer := newTimerPeer(t)
	cs, call := peer.call(t, flat, sip.NewHeader("Session-Expires", "90;refresher=uas"), sip.NewHeader("Supported", "timer"),
		sip.NewHeader("Allow", "INVITE, ACK, BYE, UPDATE"))
	if se := header(cs.InviteResponse, "Session-Expires"); se != "90;refresher=uas" {
		t.Errorf("200 Session-Expires %q", se)
	}
	if req := header(cs.InviteResponse, "Require"); req != "timer" {
		t.Errorf("200 Require %q", req)
	}
	sent := mustParseSDP(t, cs.InviteResponse.Body())

	peer.set("INVITE, ACK, BYE, UPDATE", sip.NewHeader("Session-Expires", "90;refresher=uac"))
	clk.Advance(45*time.Second - time.Millisecond)
	peer.nothing(t)
	clk.Advance(time.Millisecond)
	// The peer allows UPDATE: the refresh is one, without a body.
	up := peer.next(t, sip.UPDATE)
	if se := header(up, "Session-Expires"); se != "90;refresher=uac" || len(up.Body()) != 0 {
		t.Errorf("refresh UPDATE: Session-Expires %q, body %q", se, up.Body())
	}
	// The 2xx restarts the interval: the next refresh is 45 s later.
	clk.WaitForTimers(2)
	if d, _ := clk.Next(); d != 45*time.Second {
		t.Errorf("next timer in %v, want 45s", d)
	}

	// Now without UPDATE: a re-INVITE with our SDP, o= unchanged.
	peer.set("INVITE, ACK, BYE", sip.NewHeader("Session-Expires", "120;refresher=uac"))
	call.mu.Lock()
	call.dlg.peerAllow = "INVITE, ACK, BYE"
	call.mu.Unlock()
	clk.Advance(45 * time.Second)
	inv := peer.next(t, sip.INVITE)
	if l := mustParseSDP(t, inv.Body()); l.id != sent.id || l.ver != sent.ver || !l.sameMedia(sent) {
		t.Errorf("refresh re-INVITE SDP %+v, want %+v", l, sent)
	}
	if ack := peer.next(t, sip.ACK); ack.CSeq().SeqNo != inv.CSeq().SeqNo {
		t.Errorf("ACK CSeq %d for re-INVITE %d", ack.CSeq().SeqNo, inv.CSeq().SeqNo)
	}
	// The peer did not see the ACK and sends its 2xx again: ACKed again.
	peer.mu.Lock()
	ok := peer.lastOK
	peer.mu.Unlock()
	if err := peer.ua.TransportLayer().WriteMsg(ok); err != nil {
		t.Fatal(err)
	}
	if ack := peer.next(t, sip.ACK); ack.CSeq().SeqNo != inv.CSeq().SeqNo {
		t.Errorf("second ACK CSeq %d for re-INVITE %d", ack.CSeq().SeqNo, inv.CSeq().SeqNo)
	}
	clk.WaitForTimers(2)
	if d, _ := clk.Next(); d != 60*time.Second {
		t.Errorf("after a 120 s refresh, next timer in %v, want 60s", d)
	}
	noEvent[MediaChanged](t, flat)

	// The call's end stops its timers.
	if err := call.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	peer.next(t, sip.BYE)
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers left after the call", n)
	}
}

func TestSessionTimerPeerStopsRefreshing(t *testing.T) {
	clk := clocktest.New(time.Unix(1e9, 0))
	flat := startAgent(t, Config{User: "flat", Clock: clk})
	peer := newTimerPeer(t)
	// No refresher named and the peer supports timers: it refreshes.
	cs, call := peer.call(t, flat, sip.NewHeader("Session-Expires", "90"), sip.NewHeader("Supported", "timer"))
	if se := header(cs.InviteResponse, "Session-Expires"); se != "90;refresher=uac" {
		t.Errorf("200 Session-Expires %q", se)
	}
	clk.Advance(40 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	up := sip.NewRequest(sip.UPDATE, cs.InviteResponse.Contact().Address)
	up.AppendHeader(sip.NewHeader("Session-Expires", "90;refresher=uac"))
	up.AppendHeader(sip.NewHeader("Supported", "timer"))
	res, err := cs.Do(ctx, up)
	if err != nil || res.StatusCode != 200 || header(res, "Session-Expires") != "90;refresher=uac" {
		t.Fatalf("peer's refresh: %v %v", res, err)
	}
	// Expiry is 90 s after the refresh; we end the call min(32, 90/3) = 30 s
	// before it.
	if d, _ := clk.Next(); d != 60*time.Second {
		t.Fatalf("next timer in %v, want 60s", d)
	}
	clk.Advance(60*time.Second - time.Millisecond)
	peer.nothing(t)
	clk.Advance(time.Millisecond)
	peer.next(t, sip.BYE)
	if e := waitEvent[CallEnded](t, flat); e.Call != call || e.Reason != ReasonSessionExpired {
		t.Errorf("CallEnded %+v", e)
	}
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers left after the call", n)
	}
}

func TestSessionTimerTooSmall(t *testing.T) {
	flat := startAgent(t, Config{User: "flat"})
	peer := newRawPeer(t, nil)
	req := sip.NewRequest(sip.INVITE, mustURI(t, target("flat", flat)))
	req.AppendHeader(&sip.ContactHeader{Address: mustURI(t, "sip:peer@"+peer.addr.String())})
	req.AppendHeader(sip.NewHeader("Session-Expires", "60"))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody([]byte(peerSDP(40000, 1)))
	res := peer.do(t, req)
	if res.StatusCode != 422 || header(res, "Min-SE") != "90" {
		t.Errorf("got %s Min-SE %q, want 422 with Min-SE 90", res.StartLine(), header(res, "Min-SE"))
	}
	noEvent[IncomingCall](t, flat)
}

func TestSessionTimerOutgoingCall(t *testing.T) {
	clk := clocktest.New(time.Unix(1e9, 0))
	door := startAgent(t, Config{User: "door", Clock: clk})
	peer := newTimerPeer(t)
	peer.set("INVITE, ACK, BYE", sip.NewHeader("Session-Expires", "90;refresher=uac"))
	res := dialAsync(context.Background(), door, DialRequest{Targets: []string{"sip:peer@" + peer.addr.String()}, Media: offer(41000, false, "PCMU", "PCMA")})
	peer.next(t, sip.INVITE)
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	peer.next(t, sip.ACK)
	r.call.startSessionTimer(r.call.cs.InviteResponse)
	clk.Advance(45 * time.Second)
	inv := peer.next(t, sip.INVITE)
	ours := mustParseSDP(t, r.call.cs.InviteRequest.Body())
	if l := mustParseSDP(t, inv.Body()); l.id != ours.id || l.ver != ours.ver {
		t.Errorf("refresh o= %d %d, want %d %d", l.id, l.ver, ours.id, ours.ver)
	}
	if !strings.HasSuffix(header(inv, "Session-Expires"), "refresher=uac") {
		t.Errorf("refresh Session-Expires %q", header(inv, "Session-Expires"))
	}
	peer.next(t, sip.ACK)
	_ = r.call.Hangup(context.Background())
	peer.next(t, sip.BYE)
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers left after the call", n)
	}
}

func TestSessionTimerHeaders(t *testing.T) {
	a := &Agent{}
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", Host: "192.0.2.1"})
	a.sessionTimerHeaders(req)
	if header(req, "Supported") != "timer" || header(req, "Session-Expires") != "1800" || header(req, "Min-SE") != "90" {
		t.Errorf("headers: %s", req.String())
	}
	for v, ok := range map[string]bool{"90": true, "1800;refresher=uac": true, "x": false, "0": false, "": false} {
		r := sip.NewRequest(sip.UPDATE, sip.Uri{Scheme: "sip", Host: "192.0.2.1"})
		r.AppendHeader(sip.NewHeader("Session-Expires", v))
		if _, _, _, err := parseSessionExpires(r); (err == nil) != ok {
			t.Errorf("Session-Expires %q: err %v", v, err)
		}
	}
}

// routeValues lists a request's Route header values in order.
func routeValues(req *sip.Request) []string {
	var out []string
	for _, h := range req.GetHeaders("Route") {
		out = append(out, h.Value())
	}
	return out
}

func TestInDialogRequestsFollowRecordRoute(t *testing.T) {
	t.Run("incoming call: the INVITE's order", func(t *testing.T) {
		flat := startAgent(t, Config{User: "flat"})
		peer, proxy := newTimerPeer(t), newTimerPeer(t)
		proxy.mu.Lock()
		proxy.proxy = true
		proxy.mu.Unlock()
		rr := "<sip:" + proxy.addr.String() + ";lr>"
		cs, call := peer.call(t, flat, sip.NewHeader("Record-Route", rr), sip.NewHeader("Allow", "INVITE, ACK, BYE, UPDATE"),
			sip.NewHeader("Session-Expires", "90;refresher=uas"))
		// Our refresh and our BYE go through the proxy, to the peer's Contact.
		if err := call.refresh(context.Background(), 90*time.Second); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		up := proxy.next(t, sip.UPDATE)
		if got := routeValues(up); len(got) != 1 || got[0] != rr || up.Recipient.Port != int(peer.addr.Port()) {
			t.Errorf("UPDATE to %s with Route %q", up.Recipient.String(), got)
		}
		_ = call.Hangup(context.Background())
		bye := proxy.next(t, sip.BYE)
		if got := routeValues(bye); len(got) != 1 || got[0] != rr || bye.Recipient.Port != int(peer.addr.Port()) {
			t.Errorf("BYE to %s with Route %q", bye.Recipient.String(), got)
		}
		peer.nothing(t)
		_ = cs
	})
	t.Run("outgoing call: the 2xx's reversed", func(t *testing.T) {
		door := startAgent(t, Config{User: "door"})
		peer, p1, p2 := newTimerPeer(t), newTimerPeer(t), newTimerPeer(t)
		rr1, rr2 := "<sip:"+p1.addr.String()+";lr>", "<sip:"+p2.addr.String()+";lr>"
		peer.set("INVITE, ACK, BYE", sip.NewHeader("Record-Route", rr2), sip.NewHeader("Record-Route", rr1))
		res := dialAsync(context.Background(), door, DialRequest{Targets: []string{"sip:peer@" + peer.addr.String()}, Media: offer(41000, false, "PCMU")})
		peer.next(t, sip.INVITE)
		r := waitDial(t, res)
		if r.err != nil {
			t.Fatal(r.err)
		}
		p1.next(t, sip.ACK)
		_ = r.call.Hangup(context.Background())
		bye := p1.next(t, sip.BYE)
		if got := routeValues(bye); len(got) != 2 || got[0] != rr1 || got[1] != rr2 || bye.Recipient.Port != int(peer.addr.Port()) {
			t.Errorf("BYE to %s with Route %q, want [%s %s]", bye.Recipient.String(), got, rr1, rr2)
		}
		peer.nothing(t)
		p2.nothing(t)
	})
}
