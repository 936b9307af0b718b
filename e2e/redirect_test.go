package e2e

// Acceptance 3 of issue 8: the bell's call follows a PBX's 302.

import (
	"strings"
	"testing"
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

	mp := bellAnswered(t, st, p)
	if s, err := st.status(); err != nil || !strings.Contains(s.Call.Remote, "201@") {
		t.Errorf("status call.remote %q (%v), want phone 201 after the redirect", s.Call.Remote, err)
	}
	hangupWithTones(t, st, p, mp)
}
