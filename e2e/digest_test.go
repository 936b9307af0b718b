package e2e

// Acceptance 2 of issue 7: digest authentication with SHA-256 (RFC 8760).

import (
	"testing"
	"time"
)

// TestDigestSHA256Registration: kamailio challenges the REGISTER with a
// decoy MD5 challenge first and its own SHA-256 one (qop=auth) second;
// the station must answer the strongest (RFC 8760 section 2.4) and with
// algorithm=SHA-256, or kamailio refuses it, so the binding in kamailio's
// location table shows that it did. MD5 registration is what every other
// test's kamailio does.
func TestDigestSHA256Registration(t *testing.T) {
	t.Parallel()
	requireTools(t, "kamailio", "kamcmd", "sox")
	k := startKamailio(t, kamailioOptions{DigestSHA256: true})
	st := startStation(t, stationOptions{Registrar: k})
	eventually(t, registerTimeout, "station registered with SHA-256",
		all(k.registered("100"), st.registrationIs("registered")))
}

// TestDigestSHA256Invite: the bell's INVITE to user 302 is challenged by
// kamailio with 407 and SHA-256; only once kamailio has verified the
// station's SHA-256 credentials does it answer 302, sending the call to a
// sipp callee, which refuses it. The callee getting the INVITE proves the
// authenticated INVITE was accepted.
func TestDigestSHA256Invite(t *testing.T) {
	t.Parallel()
	requireTools(t, "kamailio", "kamcmd", "sipp", "sox")
	callee, addr := sippRejecter(t, "sha256-callee", "127.0.0.1", 486, "Busy Here")
	k := startKamailio(t, kamailioOptions{DigestSHA256: true, AuthInvite: true, Redirect: map[string]string{"302": "sip:flat@" + addr}})
	st := startStation(t, stationOptions{Registrar: k, Call: []string{k.URI("302")}})
	eventually(t, registerTimeout, "station registered with SHA-256",
		all(k.registered("100"), st.registrationIs("registered")))

	ms := st.Events.mark()
	st.setPin(t, "GPIO17", "low")
	if err := callee.wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	st.setPin(t, "GPIO17", "high")
	st.Events.waitFor(t, ms, "hangup", 5*time.Second)
	eventually(t, 5*time.Second, "station idle after the 486", st.callIs("idle"))
}
