package e2e

// Acceptance 3 of issue 8: the bell's call follows a PBX's 302.

import (
	"strings"
	"testing"
	"time"
)

// TestBellFollowsRedirect: kamailio answers the bell's INVITE to user 302
// with 302 Moved Temporarily and Contact 201; the station calls 201 instead
// (authenticating again, as kamailio challenges every INVITE), 201 answers
// and audio flows both ways.
func TestBellFollowsRedirect(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k := startKamailio(t, kamailioOptions{AuthInvite: true, RecordRoute: true, Redirect: map[string]string{"302": "201"}})
	p := startPhone(t, phoneOptions{User: "201", Registrar: k, ToneHz: 1000})
	st := startStation(t, stationOptions{Registrar: k, ToneHz: 440, Call: []string{k.URI("302")}})
	eventually(t, registerTimeout, "station registered", all(k.registered("100"), st.registrationIs("registered")))

	mp, ms := p.Events.mark(), st.Events.mark()
	st.setPin(t, "GPIO17", "low") // the bell is active low
	eventually(t, 5*time.Second, "bell press starts a call",
		st.cond("call.state calling", func(s stationStatus) bool { return s.Call.State == "calling" }))
	st.setPin(t, "GPIO17", "high")

	p.Events.waitFor(t, mp, "CALL_INCOMING", 10*time.Second)
	p.Accept(t)
	p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))
	st.Events.waitFor(t, ms, "answered", 5*time.Second)
	if s, err := st.status(); err != nil || !strings.Contains(s.Call.Remote, "201@") {
		t.Errorf("status call.remote %q (%v), want phone 201 after the redirect", s.Call.Remote, err)
	}

	eventually(t, 15*time.Second, "201 hears the door for 2s", p.heard(2*time.Second))
	st.postOK(t, "/api/v1/hangup", nil)
	p.Events.waitFor(t, mp, "CALL_CLOSED", 10*time.Second)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))

	rec, err := p.decRecording()
	if err != nil {
		t.Fatal(err)
	}
	assertTone(t, "201 hears the door's microphone", rec, 440, 650)
	// The file backend rewrites its header about once a second and at close.
	_ = poll(5*time.Second, heardTone(st.Output, 1000, 1300))
	assertTone(t, "the door's speaker plays 201's microphone", st.Output, 1000, 1300)
}
