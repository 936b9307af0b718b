package sipagent

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAnswerMirrorsDirection(t *testing.T) {
	local := MediaOffer{Addr: netip.MustParseAddrPort("192.0.2.2:5000"), Codecs: []Codec{{Name: "PCMU"}}}
	for offered, want := range map[string]string{
		"": "", dirSendOnly: dirRecvOnly, dirRecvOnly: dirSendOnly, dirInactive: dirInactive,
	} {
		o := remoteMedia{addr: netip.MustParseAddrPort("192.0.2.1:4000"), codecs: []Codec{{"PCMU", 0}}, dir: offered}
		got, err := answerFor(o, local)
		if err != nil {
			t.Fatal(err)
		}
		if got.Direction != want {
			t.Errorf("offer %q: answer direction %q, want %q", offered, got.Direction, want)
		}
		// Reading a peer's answer mirrors the same way.
		if m, _ := answerFromPeer(o, []Codec{{"PCMU", 0}}, false); m.Direction != want {
			t.Errorf("answer %q: our direction %q, want %q", offered, m.Direction, want)
		}
	}
}

func TestLocalSDPVersionsOnlyOnChange(t *testing.T) {
	l := localSDP{addr: netip.MustParseAddrPort("192.0.2.9:30000"), codecs: []Codec{{"PCMU", 0}}, ptime: 20 * time.Millisecond}
	if err := l.newSession(); err != nil {
		t.Fatal(err)
	}
	same := l.next(localSDP{addr: l.addr, codecs: []Codec{{"PCMU", 0}}, ptime: 20 * time.Millisecond, dir: dirSendRecv})
	if same.id != l.id || same.ver != l.ver {
		t.Errorf("unchanged media: o= %d %d, want %d %d", same.id, same.ver, l.id, l.ver)
	}
	held := same.next(localSDP{addr: l.addr, codecs: []Codec{{"PCMU", 0}}, ptime: 20 * time.Millisecond, dir: dirRecvOnly})
	if held.id != l.id || held.ver != l.ver+1 {
		t.Errorf("changed direction: o= %d %d, want %d %d", held.id, held.ver, l.id, l.ver+1)
	}
	body, err := held.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "a=recvonly\r\n") || strings.Contains(string(body), "sendrecv") {
		t.Errorf("held SDP lacks recvonly:\n%s", body)
	}
	back, err := parseLocalSDP(body)
	if err != nil {
		t.Fatal(err)
	}
	if back.id != held.id || back.ver != held.ver || !back.sameMedia(held) {
		t.Errorf("parseLocalSDP = %+v, want %+v", back, held)
	}
	codec := held.next(localSDP{addr: l.addr, codecs: []Codec{{"PCMA", 8}}, ptime: 20 * time.Millisecond, dir: dirRecvOnly})
	if codec.ver != held.ver+1 {
		t.Errorf("changed codec: version %d, want %d", codec.ver, held.ver+1)
	}
}

func TestBuildSDPIPv6(t *testing.T) {
	addr := netip.MustParseAddrPort("[2001:db8::5]:30000")
	body, err := buildSDP(addr, []Codec{{"PCMU", 0}}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"c=IN IP6 2001:db8::5", "IN IP6 2001:db8::5\r\n"} {
		if !strings.Contains(string(body), line) {
			t.Errorf("missing %q in\n%s", line, body)
		}
	}
	rm, err := parseSDP(body)
	if err != nil || rm.addr != addr {
		t.Errorf("round trip: %+v, %v", rm, err)
	}
}
