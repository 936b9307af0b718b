package sipagent

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A request of the peer's in an established call is written with
// placeholders for the dialog's Call-ID and tags, which FuzzInDialog
// fills in, so that mutations keep the request in the dialog.
const (
	phCallID  = "{callid}"
	phFromTag = "{ftag}"
	phToTag   = "{ttag}"
	// peerTag is the caller's From tag in every fuzzed call.
	peerTag = "peer1"
)

// dialogRequest writes a request of the caller's in the fuzzed dialog.
func dialogRequest(method string, cseq int, headers []string, ctype, body string) string {
	h := []string{
		method + " sip:door@192.0.2.1:5060 SIP/2.0",
		"Via: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bK-" + strings.ToLower(method) + strconv.Itoa(cseq) + ";rport",
		"Max-Forwards: 70",
		"From: <sip:201@192.0.2.66>;tag=" + phFromTag,
		"To: <sip:door@192.0.2.1>;tag=" + phToTag,
		"Call-ID: " + phCallID,
		fmt.Sprintf("CSeq: %d %s", cseq, method),
		"Contact: <sip:201@192.0.2.66:5060>",
	}
	h = append(h, headers...)
	if ctype != "" {
		h = append(h, "Content-Type: "+ctype)
	}
	h = append(h, "Content-Length: "+strconv.Itoa(len(body)))
	return strings.Join(h, "\r\n") + "\r\n\r\n" + body
}

// fill puts a dialog's Call-ID and tags into a request template.
func fill(tmpl []byte, callID, toTag string) []byte {
	out := bytes.ReplaceAll(tmpl, []byte(phCallID), []byte(callID))
	out = bytes.ReplaceAll(out, []byte(phFromTag), []byte(peerTag))
	return bytes.ReplaceAll(out, []byte(phToTag), []byte(toTag))
}

// mustRequest parses a request the fuzz target itself wrote.
func mustRequest(t testing.TB, text string) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(text))
	if err != nil {
		t.Fatalf("own request does not parse: %v\n%s", err, text)
	}
	req := msg.(*sip.Request)
	req.SetSource(fuzzSource)
	return req
}

// fuzzDialog is an incoming call established through the handlers with
// fake transactions, as from a caller at fuzzSource.
type fuzzDialog struct {
	call          *Call
	callID, toTag string
}

// establishFuzzCall rings the agent with an INVITE, accepts it, and ACKs the 2xx.
func establishFuzzCall(t *testing.T, a *Agent, n int) fuzzDialog {
	t.Helper()
	callID := fmt.Sprintf("fuzz%d@192.0.2.66", n)
	invite := strings.ReplaceAll(strings.ReplaceAll(fuzzInvite, "a84b4c76e66710@192.0.2.66", callID), "1928301774", peerTag)
	invite = strings.Replace(invite, "Session-Expires: 1800;refresher=uac\r\n", "", 1)
	invite = strings.Replace(invite, "CSeq: 314159 INVITE", "CSeq: 1 INVITE", 1)
	tx := newFuzzTx()
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		a.onInvite(mustRequest(t, invite), tx)
	}()
	var in IncomingCall
	for in.Call == nil {
		select {
		case ev := <-a.Events():
			switch ev := ev.(type) {
			case IncomingCall:
				in = ev
			case CallEnded: // of the previous input's call
			default:
				t.Fatalf("INVITE raised %#v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("INVITE did not ring")
		}
	}
	accepted := make(chan error, 1)
	go func() {
		_, err := in.Call.Accept(context.Background(), MediaOffer{Addr: netip.MustParseAddrPort("127.0.0.1:4000"), Codecs: staticCodecs, DTMF: true})
		accepted <- err
	}()
	var ok *sip.Response
	for ok == nil {
		select {
		case res := <-tx.sent:
			if res.StatusCode >= 200 {
				ok = res
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no 2xx to the INVITE")
		}
	}
	if ok.StatusCode != sip.StatusOK {
		t.Fatalf("INVITE answered %d", ok.StatusCode)
	}
	toTag := toTag(ok)
	a.onAck(mustRequest(t, string(fill([]byte(dialogRequest("ACK", 1, nil, "", "")), callID, toTag))), nil)
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still waiting after the ACK")
	}
	<-handled
	return fuzzDialog{call: in.Call, callID: callID, toTag: toTag}
}

// FuzzInDialog establishes a call for each input, then hands the caller's
// request (a template with the dialog's Call-ID and tags filled in) to our
// handler for its method: BYE, INFO with DTMF bodies, re-INVITE and UPDATE
// with offers, session timers and stray requests. A 2xx to a re-INVITE is
// ACKed, with an answer when it carried our offer. Afterwards the caller
// hangs up, if the request did not end the call. Invariants: no panic;
// nothing rings but a new INVITE outside the dialog (which is rejected);
// at most one key per INFO, and a valid one; every request but ACK gets
// its final response, carrying the request's Call-ID, CSeq and Via; and
// once the call ended, no call state is left.
func FuzzInDialog(f *testing.F) {
	hold := strings.Replace(strings.Replace(fuzzOffer, "a=sendrecv", "a=sendonly", 1), " 1 1 IN", " 1 2 IN", 1)
	for _, seed := range []string{
		dialogRequest("INFO", 2, nil, "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
		dialogRequest("INFO", 2, nil, "application/dtmf", "#"),
		dialogRequest("INFO", 2, nil, "", ""),
		dialogRequest("BYE", 2, nil, "", ""),
		dialogRequest("INVITE", 2, []string{"Supported: timer", "Session-Expires: 120;refresher=uac"}, "application/sdp", hold),
		dialogRequest("INVITE", 2, nil, "", ""),
		dialogRequest("UPDATE", 2, []string{"Session-Expires: 90"}, "application/sdp", fuzzOffer),
		dialogRequest("UPDATE", 2, nil, "", ""),
		dialogRequest("OPTIONS", 2, nil, "", ""),
	} {
		f.Add([]byte(seed))
	}
	a := fuzzAgent(f)
	n := 0
	f.Fuzz(func(t *testing.T, tmpl []byte) {
		n++
		d := establishFuzzCall(t, a, n)
		msg, err := sip.ParseMessage(fill(tmpl, d.callID, d.toTag))
		req, isReq := msg.(*sip.Request)
		if err == nil && isReq && req.Via() != nil && req.CSeq() != nil {
			req.SetSource(fuzzSource)
			inDialog(t, a, d, req)
		}
		select {
		case <-d.call.Done():
		default:
			tx := newFuzzTx()
			a.onBye(mustRequest(t, string(fill([]byte(dialogRequest("BYE", 1000, nil, "", "")), d.callID, d.toTag))), tx)
			if res := tx.responses(); len(res) != 1 || res[0].StatusCode != sip.StatusOK {
				t.Fatalf("final BYE answered %v", res)
			}
		}
		drainEvents(t, a)
		a.mu.Lock()
		calls := len(a.calls)
		a.mu.Unlock()
		if calls != 0 {
			t.Fatalf("%d calls left behind", calls)
		}
	})
}

// inDialog hands req to its handler and plays the caller's part while it
// runs: rejecting a new call, ACKing a 2xx to a re-INVITE.
func inDialog(t *testing.T, a *Agent, d fuzzDialog, req *sip.Request) {
	t.Helper()
	tx := newFuzzTx()
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		// Unguarded: a panic fails the target instead of being answered
		// 500.
		a.handler(req.Method)(req, tx)
	}()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	keys := 0
	event := func(ev Event) {
		switch ev := ev.(type) {
		case IncomingCall:
			if !req.IsInvite() || ev.Call == d.call {
				t.Fatalf("%s rang", req.Method)
			}
			if err := ev.Call.Reject(sip.StatusBusyHere, "Busy Here"); err != nil {
				t.Fatalf("reject: %v", err)
			}
		case DTMF:
			if keys++; keys > 1 || req.Method != sip.INFO || !strings.ContainsRune("0123456789*#ABCD", ev.Digit) {
				t.Fatalf("%s gave key %d, %q", req.Method, keys, ev.Digit)
			}
		case MediaChanged, CallEnded:
		default:
			t.Fatalf("%s raised %#v", req.Method, ev)
		}
	}
	for {
		select {
		case <-handled:
			checkResponses(t, req, tx.responses())
			// Events the handler raised just before it returned.
			for {
				select {
				case ev := <-a.Events():
					event(ev)
					continue
				default:
				}
				return
			}
		case res := <-tx.sent:
			if !req.IsInvite() || res.StatusCode < 200 || res.StatusCode >= 300 {
				continue
			}
			// The caller ACKs our 2xx (RFC 3261 section 13.2.2.4), with
			// its answer when the 2xx carried our offer (section 13.3.1).
			body, ctype := "", ""
			if !hasSDP(req) {
				body, ctype = fuzzOffer, "application/sdp"
			}
			ack := dialogRequest("ACK", int(req.CSeq().SeqNo), nil, ctype, body)
			a.onAck(mustRequest(t, string(fill([]byte(ack), d.callID, d.toTag))), nil)
		case ev := <-a.Events():
			event(ev)
		case <-deadline.C:
			t.Fatalf("%s handler still running after 10 s", req.Method)
		}
	}
}

// drainEvents takes the events left after a fuzzed call: only its end
// may be among them.
func drainEvents(t *testing.T, a *Agent) {
	t.Helper()
	for {
		select {
		case ev := <-a.Events():
			if _, ok := ev.(CallEnded); !ok {
				t.Fatalf("after the call: event %#v", ev)
			}
		default:
			return
		}
	}
}
