package sipagent

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"intercom/internal/clock/clocktest"
)

// key40 is a valid inline key: 30 bytes, base64.
var key40 = base64.StdEncoding.EncodeToString([]byte("0123456789abcdefghijklmnopqrst"))

func TestParseCryptoLine(t *testing.T) {
	good := []struct {
		in   string
		want sdesLine
	}{
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40, sdesLine{tag: 1, suite: SuiteAES128SHA1_80}},
		{"2 AES_CM_128_HMAC_SHA1_32 inline:" + key40 + "|2^31", sdesLine{tag: 2, suite: SuiteAES128SHA1_32}},
		{"123456789 aes_cm_128_hmac_sha1_80 INLINE:" + key40 + "|1048576", sdesLine{tag: 123456789, suite: SuiteAES128SHA1_80}},
	}
	for _, tc := range good {
		got, err := parseCryptoLine(tc.in)
		copy(tc.want.key[:], "0123456789abcdefghijklmnopqrst")
		if err != nil || got != tc.want {
			t.Errorf("parseCryptoLine(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, bad := range []string{
		"",
		"1 AES_CM_128_HMAC_SHA1_80",
		"x AES_CM_128_HMAC_SHA1_80 inline:" + key40,
		"-1 AES_CM_128_HMAC_SHA1_80 inline:" + key40,
		"1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + key40, // tag of 10 digits
		"1 AES_256_CM_HMAC_SHA1_80 inline:" + key40,          // a suite we do not support
		"1 F8_128_HMAC_SHA1_80 inline:" + key40,
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40[:36],                         // short key
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + "AAAA",                     // long key
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + strings.Repeat("!", 40),            // not base64
		"1 AES_CM_128_HMAC_SHA1_80 uri:" + key40,                                 // not inline
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + "|2^20|1:4",                // MKI
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + "|1:4",                     // MKI alone
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + "|2^x",                     // bad lifetime
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + ";inline:" + key40,         // two keys
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + " UNENCRYPTED_SRTP",        // session parameter
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + " KDR=1",                   // session parameter
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + "|2^31|1:1|x",              // junk
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + "|0",                       // zero lifetime
		"1\tAES_CM_128_HMAC_SHA1_80\tinline:" + key40 + "\tUNAUTHENTICATED_SRTP", // session parameter
	} {
		if got, err := parseCryptoLine(bad); err == nil {
			t.Errorf("parseCryptoLine(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseSDPCrypto(t *testing.T) {
	line := func(tag int, suite string) string { return fmt.Sprintf("a=crypto:%d %s inline:%s", tag, suite, key40) }
	for _, tc := range []struct {
		name   string
		body   []byte
		savp   bool
		suites []string
		err    bool
	}{
		{"SAVP with both suites", withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/SAVP 0",
			line(1, SuiteAES128SHA1_80), line(2, SuiteAES128SHA1_32)), true, []string{SuiteAES128SHA1_80, SuiteAES128SHA1_32}, false},
		{"AVP with crypto (best effort)", withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 0",
			line(1, SuiteAES128SHA1_32)), false, []string{SuiteAES128SHA1_32}, false},
		{"unsupported and repeated lines skipped", withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/SAVP 0",
			line(1, "AES_256_CM_HMAC_SHA1_80"), "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:short", line(3, SuiteAES128SHA1_32), line(3, SuiteAES128SHA1_80)),
			true, []string{SuiteAES128SHA1_32}, false},
		{"SAVP without crypto", withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/SAVP 0"), false, nil, true},
		{"SAVP with only bad crypto", withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/SAVP 0",
			"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+key40+" UNENCRYPTED_SRTP"), false, nil, true},
		{"SAVPF is not ours", withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/SAVPF 0", line(1, SuiteAES128SHA1_80)), false, nil, true},
		{"bad SAVP stream, then plain AVP", withHead("c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/SAVP 0", "m=audio 4002 RTP/AVP 0"),
			false, nil, false},
	} {
		rm, err := parseSDP(tc.body)
		if tc.err {
			if !errors.Is(err, errSDPUnacceptable) {
				t.Errorf("%s: error %v, want unacceptable", tc.name, err)
			}
			continue
		}
		var suites []string
		for _, c := range rm.crypto {
			suites = append(suites, c.suite)
		}
		if err != nil || rm.savp != tc.savp || !slices.Equal(suites, tc.suites) {
			t.Errorf("%s: savp %v suites %v, %v", tc.name, rm.savp, suites, err)
		}
	}
}

// TestSDESRoundTrip builds offers and answers with keys and reads them
// back as the peer would.
func TestSDESRoundTrip(t *testing.T) {
	for _, savp := range []bool{true, false} {
		_, lines, err := offerSDES(sdesMode{keys: true, required: savp})
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) != 2 || lines[0].suite != SuiteAES128SHA1_80 || lines[1].suite != SuiteAES128SHA1_32 || lines[0].key == lines[1].key {
			t.Fatalf("offer lines %v", lines)
		}
		l := localSDP{addr: netip.MustParseAddrPort("192.0.2.5:4000"), codecs: []Codec{{"PCMU", 0}}, ptime: defaultPtime, savp: savp, crypto: lines}
		if err := l.newSession(); err != nil {
			t.Fatal(err)
		}
		body, err := l.marshal()
		if err != nil {
			t.Fatal(err)
		}
		proto := "RTP/AVP"
		if savp {
			proto = "RTP/SAVP"
		}
		if !strings.Contains(string(body), "m=audio 4000 "+proto+" 0\r\n") {
			t.Fatalf("body lacks %s:\n%s", proto, body)
		}
		rm, err := parseSDP(body)
		if err != nil || rm.savp != savp || !slices.Equal(rm.crypto, lines) {
			t.Fatalf("read back savp %v crypto %v (%v), want %v", rm.savp, rm.crypto, err, lines)
		}
		own, err := parseLocalSDP(body)
		if err != nil || !own.sameMedia(l) {
			t.Fatalf("parseLocalSDP: %+v, %v", own, err)
		}

		// The peer answers with the second suite and its own key.
		keys, ans, err := answerSDES(rm, sdesMode{keys: true}, SRTPKeys{})
		if err != nil || keys.Suite != SuiteAES128SHA1_80 || keys.Remote != lines[0].key || len(ans) != 1 || ans[0].tag != 1 {
			t.Fatalf("answerSDES: %v %v %v", keys, ans, err)
		}
		peerLine := sdesLine{tag: 2, suite: SuiteAES128SHA1_32, key: [SDESKeyLen]byte{9}}
		got, err := peerSDES(remoteMedia{savp: savp, crypto: []sdesLine{peerLine}}, lines, savp)
		want := SRTPKeys{Suite: SuiteAES128SHA1_32, Local: lines[1].key, Remote: peerLine.key}
		if err != nil || got != want {
			t.Fatalf("peerSDES = %v, %v", got, err)
		}
	}
}

// TestSDESPolicy runs offers through the answer's policy: SRTP when
// allowed and offered, plain when allowed, a 488 with its reason when not.
func TestSDESPolicy(t *testing.T) {
	k := sdesLine{tag: 7, suite: SuiteAES128SHA1_32, key: [SDESKeyLen]byte{1, 2, 3}}
	savp := remoteMedia{savp: true, crypto: []sdesLine{k}}
	avpCrypto := remoteMedia{crypto: []sdesLine{k}}
	plain := remoteMedia{}
	tlsAgent, udpAgent := &Agent{transport: "TLS"}, &Agent{transport: "UDP"}
	for _, tc := range []struct {
		name   string
		a      *Agent
		policy SRTPPolicy
		offer  remoteMedia
		srtp   bool
		reason string // of the 488; "" when accepted
	}{
		{"tls optional savp", tlsAgent, SRTPOptional, savp, true, ""},
		{"tls optional avp+crypto", tlsAgent, SRTPOptional, avpCrypto, true, ""},
		{"tls optional plain", tlsAgent, SRTPOptional, plain, false, ""},
		{"tls required savp", tlsAgent, SRTPRequired, savp, true, ""},
		{"tls required avp+crypto", tlsAgent, SRTPRequired, avpCrypto, true, ""},
		{"tls required plain", tlsAgent, SRTPRequired, plain, false, "Not Acceptable Here: SRTP Required"},
		{"tls off savp", tlsAgent, SRTPOff, savp, false, "Not Acceptable Here: SRTP Not Available"},
		{"tls off avp+crypto", tlsAgent, SRTPOff, avpCrypto, false, ""},
		{"tls default is off", tlsAgent, "", avpCrypto, false, ""},
		{"udp optional savp", udpAgent, SRTPOptional, savp, false, "Not Acceptable Here: SRTP Not Available"},
		{"udp optional avp+crypto: keys never over udp", udpAgent, SRTPOptional, avpCrypto, false, ""},
		{"udp required", udpAgent, SRTPRequired, savp, false, "Not Acceptable Here: SRTP Required"},
	} {
		mode, err := tc.a.sdesMode(tc.policy)
		var keys SRTPKeys
		var lines []sdesLine
		if err == nil {
			keys, lines, err = answerSDES(tc.offer, mode, SRTPKeys{})
		}
		switch {
		case tc.reason != "":
			if err == nil || NotAcceptableReason(err) != tc.reason {
				t.Errorf("%s: error %v (reason %q), want %q", tc.name, err, NotAcceptableReason(err), tc.reason)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case (keys.Suite != "") != tc.srtp || (len(lines) == 1) != tc.srtp:
			t.Errorf("%s: keys %v lines %d, want SRTP %v", tc.name, keys, len(lines), tc.srtp)
		case tc.srtp && (keys.Remote != k.key || lines[0].tag != k.tag || lines[0].key != keys.Local || keys.Local == [SDESKeyLen]byte{}):
			t.Errorf("%s: keys %+v lines %v", tc.name, keys, lines)
		}
	}
	if _, err := tlsAgent.sdesMode("maybe"); err == nil {
		t.Error("unknown policy accepted")
	}
	// Offers: SAVP only when required, no keys without TLS.
	for _, tc := range []struct {
		a          *Agent
		policy     SRTPPolicy
		savp, keys bool
	}{{tlsAgent, SRTPRequired, true, true}, {tlsAgent, SRTPOptional, false, true}, {tlsAgent, SRTPOff, false, false}, {udpAgent, SRTPOptional, false, false}} {
		mode, _ := tc.a.sdesMode(tc.policy)
		savp, lines, err := offerSDES(mode)
		if err != nil || savp != tc.savp || (len(lines) > 0) != tc.keys {
			t.Errorf("%s %s: offer savp %v, %d lines, %v", tc.a.transport, tc.policy, savp, len(lines), err)
		}
	}
	// Answers to our offer.
	offered := []sdesLine{{tag: 1, suite: SuiteAES128SHA1_80, key: [SDESKeyLen]byte{5}}}
	for _, tc := range []struct {
		name     string
		answer   remoteMedia
		required bool
		srtp     bool
		err      bool
	}{
		{"matching tag", remoteMedia{crypto: []sdesLine{{tag: 1, suite: SuiteAES128SHA1_80}}}, true, true, false},
		{"wrong tag", remoteMedia{crypto: []sdesLine{{tag: 2, suite: SuiteAES128SHA1_80}}}, true, false, true},
		{"wrong suite for the tag", remoteMedia{crypto: []sdesLine{{tag: 1, suite: SuiteAES128SHA1_32}}}, false, false, false},
		{"no crypto, optional", remoteMedia{}, false, false, false},
		{"no crypto, required", remoteMedia{}, true, false, true},
		{"SAVP without our tag", remoteMedia{savp: true}, false, false, true},
	} {
		keys, err := peerSDES(tc.answer, offered, tc.required)
		if (err != nil) != tc.err || (keys.Suite != "") != tc.srtp {
			t.Errorf("%s: %v, %v", tc.name, keys, err)
		}
	}
	if _, err := peerSDES(remoteMedia{savp: true, crypto: offered}, nil, false); err == nil {
		t.Error("SAVP answer to a plain offer accepted")
	}
}

// TestSRTPKeysNotPrinted: a MediaAnswer is logged; its keys must not be.
func TestSRTPKeysNotPrinted(t *testing.T) {
	var k SRTPKeys
	k.Suite = SuiteAES128SHA1_80
	for i := range k.Local {
		k.Local[i], k.Remote[i] = 0xa0+byte(i), 0xc0+byte(i)
	}
	m := MediaAnswer{SRTP: k}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "media", m)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "media", m, "keys", k)
	// The keys as decimal bytes (%v, JSON arrays), hex and base64; not
	// single numbers, which a log line's timestamp may contain.
	var leaks []string
	for _, key := range [][30]byte{k.Local, k.Remote} {
		leaks = append(leaks, fmt.Sprintf("%d %d %d", key[0], key[1], key[2]), fmt.Sprintf("%d,%d,%d", key[0], key[1], key[2]),
			hex.EncodeToString(key[:3]), base64.StdEncoding.EncodeToString(key[:])[:8])
	}
	for _, out := range []string{fmt.Sprint(m), fmt.Sprintf("%+v", m), fmt.Sprintf("%#v", m), fmt.Sprintf("%v", k), logged.String()} {
		for _, leak := range leaks {
			if strings.Contains(strings.ToLower(out), strings.ToLower(leak)) {
				t.Errorf("keys printed (%q): %s", leak, out)
			}
		}
	}
}

// tlsPair is two agents that call each other over TLS with certificates
// from one test CA.
func tlsPair(t *testing.T) (door, flat *Agent) {
	t.Helper()
	ca := newTestCA(t, "test CA")
	mk := func(user string) *Agent {
		cert := ca.issue(t, "127.0.0.1")
		return startAgent(t, Config{User: user, Transport: "tls", TLS: TLS{RootCAs: ca.pool, Certificate: &cert}, Clock: clocktest.New(time.Now())})
	}
	return mk("door"), mk("flat")
}

func tlsTarget(user string, a *Agent) string {
	return "sip:" + user + "@" + a.Addr().String() + ";transport=tls"
}

// TestSRTPCallOverTLS: the door requires SRTP, the flat allows it; both
// ends get the same keys, mirrored, and a re-INVITE keeps them.
func TestSRTPCallOverTLS(t *testing.T) {
	door, flat := tlsPair(t)
	ctx := context.Background()
	req := offer(40000, true, "PCMU")
	req.SRTP = SRTPRequired
	res := dialAsync(ctx, door, DialRequest{Targets: []string{tlsTarget("flat", flat)}, Media: req})
	in := waitEvent[IncomingCall](t, flat)
	local := offer(41000, true, "PCMU")
	local.SRTP = SRTPOptional
	got, err := in.Call.Accept(ctx, local)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	caller := r.call.Media().SRTP
	if got.SRTP.Suite != SuiteAES128SHA1_80 || caller.Suite != got.SRTP.Suite ||
		caller.Local != got.SRTP.Remote || caller.Remote != got.SRTP.Local || caller.Local == caller.Remote {
		t.Fatalf("keys do not mirror: caller %s, callee %s", caller, got.SRTP)
	}
	// A session refresh re-offers the same keys; nothing changes.
	if err := r.call.refresh(ctx, 90*time.Second); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if r.call.Media().SRTP != caller || in.Call.Media().SRTP != got.SRTP {
		t.Fatalf("keys changed by a refresh: %s / %s", r.call.Media().SRTP, in.Call.Media().SRTP)
	}
	if err := r.call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSRTPRefusals: calls that cannot meet the policy fail with a reason,
// and no keys go out over plain signalling.
func TestSRTPRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("required dial over udp", func(t *testing.T) {
		door := startAgent(t, Config{User: "door"})
		req := offer(40000, false, "PCMU")
		req.SRTP = SRTPRequired
		if _, err := door.Dial(ctx, DialRequest{Targets: []string{"sip:flat@127.0.0.1:9"}, Media: req}); !errors.Is(err, errSRTPInsecure) {
			t.Fatalf("Dial: %v", err)
		}
	})
	t.Run("optional over udp sends no keys", func(t *testing.T) {
		door := startAgent(t, Config{User: "door"})
		flat := startAgent(t, Config{User: "flat"})
		req := offer(40000, false, "PCMU")
		req.SRTP = SRTPOptional
		res := dialAsync(ctx, door, DialRequest{Targets: []string{target("flat", flat)}, Media: req})
		in := waitEvent[IncomingCall](t, flat)
		if len(in.Call.offer.crypto) != 0 || in.Call.offer.savp {
			t.Errorf("keys offered over UDP: %v", in.Call.offer.crypto)
		}
		local := offer(41000, false, "PCMU")
		local.SRTP = SRTPRequired
		if _, err := in.Call.Accept(ctx, local); err == nil {
			t.Fatal("Accept with SRTP required over UDP succeeded")
		}
		var se *StatusError
		if r := waitDial(t, res); !errors.As(r.err, &se) || se.Code != 488 || se.Reason != "Not Acceptable Here: SRTP Required" {
			t.Fatalf("Dial error = %v, want 488 SRTP Required", r.err)
		}
	})
	t.Run("savp offer to a station with srtp off", func(t *testing.T) {
		door, flat := tlsPair(t)
		req := offer(40000, false, "PCMU")
		req.SRTP = SRTPRequired
		res := dialAsync(ctx, door, DialRequest{Targets: []string{tlsTarget("flat", flat)}, Media: req})
		in := waitEvent[IncomingCall](t, flat)
		if _, err := in.Call.Accept(ctx, offer(41000, false, "PCMU")); err == nil {
			t.Fatal("Accept of an RTP/SAVP offer without SRTP succeeded")
		}
		var se *StatusError
		if r := waitDial(t, res); !errors.As(r.err, &se) || se.Code != 488 || !strings.Contains(se.Reason, "SRTP") {
			t.Fatalf("Dial error = %v, want 488 naming SRTP", r.err)
		}
	})
	t.Run("optional caller, plain answer", func(t *testing.T) {
		door, flat := tlsPair(t)
		req := offer(40000, false, "PCMU")
		req.SRTP = SRTPOptional
		res := dialAsync(ctx, door, DialRequest{Targets: []string{tlsTarget("flat", flat)}, Media: req})
		in := waitEvent[IncomingCall](t, flat)
		// The flat has SRTP off: it answers RTP/AVP without keys, and the
		// optional caller goes on in plain RTP.
		if _, err := in.Call.Accept(ctx, offer(41000, false, "PCMU")); err != nil {
			t.Fatal(err)
		}
		r := waitDial(t, res)
		if r.err != nil || r.call.Media().SRTP.Suite != "" {
			t.Fatalf("Dial: %v, keys %v", r.err, r.call.Media().SRTP)
		}
		if err := r.call.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseCrypto(f *testing.F) {
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:" + key40)
	f.Add("2 AES_CM_128_HMAC_SHA1_32 inline:" + key40 + "|2^31")
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + "|2^20|1:4")
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:" + key40 + " UNENCRYPTED_SRTP")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		c, err := parseCryptoLine(v)
		if err != nil {
			return
		}
		// What we accept, we write back the same.
		back, err := parseCryptoLine(c.String())
		if err != nil || back != c {
			t.Errorf("%q read as %v, written %q, read back %v (%v)", v, c, c.String(), back, err)
		}
	})
}

// TestInDialogOfferSRTP: a new offer within an SRTP call keeps our key
// when the suite stays and takes the peer's new one (RFC 4568 section
// 7.1.4); it cannot drop SRTP, and a plain call cannot take it up.
func TestInDialogOfferSRTP(t *testing.T) {
	keys := SRTPKeys{Suite: SuiteAES128SHA1_80, Local: [SDESKeyLen]byte{1}, Remote: [SDESKeyLen]byte{2}}
	addr := netip.MustParseAddrPort("192.0.2.9:5000")
	call := func(k SRTPKeys) *Call {
		return &Call{media: MediaAnswer{Local: netip.MustParseAddrPort("192.0.2.1:4000"), Remote: addr, Codec: Codec{"PCMU", 0}, SRTP: k},
			dlg: dialogState{caps: offer(4000, false, "PCMU")}}
	}
	pcmu := []Codec{{"PCMU", 0}}
	same := sdesLine{tag: 5, suite: SuiteAES128SHA1_80, key: [SDESKeyLen]byte{3}}
	l, ans, err := call(keys).answerOfferLocked(remoteMedia{addr: addr, codecs: pcmu, savp: true, crypto: []sdesLine{same}})
	if err != nil || ans.SRTP != (SRTPKeys{Suite: keys.Suite, Local: keys.Local, Remote: same.key}) || !l.savp ||
		!slices.Equal(l.crypto, []sdesLine{{tag: 5, suite: keys.Suite, key: keys.Local}}) {
		t.Fatalf("same suite: %v %v %v, %v", ans.SRTP, l.savp, l.crypto, err)
	}
	other := sdesLine{tag: 1, suite: SuiteAES128SHA1_32, key: [SDESKeyLen]byte{4}}
	_, ans, err = call(keys).answerOfferLocked(remoteMedia{addr: addr, codecs: pcmu, crypto: []sdesLine{other}})
	if err != nil || ans.SRTP.Suite != SuiteAES128SHA1_32 || ans.SRTP.Local == keys.Local || ans.SRTP.Remote != other.key {
		t.Fatalf("new suite: %v, %v", ans.SRTP, err)
	}
	if _, _, err := call(keys).answerOfferLocked(remoteMedia{addr: addr, codecs: pcmu}); !errors.Is(err, errSRTPRequired) {
		t.Fatalf("SRTP call, offer without keys: %v", err)
	}
	if _, _, err := call(SRTPKeys{}).answerOfferLocked(remoteMedia{addr: addr, codecs: pcmu, savp: true, crypto: []sdesLine{same}}); !errors.Is(err, errSRTPUnavailable) {
		t.Fatalf("plain call, RTP/SAVP offer: %v", err)
	}
	l, ans, err = call(SRTPKeys{}).answerOfferLocked(remoteMedia{addr: addr, codecs: pcmu, crypto: []sdesLine{same}})
	if err != nil || ans.SRTP.Suite != "" || l.crypto != nil {
		t.Fatalf("plain call, RTP/AVP offer with keys: %v %v, %v", ans.SRTP, l.crypto, err)
	}
}
