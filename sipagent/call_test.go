package sipagent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

func TestCallAcceptNegotiatesBothSides(t *testing.T) {
	door := startAgent(t, Config{User: "door", DisplayName: "Front door"})
	flat := startAgent(t, Config{User: "flat"})
	ctx := context.Background()

	rang := make(chan string, 2)
	res := dialAsync(ctx, door, DialRequest{
		Targets:   []string{target("flat", flat)},
		Media:     offer(40000, true, "PCMU", "PCMA"),
		OnRinging: func(tg string) { rang <- tg },
	})
	in := waitEvent[IncomingCall](t, flat)
	if !strings.HasPrefix(in.From, "sip:door@127.0.0.1") {
		t.Errorf("From = %q", in.From)
	}
	if in.Source != door.Addr() {
		t.Errorf("Source = %v, want %v (requests leave from the listening socket)", in.Source, door.Addr())
	}
	if in.FromProxy {
		t.Error("FromProxy without a registrar")
	}
	if err := in.Call.Ringing(); err != nil {
		t.Fatalf("Ringing: %v", err)
	}
	// sipgo handles each response in its own goroutine, so a 180 and a
	// 200 sent back to back may be reordered; answer after the ringing.
	select {
	case tg := <-rang:
		if tg != target("flat", flat) {
			t.Errorf("OnRinging(%q)", tg)
		}
	case <-time.After(waitLong):
		t.Fatal("no OnRinging")
	}
	got, err := in.Call.Accept(ctx, offer(41000, true, "PCMA", "PCMU"))
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	want := MediaAnswer{
		Local:  netip.MustParseAddrPort("127.0.0.1:41000"),
		Remote: netip.MustParseAddrPort("127.0.0.1:40000"),
		// The caller's offer lists PCMU first: its preference wins.
		Codec: Codec{Name: "PCMU", PayloadType: 0}, DTMFPayloadType: 101, Ptime: 20 * time.Millisecond,
	}
	if got != want {
		t.Errorf("callee media = %+v, want %+v", got, want)
	}
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	wantCaller := MediaAnswer{Local: want.Remote, Remote: want.Local, Codec: want.Codec, DTMFPayloadType: 101, Ptime: 20 * time.Millisecond}
	if m := r.call.Media(); m != wantCaller {
		t.Errorf("caller media = %+v, want %+v", m, wantCaller)
	}
	if in.Call.Media() != want {
		t.Errorf("callee Call.Media = %+v", in.Call.Media())
	}
	if r.call.ID() != in.Call.ID() || r.call.ID() == "" {
		t.Errorf("Call-IDs %q and %q", r.call.ID(), in.Call.ID())
	}
	if r.call.Remote() != target("flat", flat) {
		t.Errorf("Remote = %q", r.call.Remote())
	}
	if len(rang) != 0 {
		t.Errorf("OnRinging called again: %q", <-rang)
	}

	if err := r.call.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	if e := waitEvent[CallEnded](t, flat); e.Call != in.Call || e.Reason != ReasonRemoteHangup {
		t.Errorf("callee CallEnded = %+v", e)
	}
	waitClosed(t, in.Call.Done(), "callee Done")
	if e := waitEvent[CallEnded](t, door); e.Call != r.call || e.Reason != ReasonLocalHangup {
		t.Errorf("caller CallEnded = %+v", e)
	}
	waitClosed(t, r.call.Done(), "caller Done")
	if err := r.call.Hangup(ctx); err != nil {
		t.Errorf("second Hangup: %v", err)
	}
}

func TestCallRejectReturnsStatus(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	res := dialAsync(context.Background(), door, DialRequest{Targets: []string{target("flat", flat)}, Media: offer(40000, false, "PCMU")})
	in := waitEvent[IncomingCall](t, flat)
	if err := in.Call.Reject(403, "Forbidden"); err != nil {
		t.Fatalf("Reject: %v", err)
	}
	r := waitDial(t, res)
	var se *StatusError
	if !errors.As(r.err, &se) || se.Code != 403 {
		t.Fatalf("Dial error = %v, want a 403 StatusError", r.err)
	}
	if !strings.Contains(r.err.Error(), "403") {
		t.Errorf("error text %q lacks the status", r.err)
	}
	if e := waitEvent[CallEnded](t, flat); e.Reason != ReasonRejected {
		t.Errorf("CallEnded = %+v", e)
	}
	if err := in.Call.Reject(486, "Busy Here"); err == nil {
		t.Error("second Reject succeeded")
	}
	if _, err := in.Call.Accept(context.Background(), offer(1, false, "PCMU")); err == nil {
		t.Error("Accept after Reject succeeded")
	}
	if err := in.Call.Reject(200, "OK"); err == nil {
		t.Error("Reject with 200 accepted")
	}
}

func TestAcceptWithoutCommonCodecRejects488(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	res := dialAsync(context.Background(), door, DialRequest{Targets: []string{target("flat", flat)}, Media: offer(40000, false, "PCMU")})
	in := waitEvent[IncomingCall](t, flat)
	if _, err := in.Call.Accept(context.Background(), offer(41000, false, "PCMA")); err == nil {
		t.Fatal("Accept without a common codec succeeded")
	}
	var se *StatusError
	if r := waitDial(t, res); !errors.As(r.err, &se) || se.Code != 488 {
		t.Fatalf("Dial error = %v, want 488", r.err)
	}
}

// Negotiate only checks: the call stays pending, so the station can still
// reject it with the reason or answer it.
func TestNegotiateChecksWithoutAnswering(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	res := dialAsync(context.Background(), door, DialRequest{Targets: []string{target("flat", flat)}, Media: offer(40000, false, "PCMU")})
	in := waitEvent[IncomingCall](t, flat)
	err := in.Call.Negotiate(offer(41000, false, "PCMA"))
	if !errors.Is(err, errSDPUnacceptable) || NotAcceptableReason(err) != "Not Acceptable Here" {
		t.Fatalf("Negotiate without a common codec: %v (reason %q)", err, NotAcceptableReason(err))
	}
	if err := in.Call.Negotiate(offer(41000, false, "PCMA", "PCMU")); err != nil {
		t.Fatalf("Negotiate with a common codec: %v", err)
	}
	if _, err := in.Call.Accept(context.Background(), offer(41000, false, "PCMU")); err != nil {
		t.Fatalf("Accept after Negotiate: %v", err)
	}
	if r := waitDial(t, res); r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
}

func TestParallelDialCancelsTheOthers(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	a := startAgent(t, Config{User: "a"})
	b := startAgent(t, Config{User: "b"})
	rang := make(chan string, 4)
	res := dialAsync(context.Background(), door, DialRequest{
		Targets: []string{target("a", a), target("b", b)}, Parallel: true,
		RingTimeout: waitLong, Media: offer(40000, true, "PCMU"),
		OnRinging: func(tg string) { rang <- tg },
	})
	inA := waitEvent[IncomingCall](t, a)
	inB := waitEvent[IncomingCall](t, b)
	if err := inB.Call.Ringing(); err != nil {
		t.Fatal(err)
	}
	select {
	case tg := <-rang:
		if tg != target("b", b) {
			t.Errorf("OnRinging(%q)", tg)
		}
	case <-time.After(waitLong):
		t.Fatal("no OnRinging")
	}
	if _, err := inA.Call.Accept(context.Background(), offer(41000, true, "PCMU")); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	r := waitDial(t, res)
	if r.err != nil || r.call.Remote() != target("a", a) {
		t.Fatalf("Dial = %+v", r)
	}
	if e := waitEvent[CallEnded](t, b); e.Call != inB.Call || e.Reason != ReasonCancelled {
		t.Errorf("b CallEnded = %+v", e)
	}
	waitClosed(t, inB.Call.Done(), "b Done")
	if _, err := inB.Call.Accept(context.Background(), offer(41002, true, "PCMU")); err == nil {
		t.Error("Accept of a cancelled call succeeded")
	}
	_ = r.call.Hangup(context.Background())
}

func TestSequentialDialMovesOnAfterRingTimeout(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	a := startAgent(t, Config{User: "a"})
	b := startAgent(t, Config{User: "b"})
	res := dialAsync(context.Background(), door, DialRequest{
		Targets:     []string{target("a", a), target("b", b)},
		RingTimeout: 300 * time.Millisecond, Media: offer(40000, false, "PCMU"),
	})
	inA := waitEvent[IncomingCall](t, a)
	if e := waitEvent[CallEnded](t, a); e.Call != inA.Call || e.Reason != ReasonCancelled {
		t.Errorf("a CallEnded = %+v", e)
	}
	inB := waitEvent[IncomingCall](t, b)
	if _, err := inB.Call.Accept(context.Background(), offer(41000, false, "PCMU")); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	r := waitDial(t, res)
	if r.err != nil || r.call.Remote() != target("b", b) {
		t.Fatalf("Dial = %+v", r)
	}
	_ = r.call.Hangup(context.Background())
}

func TestDialNoAnswerAndCancel(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	r := waitDial(t, dialAsync(context.Background(), door, DialRequest{
		Targets: []string{target("flat", flat)}, Parallel: true,
		RingTimeout: 200 * time.Millisecond, Media: offer(40000, false, "PCMU"),
	}))
	if !errors.Is(r.err, ErrNoAnswer) {
		t.Fatalf("Dial error = %v, want ErrNoAnswer", r.err)
	}
	waitEvent[CallEnded](t, flat)

	ctx, cancel := context.WithCancel(context.Background())
	res := dialAsync(ctx, door, DialRequest{Targets: []string{target("flat", flat)}, Media: offer(40000, false, "PCMU")})
	in := waitEvent[IncomingCall](t, flat)
	cancel()
	if r := waitDial(t, res); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Dial error = %v, want context.Canceled", r.err)
	}
	if e := waitEvent[CallEnded](t, flat); e.Call != in.Call || e.Reason != ReasonCancelled {
		t.Errorf("CallEnded = %+v", e)
	}
}

func TestDialValidation(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	for _, req := range []DialRequest{
		{Media: offer(1, false, "PCMU")},
		{Targets: []string{"tel:+123"}, Media: offer(1, false, "PCMU")},
		{Targets: []string{"sip:x@"}, Media: offer(1, false, "PCMU")},
		{Targets: []string{"sip:x@127.0.0.1"}, Media: offer(1, false, "G729")},
		{Targets: []string{"sip:x@127.0.0.1"}},
	} {
		if _, err := door.Dial(context.Background(), req); err == nil {
			t.Errorf("Dial(%+v) succeeded", req)
		}
	}
}

func TestRemoteByeEndsCall(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	res := dialAsync(context.Background(), door, DialRequest{Targets: []string{target("flat", flat)}, Media: offer(40000, false, "PCMU")})
	in := waitEvent[IncomingCall](t, flat)
	if _, err := in.Call.Accept(context.Background(), offer(41000, false, "PCMU")); err != nil {
		t.Fatal(err)
	}
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := in.Call.Hangup(context.Background()); err != nil {
		t.Fatalf("callee Hangup: %v", err)
	}
	if e := waitEvent[CallEnded](t, door); e.Call != r.call || e.Reason != ReasonRemoteHangup {
		t.Errorf("caller CallEnded = %+v", e)
	}
	waitClosed(t, r.call.Done(), "caller Done")
}

func TestInfoDTMF(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	res := dialAsync(context.Background(), door, DialRequest{Targets: []string{target("flat", flat)}, Media: offer(40000, false, "PCMU")})
	in := waitEvent[IncomingCall](t, flat)
	if _, err := in.Call.Accept(context.Background(), offer(41000, false, "PCMU")); err != nil {
		t.Fatal(err)
	}
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	info := func(ct, body string) int {
		req := sip.NewRequest(sip.INFO, r.call.cs.InviteResponse.Contact().Address)
		if ct != "" {
			req.AppendHeader(sip.NewHeader("Content-Type", ct))
		}
		req.SetBody([]byte(body))
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		res, err := r.call.cs.Do(ctx, req)
		if err != nil {
			t.Fatalf("INFO: %v", err)
		}
		return res.StatusCode
	}
	if code := info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"); code != 200 {
		t.Fatalf("INFO dtmf-relay: %d", code)
	}
	if e := waitEvent[DTMF](t, flat); e.Digit != '5' || e.Call != in.Call {
		t.Errorf("DTMF = %+v", e)
	}
	if code := info("application/dtmf", "#"); code != 200 {
		t.Fatalf("INFO dtmf: %d", code)
	}
	if e := waitEvent[DTMF](t, flat); e.Digit != '#' {
		t.Errorf("DTMF = %+v", e)
	}
	for _, bad := range []struct{ ct, body string }{
		{"application/dtmf-relay", "Signal=Z\r\n"},
		{"application/dtmf-relay", "garbage"},
		{"application/dtmf", "12"},
	} {
		if code := info(bad.ct, bad.body); code != 400 {
			t.Errorf("INFO %q: %d, want 400", bad.body, code)
		}
	}
	if code := info("text/plain", "5"); code != 415 {
		t.Errorf("INFO text/plain: %d, want 415", code)
	}
	noEvent[DTMF](t, flat)
	_ = r.call.Hangup(context.Background())
}

func TestOutOfDialogRequests(t *testing.T) {
	flat := startAgent(t, Config{User: "flat"})
	peer := newRawPeer(t, nil)
	uri := mustURI(t, target("flat", flat))

	res := peer.do(t, sip.NewRequest(sip.OPTIONS, uri))
	if res.StatusCode != 200 || res.GetHeader("Allow") == nil || !strings.Contains(res.GetHeader("Allow").Value(), "NOTIFY") {
		t.Errorf("OPTIONS: %s", res.StartLine())
	}
	for _, m := range []sip.RequestMethod{sip.BYE, sip.INFO} {
		req := sip.NewRequest(m, uri)
		req.AppendHeader(&sip.ToHeader{Address: uri, Params: sip.HeaderParams{{K: "tag", V: "nope"}}})
		if res := peer.do(t, req); res.StatusCode != 481 {
			t.Errorf("%s for unknown dialog: %d, want 481", m, res.StatusCode)
		}
	}
	if res := peer.do(t, sip.NewRequest(sip.MESSAGE, uri)); res.StatusCode != 405 || res.GetHeader("Allow") == nil {
		t.Errorf("MESSAGE: %s", res.StartLine())
	}
}

func TestBadInviteGetsNoEvent(t *testing.T) {
	flat := startAgent(t, Config{User: "flat"})
	peer := newRawPeer(t, nil)
	uri := mustURI(t, target("flat", flat))
	cases := []struct {
		name, ct, body string
		want           int
	}{
		{"no body", "", "", 488},
		{"not sdp", "application/sdp", "hello", 400},
		{"no G.711", "application/sdp", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n", 488},
		{"wrong type", "text/plain", "hi", 415},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := sip.NewRequest(sip.INVITE, uri)
			req.AppendHeader(&sip.ContactHeader{Address: mustURI(t, "sip:peer@"+peer.addr.String())})
			if tc.ct != "" {
				req.AppendHeader(sip.NewHeader("Content-Type", tc.ct))
			}
			req.SetBody([]byte(tc.body))
			if res := peer.do(t, req); res.StatusCode != tc.want {
				t.Errorf("got %d, want %d", res.StatusCode, tc.want)
			}
			noEvent[IncomingCall](t, flat)
		})
	}
}

func TestDialAuthenticatesInvite(t *testing.T) {
	authErr := make(chan error, 1)
	peer := newAnsweringPeer(t, func(req *sip.Request, tx sip.ServerTransaction) bool {
		if challenged(req, tx) {
			return false
		}
		h := req.GetHeader("Proxy-Authorization")
		req.AppendHeader(sip.NewHeader("Authorization", h.Value()))
		if err := checkDigest(req, "auth-door", "pbx", "abc", "pw"); err != nil {
			authErr <- err
			_ = tx.Respond(sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
			return false
		}
		return true
	}, nil)
	door := startAgent(t, Config{User: "door", AuthUser: "auth-door", Password: "pw"})
	r := waitDial(t, dialAsync(context.Background(), door, DialRequest{
		Targets: []string{"sip:flat@" + peer.addr.String()}, Media: offer(40000, true, "PCMA", "PCMU"),
	}))
	select {
	case err := <-authErr:
		t.Fatal(err)
	default:
	}
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	if m := r.call.Media(); m.Codec.Name != "PCMU" || m.Remote != netip.MustParseAddrPort("127.0.0.1:42000") || m.DTMFPayloadType != 0 {
		t.Errorf("media %+v", m)
	}
	_ = r.call.Hangup(context.Background())
}

// A PBX may challenge requests inside a call: the hangup's BYE is sent
// again with credentials, with the next CSeq, and the call ends.
func TestByeAnswersChallenge(t *testing.T) {
	byes := make(chan *sip.Request, 2)
	peer := newAnsweringPeer(t, nil, func(srv *sipgo.Server) {
		srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			byes <- req.Clone()
			if req.GetHeader("Authorization") == nil {
				res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
				res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="pbx", nonce="bye"`))
				_ = tx.Respond(res)
				return
			}
			if err := checkDigest(req, "auth-door", "pbx", "bye", "pw"); err != nil {
				_ = tx.Respond(sip.NewResponseFromRequest(req, 403, err.Error(), nil))
				return
			}
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	})
	door := startAgent(t, Config{User: "door", AuthUser: "auth-door", Password: "pw"})
	r := waitDial(t, dialAsync(context.Background(), door, DialRequest{
		Targets: []string{"sip:flat@" + peer.addr.String()}, Media: offer(40000, false, "PCMU"),
	}))
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	if err := r.call.Hangup(context.Background()); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	first, second := <-byes, <-byes
	if second.GetHeader("Authorization") == nil {
		t.Fatal("second BYE without credentials")
	}
	if first.CSeq().SeqNo+1 != second.CSeq().SeqNo {
		t.Errorf("BYE CSeq %d then %d; want the next number", first.CSeq().SeqNo, second.CSeq().SeqNo)
	}
	if n := len(second.GetHeaders("Route")); n != len(first.GetHeaders("Route")) {
		t.Errorf("second BYE has %d Route headers, the first %d", n, len(first.GetHeaders("Route")))
	}
	select {
	case <-r.call.Done():
	case <-time.After(waitLong):
		t.Fatal("call not ended")
	}
}

func TestShutdownEndsCalls(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat, stop := runAgent(t, Config{User: "flat"})
	defer stop()
	waitEvent[RegistrationChanged](t, flat)

	// An answered call gets a BYE.
	res := dialAsync(context.Background(), door, DialRequest{Targets: []string{target("flat", flat)}, Media: offer(40000, false, "PCMU")})
	in := waitEvent[IncomingCall](t, flat)
	if _, err := in.Call.Accept(context.Background(), offer(41000, false, "PCMU")); err != nil {
		t.Fatal(err)
	}
	active := waitDial(t, res)
	if active.err != nil {
		t.Fatal(active.err)
	}
	// A ringing call is refused with 503.
	res = dialAsync(context.Background(), door, DialRequest{Targets: []string{target("flat", flat)}, Media: offer(40002, false, "PCMU")})
	ringing := waitEvent[IncomingCall](t, flat)

	stop()
	waitClosed(t, active.call.Done(), "answered call's Done")
	if e := waitEvent[CallEnded](t, door); e.Call != active.call || e.Reason != ReasonRemoteHangup {
		t.Errorf("caller CallEnded %+v", e)
	}
	var se *StatusError
	if r := waitDial(t, res); !errors.As(r.err, &se) || se.Code != 503 {
		t.Errorf("Dial during shutdown: %v", r.err)
	}
	waitClosed(t, in.Call.Done(), "callee Done")
	waitClosed(t, ringing.Call.Done(), "ringing Done")
	if _, err := flat.Dial(context.Background(), DialRequest{Targets: []string{target("door", door)}, Media: offer(40000, false, "PCMU")}); err == nil {
		t.Error("Dial from a stopped agent succeeded")
	}
}

func TestTCPCall(t *testing.T) {
	door := startAgent(t, Config{User: "door", Transport: "tcp"})
	flat := startAgent(t, Config{User: "flat", Transport: "tcp"})
	res := dialAsync(context.Background(), door, DialRequest{Targets: []string{target("flat", flat) + ";transport=tcp"}, Media: offer(40000, false, "PCMU")})
	in := waitEvent[IncomingCall](t, flat)
	if _, err := in.Call.Accept(context.Background(), offer(41000, false, "PCMU")); err != nil {
		t.Fatal(err)
	}
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := r.call.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent[CallEnded](t, flat); e.Reason != ReasonRemoteHangup {
		t.Errorf("CallEnded %+v", e)
	}
}

// TestShutdownDuringUnansweredCancel stops an agent whose CANCEL is still
// waiting for an answer: closing the user agent must release the attempt
// (sipgo#202 made this panic) and Run must return.
func TestShutdownDuringUnansweredCancel(t *testing.T) {
	// The race is narrow; a few rounds give it a chance to show.
	for i := range 20 {
		peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		door, stop := runAgent(t, Config{User: "door"})
		waitEvent[RegistrationChanged](t, door)

		ctx, cancel := context.WithCancel(context.Background())
		res := dialAsync(ctx, door, DialRequest{Targets: []string{"sip:flat@" + peer.LocalAddr().String()}, Media: offer(40000, false, "PCMU")})
		// Ring, then ignore everything: the CANCEL gets no answer.
		inv := readRequest(t, peer)
		if inv.Method != sip.INVITE {
			t.Fatalf("got %s, want INVITE", inv.Method)
		}
		ringing := sip.NewResponseFromRequest(inv, sip.StatusRinging, "Ringing", nil)
		if _, err := peer.WriteTo([]byte(ringing.String()), net.UDPAddrFromAddrPort(door.Addr())); err != nil {
			t.Fatal(err)
		}
		cancel()
		for req := readRequest(t, peer); req.Method != sip.CANCEL; req = readRequest(t, peer) {
		}
		if r := waitDial(t, res); !errors.Is(r.err, context.Canceled) {
			t.Errorf("run %d: Dial: %v, want canceled", i, r.err)
		}
		stop()
	}
}

// readRequest reads the next SIP request from conn, skipping responses.
func readRequest(t *testing.T, conn *net.UDPConn) *sip.Request {
	t.Helper()
	buf := make([]byte, 65535)
	for {
		if err := conn.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		msg, err := sip.ParseMessage(buf[:n])
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if req, ok := msg.(*sip.Request); ok {
			return req
		}
	}
}
