package e2e

// These tests check the harness against the peers alone, without the
// station: when a station test fails, they tell whether the harness or the
// station is at fault.

import (
	"fmt"
	"testing"
	"time"
)

// TestPeersPhonesCallThroughKamailio: two phones register with digest auth,
// one calls the other through kamailio (407 on the INVITE, record-route),
// the callee answers by itself and each records the other's tone; a call to
// a manual phone that the caller gives up shows as CALL_CLOSED there.
func TestPeersPhonesCallThroughKamailio(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k := startKamailio(t, kamailioOptions{AuthInvite: true, RecordRoute: true})
	auto := startPhone(t, phoneOptions{User: "201", Registrar: k, AutoAnswer: true, ToneHz: 1000})
	caller := startPhone(t, phoneOptions{User: "202", Registrar: k, ToneHz: 600})
	manual := startPhone(t, phoneOptions{User: "203", Registrar: k})

	m := caller.Events.mark()
	ma := auto.Events.mark()
	caller.Dial(t, k.URI("201"))
	caller.Events.waitFor(t, m, "CALL_ESTABLISHED", 10*time.Second)
	auto.Events.waitFor(t, ma, "CALL_ESTABLISHED", 5*time.Second)
	eventually(t, 10*time.Second, "both phones hear 2s", all(caller.heard(2*time.Second), auto.heard(2*time.Second)))
	caller.Hangup(t)
	auto.Events.waitFor(t, ma, "CALL_CLOSED", 5*time.Second)
	caller.Events.waitFor(t, m, "CALL_CLOSED", 5*time.Second)

	rec, err := caller.decRecording()
	if err != nil {
		t.Fatal(err)
	}
	assertTone(t, "202 hears 201", rec, 1000, 1300)
	if rec, err = auto.decRecording(); err != nil {
		t.Fatal(err)
	}
	assertTone(t, "201 hears 202", rec, 600, 800)

	mm := manual.Events.mark()
	caller.Dial(t, k.URI("203"))
	manual.Events.waitFor(t, mm, "CALL_INCOMING", 10*time.Second)
	caller.Hangup(t)
	closed := manual.Events.waitFor(t, mm, "CALL_CLOSED", 5*time.Second)
	t.Logf("203 saw the cancelled call end: %s", closed.Raw)
	if es := manual.Events.since(mm, "CALL_ESTABLISHED"); len(es) != 0 {
		t.Errorf("203 never answered but saw %s", es[0].Raw)
	}
}

// TestPeersSippDigitsToPhone: sipp calls a phone through kamailio
// (authenticating, routing ACK and BYE by the record-route) and plays the
// shipped RFC 4733 pcaps; baresip decodes each digit.
func TestPeersSippDigitsToPhone(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k := startKamailio(t, kamailioOptions{AuthInvite: true, RecordRoute: true})
	p := startPhone(t, phoneOptions{User: "201", Registrar: k, AutoAnswer: true})
	m := p.Events.mark()
	sippCall{
		Name: "digits", Target: k.Addr, Service: "201", From: "301", FromHost: "127.0.0.1",
		Auth: true, Expect: 200, Codes: []string{"1234", "5678"},
	}.run(t)
	p.Events.waitFor(t, m, "CALL_CLOSED", 5*time.Second)
	for _, d := range "12345678" {
		found, err := grepFile(p.proc.logPath, fmt.Sprintf("received event: '%c'", d))
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			t.Errorf("baresip did not receive digit %c", d)
		}
	}
}

// TestPeersSippRejections: the caller scenarios that expect a refusal work
// both directly (403 to a caller from 127.0.0.2) and through kamailio (486
// from a phone that has no free line).
func TestPeersSippRejections(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	uas, addr := sippRejecter(t, "forbidder", "127.0.0.1", 403, "Forbidden")
	sippCall{Name: "stranger", Target: addr, Service: "100", From: "stranger", LocalIP: "127.0.0.2", Expect: 403}.run(t)
	if err := uas.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	// sipp binds its socket to the -i address, so the Via host is the source.
	found, err := grepFile(uas.msgLog(), "Via: SIP/2.0/UDP 127.0.0.2:")
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Error("the callee did not see the INVITE come from 127.0.0.2")
	}

	k := startKamailio(t, kamailioOptions{AuthInvite: true, RecordRoute: true})
	busy := startPhone(t, phoneOptions{User: "201", Registrar: k, AutoAnswer: true, MaxCalls: 1})
	other := startPhone(t, phoneOptions{User: "202", Registrar: k})
	m := other.Events.mark()
	other.Dial(t, k.URI("201"))
	other.Events.waitFor(t, m, "CALL_ESTABLISHED", 10*time.Second)
	mb := busy.Events.mark()
	sippCall{Name: "busy", Target: k.Addr, Service: "201", From: "301", FromHost: "127.0.0.1", Auth: true, Expect: 486}.run(t)
	if es := busy.Events.since(mb, "CALL_INCOMING"); len(es) != 0 {
		t.Errorf("the busy phone took the second call: %s", es[0].Raw)
	}
	other.Hangup(t)
	other.Events.waitFor(t, m, "CALL_CLOSED", 5*time.Second)
}
