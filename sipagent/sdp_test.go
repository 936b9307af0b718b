package sipagent

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sdpLines(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

var head = []string{"v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-"}

func withHead(lines ...string) []byte {
	return sdpLines(append(append([]string{}, head...), lines...)...)
}

func TestParseSDP(t *testing.T) {
	pcmu, pcma := Codec{"PCMU", 0}, Codec{"PCMA", 8}
	tests := []struct {
		name string
		body []byte
		want remoteMedia
		err  error
	}{
		{
			name: "baresip style",
			body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 8 0 101",
				"a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:30", "a=sendrecv"),
			want: remoteMedia{addr: netip.MustParseAddrPort("192.0.2.1:4000"), codecs: []Codec{pcma, pcmu}, dtmfPT: 101, ptime: 30 * time.Millisecond},
		},
		{
			name: "static types without rtpmap, media-level c=, other dtmf type",
			body: withHead("t=0 0", "m=audio 5002 RTP/AVP 0 96", "c=IN IP4 198.51.100.7", "a=rtpmap:96 telephone-event/8000"),
			want: remoteMedia{addr: netip.MustParseAddrPort("198.51.100.7:5002"), codecs: []Codec{pcmu}, dtmfPT: 96},
		},
		{
			name: "session-level ptime, skips rejected and video streams",
			body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "a=ptime:10", "m=video 5000 RTP/AVP 96", "m=audio 0 RTP/AVP 0", "m=audio 6000 RTP/AVP 18 8"),
			want: remoteMedia{addr: netip.MustParseAddrPort("192.0.2.1:6000"), codecs: []Codec{pcma}, ptime: 10 * time.Millisecond},
		},
		{
			name: "IPv6",
			body: sdpLines("v=0", "o=- 1 1 IN IP6 2001:db8::1", "s=-", "c=IN IP6 2001:db8::1", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			want: remoteMedia{addr: netip.MustParseAddrPort("[2001:db8::1]:4000"), codecs: []Codec{pcmu}},
		},
		{
			name: "absurd ptime ignored",
			body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 0", "a=ptime:100000"),
			want: remoteMedia{addr: netip.MustParseAddrPort("192.0.2.1:4000"), codecs: []Codec{pcmu}},
		},
		{name: "empty", body: nil, err: errSDPUnacceptable},
		{name: "garbage", body: []byte("hello world"), err: errSDPSyntax},
		{name: "truncated", body: sdpLines("v=0", "o=- 1"), err: errSDPSyntax},
		{name: "binary", body: []byte{0, 1, 2, 0xff, '\n'}, err: errSDPSyntax},
		{name: "no media", body: withHead("c=IN IP4 192.0.2.1", "t=0 0"), err: errSDPUnacceptable},
		{name: "only G.729", body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 18", "a=rtpmap:18 G729/8000"), err: errSDPUnacceptable},
		{name: "PCMU at wrong rate", body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 97", "a=rtpmap:97 PCMU/16000"), err: errSDPUnacceptable},
		{name: "SRTP only", body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/SAVP 0"), err: errSDPUnacceptable},
		{name: "no connection", body: withHead("t=0 0", "m=audio 4000 RTP/AVP 0"), err: errSDPUnacceptable},
		{name: "hostname connection", body: withHead("c=IN IP4 pbx.example.com", "t=0 0", "m=audio 4000 RTP/AVP 0"), err: errSDPUnacceptable},
		{
			name: "old-style hold: c=0.0.0.0 means sendonly",
			body: withHead("c=IN IP4 0.0.0.0", "t=0 0", "m=audio 4000 RTP/AVP 0"),
			want: remoteMedia{addr: netip.MustParseAddrPort("0.0.0.0:4000"), codecs: []Codec{pcmu}, dir: dirSendOnly},
		},
		{
			name: "old-style hold of a recvonly stream is inactive",
			body: withHead("c=IN IP4 0.0.0.0", "t=0 0", "m=audio 4000 RTP/AVP 0", "a=recvonly"),
			want: remoteMedia{addr: netip.MustParseAddrPort("0.0.0.0:4000"), codecs: []Codec{pcmu}, dir: dirInactive},
		},
		{
			name: "session-level direction",
			body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "a=sendonly", "m=audio 4000 RTP/AVP 0"),
			want: remoteMedia{addr: netip.MustParseAddrPort("192.0.2.1:4000"), codecs: []Codec{pcmu}, dir: dirSendOnly},
		},
		{
			name: "media-level direction wins",
			body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "a=sendonly", "m=audio 4000 RTP/AVP 0", "a=inactive"),
			want: remoteMedia{addr: netip.MustParseAddrPort("192.0.2.1:4000"), codecs: []Codec{pcmu}, dir: dirInactive},
		},
		{
			name: "explicit sendrecv is the zero value",
			body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "a=inactive", "m=audio 4000 RTP/AVP 0", "a=sendrecv"),
			want: remoteMedia{addr: netip.MustParseAddrPort("192.0.2.1:4000"), codecs: []Codec{pcmu}},
		},
		{
			name: "IPv6 unspecified is old-style hold too",
			body: sdpLines("v=0", "o=- 1 1 IN IP6 ::1", "s=-", "c=IN IP6 ::", "t=0 0", "m=audio 4000 RTP/AVP 0", "a=recvonly"),
			want: remoteMedia{addr: netip.MustParseAddrPort("[::]:4000"), codecs: []Codec{pcmu}, dir: dirInactive},
		},
		{name: "IP4 type with an IPv6 address", body: withHead("c=IN IP4 2001:db8::1", "t=0 0", "m=audio 4000 RTP/AVP 0"), err: errSDPUnacceptable},
		{name: "IP6 type with an IPv4 address", body: withHead("c=IN IP6 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 0"), err: errSDPUnacceptable},
		{name: "multicast connection", body: withHead("c=IN IP4 224.2.1.1/127", "t=0 0", "m=audio 4000 RTP/AVP 0"), err: errSDPUnacceptable},
		{name: "port out of range", body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 70000 RTP/AVP 0"), err: errSDPSyntax},
		{name: "junk formats only", body: withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP x 300"), err: errSDPUnacceptable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSDP(tc.body)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBuildSDPRoundTrip(t *testing.T) {
	addr := netip.MustParseAddrPort("192.0.2.9:30000")
	body, err := buildSDP(addr, []Codec{{"PCMA", 8}, {"PCMU", 0}}, 101, 40*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	s := string(body)
	for _, line := range []string{"m=audio 30000 RTP/AVP 8 0 101", "c=IN IP4 192.0.2.9", "a=rtpmap:8 PCMA/8000",
		"a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:40", "a=sendrecv"} {
		if !strings.Contains(s, line+"\r\n") {
			t.Errorf("missing %q in\n%s", line, s)
		}
	}
	got, err := parseSDP(body)
	if err != nil {
		t.Fatal(err)
	}
	want := remoteMedia{addr: addr, codecs: []Codec{{"PCMA", 8}, {"PCMU", 0}}, dtmfPT: 101, ptime: 40 * time.Millisecond}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip %+v, want %+v", got, want)
	}
	noDTMF, err := buildSDP(addr, []Codec{{"PCMU", 0}}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(noDTMF), "telephone-event") || !strings.Contains(string(noDTMF), "a=ptime:20\r\n") {
		t.Errorf("without DTMF:\n%s", noDTMF)
	}
	for _, bad := range []netip.AddrPort{{}, netip.MustParseAddrPort("0.0.0.0:4000"), netip.MustParseAddrPort("192.0.2.1:0")} {
		if _, err := buildSDP(bad, []Codec{{"PCMU", 0}}, 0, 0); err == nil {
			t.Errorf("buildSDP(%v) succeeded", bad)
		}
	}
}

func TestAnswerFor(t *testing.T) {
	offerMedia := remoteMedia{addr: netip.MustParseAddrPort("192.0.2.1:4000"), codecs: []Codec{{"PCMU", 0}, {"PCMA", 8}}, dtmfPT: 96}
	local := MediaOffer{Addr: netip.MustParseAddrPort("192.0.2.2:5000"), Codecs: []Codec{{Name: "pcma"}, {Name: "PCMU"}}, DTMF: true}
	got, err := answerFor(offerMedia, local)
	if err != nil {
		t.Fatal(err)
	}
	// The caller prefers PCMU; we allow both, so the caller's order wins.
	want := MediaAnswer{Local: local.Addr, Remote: offerMedia.addr, Codec: Codec{"PCMU", 0}, DTMFPayloadType: 96, Ptime: 20 * time.Millisecond}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	onlyPCMA := MediaOffer{Addr: local.Addr, Codecs: []Codec{{Name: "PCMA"}}}
	if got, _ := answerFor(offerMedia, onlyPCMA); got.Codec != (Codec{"PCMA", 8}) {
		t.Errorf("with only PCMA allowed: %+v", got)
	}
	for ptime, want := range map[time.Duration]time.Duration{
		0: 20 * time.Millisecond, 10 * time.Millisecond: 10 * time.Millisecond, 30 * time.Millisecond: 30 * time.Millisecond,
		40 * time.Millisecond: 40 * time.Millisecond, 60 * time.Millisecond: 20 * time.Millisecond, 25 * time.Millisecond: 20 * time.Millisecond,
	} {
		o := offerMedia
		o.ptime = ptime
		if got, _ := answerFor(o, local); got.Ptime != want {
			t.Errorf("offer ptime %v: answered %v, want %v", ptime, got.Ptime, want)
		}
	}
	local.DTMF = false
	if got, _ := answerFor(offerMedia, local); got.DTMFPayloadType != 0 {
		t.Errorf("DTMF answered though not wanted: %+v", got)
	}
	if _, err := answerFor(remoteMedia{codecs: []Codec{{"PCMU", 0}}}, MediaOffer{Codecs: []Codec{{Name: "PCMA"}}}); !errors.Is(err, errSDPUnacceptable) {
		t.Errorf("no common codec: %v", err)
	}
	if _, err := answerFor(offerMedia, MediaOffer{}); err == nil {
		t.Error("no local codecs accepted")
	}
}

func TestAnswerFromPeer(t *testing.T) {
	answer := remoteMedia{addr: netip.MustParseAddrPort("192.0.2.1:4000"), codecs: []Codec{{"PCMA", 8}, {"PCMU", 0}}, dtmfPT: 101, ptime: 30 * time.Millisecond}
	got, err := answerFromPeer(answer, []Codec{{"PCMU", 0}, {"PCMA", 8}}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := MediaAnswer{Remote: answer.addr, Codec: Codec{"PCMA", 8}, DTMFPayloadType: 101, Ptime: 30 * time.Millisecond}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got, _ := answerFromPeer(answer, []Codec{{"PCMU", 0}}, false); got.Codec.Name != "PCMU" || got.DTMFPayloadType != 0 {
		t.Errorf("got %+v", got)
	}
	if _, err := answerFromPeer(remoteMedia{codecs: []Codec{{"PCMA", 8}}}, []Codec{{"PCMU", 0}}, false); err == nil {
		t.Error("answer with a codec we did not offer accepted")
	}
}

func TestNormalizeCodecs(t *testing.T) {
	got, err := normalizeCodecs([]Codec{{Name: "pcma", PayloadType: 99}, {Name: "PCMU"}, {Name: "PCMA"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Codec{{"PCMA", 8}, {"PCMU", 0}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range [][]Codec{nil, {{Name: "G722"}}} {
		if _, err := normalizeCodecs(bad); err == nil {
			t.Errorf("normalizeCodecs(%v) succeeded", bad)
		}
	}
}

func TestParseDTMF(t *testing.T) {
	good := map[string]rune{
		"Signal=5\r\nDuration=160\r\n": '5',
		"signal= *\nduration=100":      '*',
		"Signal=#":                     '#',
		"Signal=10\r\n":                '*',
		"Signal=11\r\n":                '#',
		"Signal=d\r\n":                 'D',
		"\r\nSignal=0\r\n\r\n":         '0',
	}
	for body, want := range good {
		if got, err := parseDTMFRelay(body); err != nil || got != want {
			t.Errorf("parseDTMFRelay(%q) = %q, %v; want %q", body, got, err, want)
		}
	}
	for _, body := range []string{"", "Duration=160", "Signal=", "Signal=55", "Signal=E", "Signal=1\r\nSignal=2", "hello", "Signal=\x00"} {
		if got, err := parseDTMFRelay(body); err == nil {
			t.Errorf("parseDTMFRelay(%q) = %q, want an error", body, got)
		}
	}
}

func FuzzParseSDP(f *testing.F) {
	f.Add(string(withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000")))
	f.Add("v=0\r\n")
	f.Add(string(withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/SAVP 0",
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0|2^31",
		"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0|1:4")))
	f.Fuzz(func(t *testing.T, body string) {
		rm, err := parseSDP([]byte(body))
		if err == nil && rm.savp && len(rm.crypto) == 0 {
			t.Errorf("accepted RTP/SAVP without a key")
		}
		if err == nil && (len(rm.codecs) == 0 || !rm.addr.IsValid() || rm.addr.Port() == 0) {
			t.Errorf("accepted unusable media %+v", rm)
		}
	})
}
