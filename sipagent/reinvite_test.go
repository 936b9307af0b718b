package sipagent

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// establish has door call flat and flat answer; it returns both ends.
func establish(t *testing.T, door, flat *Agent, doorOffer, flatOffer MediaOffer) (caller, callee *Call) {
	t.Helper()
	res := dialAsync(context.Background(), door, DialRequest{Targets: []string{target("flat", flat)}, Media: doorOffer})
	in := waitEvent[IncomingCall](t, flat)
	if _, err := in.Call.Accept(context.Background(), flatOffer); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	return r.call, in.Call
}

// peerTarget is where c's peer takes in-dialog requests.
func peerTarget(c *Call) sip.Uri {
	if c.cs != nil {
		return c.cs.InviteResponse.Contact().Address
	}
	return c.ss.InviteRequest.Contact().Address
}

// rawInDialog sends a hand-made in-dialog request on c's dialog, bypassing
// c's own offer/answer logic, and ACKs a 2xx to an INVITE with ackBody.
func rawInDialog(t *testing.T, c *Call, method sip.RequestMethod, body, ackBody string, hdrs ...sip.Header) *sip.Response {
	t.Helper()
	req := sip.NewRequest(method, peerTarget(c))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	if body != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody([]byte(body))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	res, err := c.do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	if method == sip.INVITE && res.IsSuccess() {
		ack := sip.NewRequest(sip.ACK, peerTarget(c))
		if ackBody != "" {
			ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			ack.SetBody([]byte(ackBody))
		}
		if c.cs != nil {
			err = c.cs.WriteRequest(ack)
		} else {
			err = c.ss.WriteRequest(ack)
		}
		if err != nil {
			t.Fatalf("ACK: %v", err)
		}
	}
	return res
}

// peerSDP is an offer or answer from 127.0.0.1:port.
func peerSDP(port int, version int, extra ...string) string {
	lines := []string{"v=0", "o=- 7 " + strconv.Itoa(version) + " IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"}
	if len(extra) == 0 || !strings.HasPrefix(extra[0], "m=") {
		lines = append(lines, "m=audio "+strconv.Itoa(port)+" RTP/AVP 0 8 101", "a=rtpmap:101 telephone-event/8000")
	}
	return string(sdpLines(append(lines, extra...)...))
}

func mustParseSDP(t *testing.T, body []byte) localSDP {
	t.Helper()
	l, err := parseLocalSDP(body)
	if err != nil {
		t.Fatalf("SDP %q: %v", body, err)
	}
	return l
}

func TestReinviteHoldResumeMoveAndCodec(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	caller, callee := establish(t, door, flat, offer(40000, true, "PCMU", "PCMA"), offer(41000, true, "PCMU", "PCMA"))
	first := callee.Media()
	sent := mustParseSDP(t, callee.ss.InviteResponse.Body())

	// Hold: the caller sends only; we answer recvonly on the same port.
	res := rawInDialog(t, caller, sip.INVITE, peerSDP(40000, 2, "m=audio 40000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", "a=sendonly"), "")
	if res.StatusCode != 200 {
		t.Fatalf("hold re-INVITE: %s", res.StartLine())
	}
	held := mustParseSDP(t, res.Body())
	if held.dir != dirRecvOnly || held.addr != sent.addr || held.id != sent.id || held.ver != sent.ver+1 {
		t.Errorf("hold answer %+v, want recvonly on %v, o= %d %d", held, sent.addr, sent.id, sent.ver+1)
	}
	e := waitEvent[MediaChanged](t, flat)
	want := first
	want.Direction = dirRecvOnly
	if e.Call != callee || e.Media != want || callee.Media() != want {
		t.Errorf("MediaChanged %+v, want %+v", e.Media, want)
	}

	// The same offer again changes nothing: no event, o= version kept.
	res = rawInDialog(t, caller, sip.INVITE, peerSDP(40000, 2, "m=audio 40000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", "a=sendonly"), "")
	if again := mustParseSDP(t, res.Body()); again.ver != held.ver {
		t.Errorf("unchanged answer: version %d, want %d", again.ver, held.ver)
	}

	// Resume on a new port with PCMA first: all of it applies.
	res = rawInDialog(t, caller, sip.INVITE, peerSDP(0, 3, "m=audio 40100 RTP/AVP 8 0", "a=sendrecv"), "")
	if res.StatusCode != 200 {
		t.Fatalf("resume re-INVITE: %s", res.StartLine())
	}
	if l := mustParseSDP(t, res.Body()); l.dir != "" || l.addr != sent.addr || l.codecs[0].Name != "PCMA" || l.ver != held.ver+1 {
		t.Errorf("resume answer %+v", l)
	}
	e = waitEvent[MediaChanged](t, flat)
	want = MediaAnswer{Local: first.Local, Remote: netip.MustParseAddrPort("127.0.0.1:40100"), Codec: Codec{"PCMA", 8}, Ptime: 20 * time.Millisecond}
	if e.Media != want {
		t.Errorf("MediaChanged %+v, want %+v", e.Media, want)
	}
	noEvent[MediaChanged](t, flat)

	// An offer we cannot take gets 488 and changes nothing.
	res = rawInDialog(t, caller, sip.INVITE, peerSDP(0, 4, "m=audio 40200 RTP/AVP 18", "a=rtpmap:18 G729/8000"), "")
	if res.StatusCode != 488 {
		t.Errorf("G.729 re-INVITE: %s, want 488", res.StartLine())
	}
	if res = rawInDialog(t, caller, sip.INVITE, "garbage", ""); res.StatusCode != 400 {
		t.Errorf("garbage re-INVITE: %s, want 400", res.StartLine())
	}
	if callee.Media() != want {
		t.Errorf("media after refused offers %+v, want %+v", callee.Media(), want)
	}
	// A refused offer leaves the dialog usable.
	if res = rawInDialog(t, caller, sip.OPTIONS, "", ""); res.StatusCode != 200 {
		t.Errorf("in-dialog OPTIONS: %s", res.StartLine())
	}
	noEvent[MediaChanged](t, flat)
	noEvent[CallEnded](t, flat)

	if err := caller.Hangup(context.Background()); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	if e := waitEvent[CallEnded](t, flat); e.Reason != ReasonRemoteHangup {
		t.Errorf("CallEnded %+v", e)
	}
}

func TestReinviteOnOutgoingCall(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	caller, callee := establish(t, door, flat, offer(40000, false, "PCMU", "PCMA"), offer(41000, false, "PCMU"))
	before := caller.Media()
	ours := mustParseSDP(t, caller.cs.InviteRequest.Body())

	// The callee (flat) holds the door station it answered.
	res := rawInDialog(t, callee, sip.INVITE, peerSDP(0, 2, "m=audio 41000 RTP/AVP 0", "a=inactive"), "")
	if res.StatusCode != 200 {
		t.Fatalf("re-INVITE: %s", res.StartLine())
	}
	l := mustParseSDP(t, res.Body())
	if l.dir != dirInactive || l.addr != ours.addr || l.id != ours.id || len(l.codecs) != 1 {
		t.Errorf("answer %+v, offer was %+v", l, ours)
	}
	e := waitEvent[MediaChanged](t, door)
	want := before
	want.Direction = dirInactive
	if e.Call != caller || e.Media != want {
		t.Errorf("MediaChanged %+v, want %+v", e.Media, want)
	}
	// UPDATE with an offer resumes; UPDATE without one only refreshes.
	res = rawInDialog(t, callee, sip.UPDATE, peerSDP(0, 3, "m=audio 41000 RTP/AVP 0"), "")
	if res.StatusCode != 200 || mustParseSDP(t, res.Body()).dir != "" {
		t.Fatalf("UPDATE: %s\n%s", res.StartLine(), res.Body())
	}
	if e := waitEvent[MediaChanged](t, door); e.Media != before {
		t.Errorf("MediaChanged %+v, want %+v", e.Media, before)
	}
	if res = rawInDialog(t, callee, sip.UPDATE, "", ""); res.StatusCode != 200 || len(res.Body()) != 0 {
		t.Errorf("UPDATE without SDP: %s", res.StartLine())
	}
	noEvent[MediaChanged](t, door)
	if err := callee.Hangup(context.Background()); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	waitClosed(t, caller.Done(), "caller Done")
}

func TestReinviteWithoutOfferAnsweredInAck(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	caller, callee := establish(t, door, flat, offer(40000, false, "PCMU", "PCMA"), offer(41000, false, "PCMU", "PCMA"))
	before := callee.Media()
	sent := mustParseSDP(t, callee.ss.InviteResponse.Body())

	// The 2xx carries our offer: the running stream, sendrecv, o= unchanged.
	res := rawInDialog(t, caller, sip.INVITE, "", peerSDP(0, 2, "m=audio 40300 RTP/AVP 0", "a=sendonly"))
	if res.StatusCode != 200 {
		t.Fatalf("re-INVITE: %s", res.StartLine())
	}
	o := mustParseSDP(t, res.Body())
	if o.addr != sent.addr || o.dir != "" || o.ver != sent.ver || o.id != sent.id {
		t.Errorf("offer %+v, sent before %+v", o, sent)
	}
	e := waitEvent[MediaChanged](t, flat)
	want := before
	want.Remote = netip.MustParseAddrPort("127.0.0.1:40300")
	want.Direction = dirRecvOnly
	if e.Media != want {
		t.Errorf("MediaChanged %+v, want %+v", e.Media, want)
	}

	// An ACK without an answer cannot go on: the callee hangs up.
	if res := rawInDialog(t, caller, sip.INVITE, "", ""); res.StatusCode != 200 {
		t.Fatalf("re-INVITE: %s", res.StartLine())
	}
	if e := waitEvent[CallEnded](t, flat); e.Call != callee || e.Reason != ReasonFailed {
		t.Errorf("CallEnded %+v", e)
	}
	waitClosed(t, caller.Done(), "caller Done")
}

func TestInDialogRequestChecks(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	caller, callee := establish(t, door, flat, offer(40000, false, "PCMU"), offer(41000, false, "PCMU"))
	body := peerSDP(0, 2, "m=audio 40000 RTP/AVP 0")
	if res := rawInDialog(t, caller, sip.INVITE, body, "", sip.NewHeader("Require", "100rel")); res.StatusCode != 420 {
		t.Errorf("Require 100rel: %s, want 420", res.StartLine())
	}
	if res := rawInDialog(t, caller, sip.UPDATE, "", "", sip.NewHeader("Session-Expires", "30")); res.StatusCode != 422 || res.GetHeader("Min-SE") == nil {
		t.Errorf("Session-Expires 30: %s, want 422 with Min-SE", res.StartLine())
	}
	// Our own offer in progress: the peer's crosses it (RFC 3261 section 14.2).
	callee.mu.Lock()
	callee.dlg.outPending = true
	callee.mu.Unlock()
	if res := rawInDialog(t, caller, sip.INVITE, body, ""); res.StatusCode != 491 {
		t.Errorf("glare: %s, want 491", res.StartLine())
	}
	callee.mu.Lock()
	callee.dlg.outPending = false
	callee.mu.Unlock()
	if res := rawInDialog(t, caller, sip.INVITE, body, ""); res.StatusCode != 200 {
		t.Errorf("after glare: %s", res.StartLine())
	}
	noEvent[CallEnded](t, flat)
	_ = callee.Hangup(context.Background())
}
