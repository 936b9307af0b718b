package e2e

// Acceptance 1 of issue 7, its SRTP half: over TLS signalling, a call
// between the station (audio.srtp: required) and baresip with its srtp
// module and mediaenc=srtp-mand carries the tones both ways, each way
// SDES-keyed SRTP (RFC 4568).

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"text/template"
	"time"
)

// startSRTPStation is startTLSStation with audio.srtp set to policy; its
// bell calls user at k.
func startSRTPStation(t *testing.T, k *kamailio, caPath, user, policy string) *station {
	t.Helper()
	st, dir, data := newFileStation(t)
	yaml := strings.Replace(streamStationYAML, "  codecs: [PCMU, PCMA]\n", "  codecs: [PCMU, PCMA]\n  srtp: "+policy+"\n", 1)
	data["Transport"], data["Registrar"], data["CA"], data["Call"] = "tls", k.TLSAddr, caPath, fmt.Sprintf("sip:%s@%s", user, k.TLSAddr)
	st.runTemplate(t, dir, template.Must(template.New("station").Parse(yaml)), data)
	return st
}

// srtpPhone adds to phone p (registered at k) a second account, user,
// whose media is SRTP keyed by SDES, with baresip's srtp module: mediaenc
// srtp-mand offers RTP/SAVP and takes nothing else, srtp offers RTP/AVP
// with keys and takes either.
func srtpPhone(t *testing.T, p *phone, k *kamailio, user, mediaenc string) {
	t.Helper()
	p.Command(t, "insmod", "srtp")
	p.Command(t, "uanew", fmt.Sprintf("<sip:%s@%s>;auth_pass=pw-%s;answermode=manual;audio_codecs=PCMU,PCMA;mediaenc=%s;regint=600",
		user, k.Addr, user, mediaenc))
	eventually(t, 10*time.Second, "phone "+user+" registered", all(p.proc.alive, k.registered(user)))
}

// mediaSRTP reads the running call's media.srtp, media.srtp_refused and
// media.packets_received from the station's status.
func (st *station) mediaSRTP() (suite string, refused, received uint64, err error) {
	body, err := st.get("/api/v1/status")
	if err != nil {
		return "", 0, 0, err
	}
	var s struct {
		Media *struct {
			SRTP     string `json:"srtp"`
			Refused  uint64 `json:"srtp_refused"`
			Received uint64 `json:"packets_received"`
		} `json:"media"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return "", 0, 0, fmt.Errorf("status: %v: %s", err, body)
	}
	if s.Media == nil {
		return "", 0, 0, fmt.Errorf("no media in status: %s", body)
	}
	return s.Media.SRTP, s.Media.Refused, s.Media.Received, nil
}

// srtpFlowing is a condition: the call's media is SRTP, and packets
// authenticate. baresip may send a packet or two before its SRTP is set
// up, which the station rightly refuses.
func (st *station) srtpFlowing() func() error {
	return func() error {
		suite, refused, received, err := st.mediaSRTP()
		switch {
		case err != nil:
			return err
		case !strings.HasPrefix(suite, "AES_CM_128_HMAC_SHA1_"):
			return fmt.Errorf("media.srtp %q", suite)
		case received < 50 || refused > 2:
			return fmt.Errorf("%d packets received, %d refused", received, refused)
		}
		return nil
	}
}

// TestSRTPCallToBaresip: the bell rings a baresip account that takes SRTP
// only; the call carries the tones both ways. Then that account calls
// the station, whose answer keys SRTP as well.
func TestSRTPCallToBaresip(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	ca, k, p := tlsPeers(t)
	srtpPhone(t, p, k, "202", "srtp-mand")
	st := startSRTPStation(t, k, ca.Path, "202", "required")
	registeredOverTLS(t, k, st)

	mp := bellAnswered(t, st, p)
	eventually(t, 10*time.Second, "SRTP flowing on the bell call", st.srtpFlowing())
	hangupWithTones(t, st, p, mp)

	// The other way: the phone's SRTP account calls the door.
	mp, ms := p.Events.mark(), st.Events.mark()
	p.Command(t, "uafind", fmt.Sprintf("sip:202@%s", k.Addr))
	p.Dial(t, k.URI("100"))
	p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	st.Events.waitFor(t, ms, "answered", 5*time.Second)
	eventually(t, 10*time.Second, "SRTP flowing on the incoming call", st.srtpFlowing())
	p.Hangup(t)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
}

// TestSRTPRequiredRefusesPlainPhone: with SRTP required, a plain call
// from a phone without SRTP is refused with 488 naming SRTP, unanswered.
func TestSRTPRequiredRefusesPlainPhone(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	ca, k, p := tlsPeers(t)
	st := startSRTPStation(t, k, ca.Path, "201", "required")
	registeredOverTLS(t, k, st)

	mp, ms := p.Events.mark(), st.Events.mark()
	p.Dial(t, k.URI("100"))
	p.Events.waitFor(t, mp, "CALL_CLOSED", 10*time.Second)
	if ev := p.Events.since(mp, "CALL_CLOSED"); len(ev) == 0 || !strings.Contains(ev[0].Raw, "SRTP Required") {
		t.Errorf("phone's call closed with %v, want the reason SRTP Required", ev)
	}
	for _, name := range []string{"ringing", "answered"} {
		if ev := st.Events.since(ms, name); len(ev) != 0 {
			t.Errorf("station emitted %s for a call it cannot take: %v", name, ev)
		}
	}
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
}

// TestSRTPOptionalBestEffort: with the default audio.srtp optional, the
// bell's offer (RTP/AVP with keys) gets SRTP from a phone that does
// best-effort SRTP, and plain RTP from one that does none; both calls
// carry the tones.
func TestSRTPOptionalBestEffort(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	ca, k, p := tlsPeers(t)
	srtpPhone(t, p, k, "202", "srtp")
	st := startSRTPStation(t, k, ca.Path, "202", "optional")
	registeredOverTLS(t, k, st)
	mp := bellAnswered(t, st, p)
	eventually(t, 10*time.Second, "SRTP flowing on the bell call", st.srtpFlowing())
	hangupWithTones(t, st, p, mp)

	plain := startPhone(t, phoneOptions{User: "203", Registrar: k, ToneHz: 1000})
	st2 := startSRTPStation(t, k, ca.Path, "203", "optional")
	eventually(t, registerTimeout, "second station registered over TLS", st2.registrationIs("registered"))
	mp = bellAnswered(t, st2, plain)
	eventually(t, 10*time.Second, "plain RTP on the call to 203", func() error {
		suite, _, received, err := st2.mediaSRTP()
		if err != nil || suite != "none" || received < 50 {
			return fmt.Errorf("media.srtp %q, %d packets received, %v", suite, received, err)
		}
		return nil
	})
	hangupWithTones(t, st2, plain, mp)
}
