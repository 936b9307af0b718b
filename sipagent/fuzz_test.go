package sipagent

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock/clocktest"
)

// The fuzz targets of the SIP layer: raw bytes through sipgo's parser and
// then through our handlers and helpers, as a datagram from a stranger
// reaches them. Seed corpora are in testdata/fuzz; FuzzSIPRequest's holds
// the 49 messages of RFC 4475.

// fuzzSource is where fuzzed requests come from: neither registrar nor
// proxy, so nothing may trust them.
const fuzzSource = "192.0.2.66:5060"

// fuzzTx is a server transaction that keeps the responses sent on it.
type fuzzTx struct {
	mu   sync.Mutex
	res  []*sip.Response
	sent chan *sip.Response // each response, as it is sent
	done chan struct{}
}

var _ sip.ServerTransaction = (*fuzzTx)(nil)

func newFuzzTx() *fuzzTx {
	return &fuzzTx{sent: make(chan *sip.Response, 16), done: make(chan struct{})}
}

func (t *fuzzTx) Respond(res *sip.Response) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.res = append(t.res, res)
	select {
	case t.sent <- res:
	default: // a retransmission nobody waits for
	}
	return nil
}

func (t *fuzzTx) responses() []*sip.Response {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.res)
}

func (t *fuzzTx) Acks() <-chan *sip.Request          { return nil }
func (t *fuzzTx) OnCancel(sip.FnTxCancel) bool       { return true }
func (t *fuzzTx) Terminate()                         {}
func (t *fuzzTx) OnTerminate(sip.FnTxTerminate) bool { return true }
func (t *fuzzTx) Done() <-chan struct{}              { return t.done }
func (t *fuzzTx) Err() error                         { return nil }

// fuzzAgent runs a peer-to-peer agent on loopback for the whole fuzz run;
// handlers are called directly, so nothing reaches its socket.
func fuzzAgent(f *testing.F) *Agent {
	a, err := New(Config{Listen: "127.0.0.1:0", Clock: clocktest.New(time.Unix(1e9, 0))})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.Errorf("Run: %v", err)
		}
	})
	if ev := <-a.Events(); ev != (RegistrationChanged{State: StateDisabled}) {
		f.Fatalf("first event %#v", ev)
	}
	return a
}

// FuzzSIPRequest parses a datagram as sipgo does and hands every request
// its transaction layer would pass on (one with a Via and a CSeq) to our
// handler for its method, from a stranger's address. Invariants: no
// panic; an INVITE rings at most once and, rejected, leaves no call
// behind; nothing else rings or raises an event; every request but ACK
// gets a final response, and every response we send carries the
// request's Call-ID, CSeq and Via and parses back (see checkResponses).
func FuzzSIPRequest(f *testing.F) {
	f.Add([]byte(fuzzInvite))
	a := fuzzAgent(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Via() == nil || req.CSeq() == nil {
			return
		}
		req.SetSource(fuzzSource)
		checkRequestHelpers(t, req)

		tx := newFuzzTx()
		handled := make(chan struct{})
		go func() {
			defer close(handled)
			// Unguarded: a panic fails the target instead of being
			// answered 500.
			a.handler(req.Method)(req, tx)
		}()
		rang := 0
		deadline := time.NewTimer(10 * time.Second)
		defer deadline.Stop()
	wait:
		for {
			select {
			case <-handled:
				break wait
			case ev := <-a.Events():
				in, ok := ev.(IncomingCall)
				if !ok {
					if _, ended := ev.(CallEnded); !ended || rang == 0 {
						t.Fatalf("%s raised %#v", req.Method, ev)
					}
					continue
				}
				if rang++; rang > 1 || !req.IsInvite() {
					t.Fatalf("%s rang %d times", req.Method, rang)
				}
				if err := in.Call.Reject(sip.StatusBusyHere, "Busy Here"); err != nil {
					t.Fatalf("reject: %v", err)
				}
			case <-deadline.C:
				t.Fatalf("%s handler still running after 10 s", req.Method)
			}
		}
		for {
			select {
			case ev := <-a.Events():
				if _, ended := ev.(CallEnded); !ended || rang == 0 {
					t.Fatalf("%s raised %#v", req.Method, ev)
				}
				continue
			default:
			}
			break
		}
		a.mu.Lock()
		calls := len(a.calls)
		a.mu.Unlock()
		if calls != 0 {
			t.Fatalf("%s left %d calls behind", req.Method, calls)
		}
		checkResponses(t, req, tx.responses())
	})
}

// checkRequestHelpers runs the helpers that read a request before or
// beside the handlers, checking what they promise.
func checkRequestHelpers(t *testing.T, req *sip.Request) {
	t.Helper()
	if src := requestSource(req); src != netip.MustParseAddrPort(fuzzSource) {
		t.Fatalf("requestSource = %v", src)
	}
	_ = fromURI(req)
	for _, tag := range unsupportedRequire(req) {
		if tag == "" || strings.EqualFold(tag, optionTimer) {
			t.Fatalf("unsupportedRequire lists %q", tag)
		}
	}
	if tr, err := readTimerRequest(req); err == nil && tr.se != 0 && tr.se < minSessionExpires {
		t.Fatalf("Session-Expires %v accepted below %v", tr.se, minSessionExpires)
	}
	if ev, err := eventHeader(req); err == nil && strings.TrimSpace(ev) == "" {
		t.Fatal("empty Event accepted")
	}
	_ = sdpContentType(req)
	if hasSDP(req) {
		checkOffer(t, req.Body())
	}
}

// checkResponses checks what a handler sent for req: for all but ACK,
// provisional responses then one final one, each carrying the request's
// Call-ID, CSeq and Via (RFC 3261 section 8.2.6.2), and printing as a
// response that parses back. sipgo accepts requests it cannot print in a
// form it reads back (a junk SIP version or Via), and its responses echo
// those parts: the round trip is only required of requests that survive
// it themselves.
func checkResponses(t *testing.T, req *sip.Request, res []*sip.Response) {
	t.Helper()
	if req.IsAck() {
		if len(res) != 0 {
			t.Fatalf("ACK answered %d", res[0].StatusCode)
		}
		return
	}
	if len(res) == 0 {
		t.Fatalf("%s got no response", req.Method)
	}
	_, err := sip.ParseMessage([]byte(req.String()))
	reparses := err == nil
	for i, r := range res {
		final := r.StatusCode >= 200
		if r.StatusCode < 100 || r.StatusCode > 699 || final != (i == len(res)-1) {
			t.Fatalf("%s: response %d of %d is %d", req.Method, i+1, len(res), r.StatusCode)
		}
		if got, want := headerValue(r.CSeq()), headerValue(req.CSeq()); got != want {
			t.Fatalf("%s: %d has CSeq %q, request %q", req.Method, r.StatusCode, got, want)
		}
		if got, want := headerValue(r.CallID()), headerValue(req.CallID()); got != want {
			t.Fatalf("%s: %d has Call-ID %q, request %q", req.Method, r.StatusCode, got, want)
		}
		// sipgo adds received and rport to the Via (RFC 3581 section 4);
		// the branch and sent-by must stay.
		if got, want := viaKey(r.Via()), viaKey(req.Via()); got != want {
			t.Fatalf("%s: %d has Via %q, request %q", req.Method, r.StatusCode, headerValue(r.Via()), headerValue(req.Via()))
		}
		if !reparses {
			continue
		}
		back, err := sip.ParseMessage([]byte(r.String()))
		if err != nil {
			t.Fatalf("%s: our %d does not parse: %v\n%s", req.Method, r.StatusCode, err, r)
		}
		if b, ok := back.(*sip.Response); !ok || b.StatusCode != r.StatusCode {
			t.Fatalf("%s: our %d parses as %T %v", req.Method, r.StatusCode, back, back)
		}
	}
}

// viaKey is what identifies a Via: sent-by and branch.
func viaKey(v *sip.ViaHeader) string {
	if v == nil {
		return ""
	}
	branch, _ := v.Params.Get("branch")
	return v.Host + ":" + strconv.Itoa(v.Port) + ";" + branch
}

// headerValue is h's value, "" for a missing header.
func headerValue[H interface {
	comparable
	Value() string
}](h H) string {
	var zero H
	if h == zero {
		return ""
	}
	return h.Value()
}

// fuzzLocal is what the station accepts when it answers: both codecs and
// telephone-events.
var fuzzLocal = MediaOffer{Addr: netip.MustParseAddrPort("192.0.2.1:4000"), Codecs: staticCodecs, DTMF: true}

// checkOffer checks parseSDP and answerFor on an offer: a usable offer
// has an address, a port and a codec; the answer picks one of the offered
// codecs with its payload type; and the SDP we would send back for it
// parses to the same media.
func checkOffer(t *testing.T, body []byte) {
	t.Helper()
	offer, err := parseSDP(body)
	if err != nil {
		return
	}
	if !offer.addr.IsValid() || offer.addr.Port() == 0 || len(offer.codecs) == 0 {
		t.Fatalf("accepted unusable media %+v", offer)
	}
	if offer.dtmfPT >= 128 || slices.ContainsFunc(offer.codecs, func(c Codec) bool {
		return c.PayloadType >= 128 || (offer.dtmfPT != 0 && c.PayloadType == offer.dtmfPT)
	}) {
		t.Fatalf("payload types out of range or shared: %+v", offer)
	}
	ans, err := answerFor(offer, fuzzLocal)
	if err != nil {
		t.Fatalf("no answer to a usable offer %+v: %v", offer, err)
	}
	if !slices.Contains(offer.codecs, ans.Codec) || ans.DTMFPayloadType != offer.dtmfPT || ans.Remote != offer.addr {
		t.Fatalf("answer %+v to offer %+v", ans, offer)
	}
	if ans.Ptime < 10*time.Millisecond || ans.Ptime > 40*time.Millisecond {
		t.Fatalf("answer ptime %v", ans.Ptime)
	}
	l := localSDP{addr: ans.Local, codecs: []Codec{ans.Codec}, dtmfPT: ans.DTMFPayloadType, ptime: ans.Ptime, dir: ans.Direction}
	out, err := l.marshal()
	if err != nil {
		t.Fatalf("answer does not marshal: %v", err)
	}
	back, err := parseLocalSDP(out)
	if err != nil {
		t.Fatalf("our answer does not parse: %v\n%s", err, out)
	}
	if !back.sameMedia(l) {
		t.Fatalf("answer %+v reads back as %+v", l, back)
	}
}

// FuzzAnswerSDP feeds a body to parseSDP and, when it is a usable offer,
// checks the answer built for it (see checkOffer).
func FuzzAnswerSDP(f *testing.F) {
	f.Add([]byte(fuzzOffer))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkOffer(t, body)
	})
}

// FuzzSIPResponse parses a datagram as a response to one of our requests
// and runs the helpers that read responses: NAT discovery, registration
// expiry, redirects, forked answers, session timers and SDP answers.
func FuzzSIPResponse(f *testing.F) {
	f.Add([]byte(fuzzOK))
	ours := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "door", Host: "192.0.2.1", Port: 5060}}
	first := &sip.Uri{Scheme: "sip", User: "201", Host: "pbx.test"}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		res, ok := msg.(*sip.Response)
		if !ok {
			return
		}
		res.SetSource(fuzzSource)
		if src := responseSource(res); src != netip.MustParseAddrPort(fuzzSource) {
			t.Fatalf("responseSource = %v", src)
		}
		if ap, ok := observedAddr(res); ok && (!ap.IsValid() || ap.Port() == 0 || ap.Addr().Is4In6()) {
			t.Fatalf("observedAddr = %v", ap)
		}
		if d := grantedExpiry(res, ours, time.Hour); d < 0 {
			t.Fatalf("grantedExpiry = %v", d)
		}
		if u, err := redirectTarget(res, []*sip.Uri{first}); err == nil {
			if u.Host == "" || sameTarget(u, first) || u.Headers != nil {
				t.Fatalf("redirect to %v", u)
			}
		}
		_ = toTag(res)
		for _, m := range []sip.RequestMethod{sip.ACK, sip.BYE} {
			req, err := forkRequest(m, res, "UDP")
			if err != nil {
				continue
			}
			if req.CSeq() == nil || req.CallID() == nil || req.From() == nil || req.To() == nil {
				t.Fatalf("forked %s lacks a header:\n%s", m, req)
			}
		}
		_, _, _, _ = parseSessionExpires(res)
		if rm, err := parseSDP(res.Body()); err == nil {
			if ans, err := answerFromPeer(rm, staticCodecs, true); err == nil && !slices.Contains(rm.codecs, ans.Codec) {
				t.Fatalf("answer codec %v not in %v", ans.Codec, rm.codecs)
			}
		}
	})
}

// FuzzDTMFInfo feeds SIP INFO bodies to both DTMF body parsers: a key is
// one of 0-9 * # A-D, and the relay body we would write for it reads back
// as the same key.
func FuzzDTMFInfo(f *testing.F) {
	f.Add("Signal=5\r\nDuration=160\r\n")
	f.Add("11")
	f.Fuzz(func(t *testing.T, body string) {
		for _, parse := range []func(string) (rune, error){parseDTMFRelay, parseDTMFDigit} {
			d, err := parse(body)
			if err != nil {
				continue
			}
			if !strings.ContainsRune("0123456789*#ABCD", d) {
				t.Fatalf("%q gives key %q", body, d)
			}
			if back, err := parseDTMFRelay("Signal=" + string(d) + "\r\nDuration=160\r\n"); err != nil || back != d {
				t.Fatalf("key %q reads back as %q, %v", d, back, err)
			}
		}
	})
}

const fuzzOffer = "v=0\r\n" +
	"o=- 1 1 IN IP4 192.0.2.9\r\n" +
	"s=-\r\n" +
	"c=IN IP4 192.0.2.9\r\n" +
	"t=0 0\r\n" +
	"m=audio 4000 RTP/AVP 8 0 101\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\n" +
	"a=fmtp:101 0-16\r\n" +
	"a=ptime:20\r\n" +
	"a=sendrecv\r\n"

var fuzzInvite = "INVITE sip:door@192.0.2.1 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bK776asdhds\r\n" +
	"Max-Forwards: 70\r\n" +
	"To: <sip:door@192.0.2.1>\r\n" +
	"From: <sip:201@192.0.2.66>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@192.0.2.66\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:201@192.0.2.66>\r\n" +
	"Session-Expires: 1800;refresher=uac\r\n" +
	"Supported: timer\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: " + strconv.Itoa(len(fuzzOffer)) + "\r\n" +
	"\r\n" + fuzzOffer

var fuzzOK = "SIP/2.0 200 OK\r\n" +
	"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;received=198.51.100.7;rport=40000\r\n" +
	"To: <sip:201@pbx.test>;tag=a6c85cf\r\n" +
	"From: <sip:door@pbx.test>;tag=1928301774\r\n" +
	"Call-ID: a84b4c76e66710@192.0.2.1\r\n" +
	"CSeq: 314159 INVITE\r\n" +
	"Contact: <sip:201@192.0.2.9>;expires=120\r\n" +
	"Record-Route: <sip:pbx.test;lr>\r\n" +
	"Session-Expires: 1800;refresher=uas\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: " + strconv.Itoa(len(fuzzOffer)) + "\r\n" +
	"\r\n" + fuzzOffer

// FuzzRawScanner compares the defence's look at a raw datagram's
// User-Agent, made before sipgo parses it, with the headers sipgo then
// finds: a request whose parsed User-Agent names a scanner must not pass
// the raw filter (or the scanner gets answers). The reverse, a datagram
// dropped that sipgo would have refused anyway, is harmless.
func FuzzRawScanner(f *testing.F) {
	f.Add([]byte("OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.9:5070;branch=z9hG4bK-1\r\n" +
		"From: \"sipvicious\" <sip:100@1.1.1.1>;tag=1\r\nTo: <sip:100@192.0.2.1>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n" +
		"User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"))
	d, err := newDefence(DefenceConfig{}, clocktest.New(time.Unix(1e9, 0)), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		raw := d.rawScanner(data)
		msg, err := sip.ParseMessage(data)
		if err != nil || raw {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		for _, h := range req.GetHeaders("User-Agent") {
			if d.isScanner([]byte(h.Value())) {
				t.Fatalf("scanner User-Agent %q passes the raw filter", h.Value())
			}
		}
	})
}
