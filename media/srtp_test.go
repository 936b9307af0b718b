package media

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"intercom/internal/clock"
	"intercom/internal/clock/clocktest"
	"intercom/media/measure"
)

// testKeys returns keys whose Local starts with a and Remote with b.
func testKeys(suite SRTPSuite, a, b byte) SRTP {
	k := SRTP{Suite: suite}
	for i := range k.Local {
		k.Local[i], k.Remote[i] = a+byte(i), b+byte(i)
	}
	return k
}

// mirror is the far end's view of k.
func mirror(k SRTP) SRTP { return SRTP{Suite: k.Suite, Local: k.Remote, Remote: k.Local} }

// farEnd protects packets as the remote of a session keyed with k would.
func farEnd(t testing.TB, k SRTP) *srtp.Context {
	t.Helper()
	c, err := newSRTPContext(k.Suite, k.Remote)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func protect(t testing.TB, c *srtp.Context, pkt []byte) []byte {
	t.Helper()
	out, err := c.EncryptRTP(nil, pkt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newSRTPTestSession(t testing.TB, k SRTP) *Session {
	t.Helper()
	c, cc := listen(t, "127.0.0.1")
	s, err := NewSession(SessionConfig{Conn: c, RTCPConn: cc, Remote: peer, Codec: PCMU, DTMFPayloadType: 101,
		Source: &sineSource{p: newPacer(clock.Real{}, 8000)}, Sink: newRecordSink(nil, 1<<30),
		Jitter: JitterConfig{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		SRTP:   k, Clock: clocktest.New(time.Unix(1000, 0))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSRTPLoopback runs two sessions keyed against each other on
// loopback: each hears the other's tone, and their SRTCP reports arrive.
func TestSRTPLoopback(t *testing.T) {
	for _, suite := range []SRTPSuite{AESCM128HMACSHA1_80, AESCM128HMACSHA1_32} {
		t.Run(suite.String(), func(t *testing.T) { testSRTPLoopback(t, suite) })
	}
}

func testSRTPLoopback(t *testing.T, suite SRTPSuite) {
	const frames = 15
	keys := testKeys(suite, 1, 101)
	type side struct {
		s    *Session
		sink *recordSink
	}
	connA, rtcpA := listen(t, "127.0.0.1")
	connB, rtcpB := listen(t, "127.0.0.1")
	mk := func(conn, rtcpConn *net.UDPConn, remote netip.AddrPort, freq float64, k SRTP) side {
		sd := side{sink: newRecordSink(newPacer(clock.Real{}, 8000), frames*160)}
		var err error
		sd.s, err = NewSession(SessionConfig{Conn: conn, RTCPConn: rtcpConn, Remote: remote, Codec: PCMU,
			Source: &sineSource{freq: freq, p: newPacer(clock.Real{}, 8000)}, Sink: sd.sink,
			Jitter: JitterConfig{Min: 40 * time.Millisecond, Max: 200 * time.Millisecond},
			SRTP:   k, RTCPInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	a := mk(connA, rtcpA, localAddr(connB), 440, keys)
	b := mk(connB, rtcpB, localAddr(connA), 1000, mirror(keys))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- a.s.Run(ctx) }()
	go func() { errs <- b.s.Run(ctx) }()
	for _, sd := range []side{a, b} {
		select {
		case <-sd.sink.heard:
		case <-time.After(10 * time.Second):
			t.Fatalf("no audio received: %+v", sd.s.Stats())
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.s.Stats().RTCPReceived == 0 || b.s.Stats().RTCPReceived == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no SRTCP report arrived:\nA %+v\nB %+v", a.s.Stats(), b.s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	for _, tc := range []struct {
		name        string
		sd          side
		hear, other float64
	}{{"A hears B", a, 1000, 440}, {"B hears A", b, 440, 1000}} {
		got := tc.sd.sink.played()[:frames*160]
		on, off := measure.Goertzel(got, 8000, tc.hear), measure.Goertzel(got, 8000, tc.other)
		if on < 0.1 || on < 20*off {
			t.Errorf("%s: level at %v Hz %.3f, at %v Hz %.3f", tc.name, tc.hear, on, tc.other, off)
		}
		if st := tc.sd.s.Stats(); st.Unauthenticated != 0 || st.Malformed != 0 || st.RTCPMalformed != 0 {
			t.Errorf("%s: stats %+v", tc.name, st)
		}
	}
}

// TestSRTPOnTheWire reads what a keyed session sends: the payload is not
// the G.711 the microphone gave, the tag has the suite's length, and the
// far end's key recovers the audio.
func TestSRTPOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		suite SRTPSuite
		tag   int
	}{{AESCM128HMACSHA1_80, 10}, {AESCM128HMACSHA1_32, 4}} {
		t.Run(tc.suite.String(), func(t *testing.T) {
			far, farRTCP := listen(t, "127.0.0.1")
			keys := testKeys(tc.suite, 7, 77)
			r := newRig(t, SessionConfig{Remote: localAddr(far), RemoteRTCP: localAddr(farRTCP), Codec: PCMU, SRTP: keys}, nil)
			r.frame()
			far.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, maxPacket)
			n, err := far.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if n != 12+160+tc.tag {
				t.Fatalf("packet of %d bytes, want %d", n, 12+160+tc.tag)
			}
			plain := make([]byte, 160)
			PCMU.Encode(plain, slices.Repeat([]int16{2000}, 160))
			if bytes.Contains(buf[:n], plain[:16]) {
				t.Fatal("the payload went out in the clear")
			}
			dec, err := newSRTPContext(tc.suite, keys.Local)
			if err != nil {
				t.Fatal(err)
			}
			out, err := dec.DecryptRTP(nil, buf[:n], nil)
			if err != nil {
				t.Fatal(err)
			}
			var p rtp.Packet
			if err := p.Unmarshal(out); err != nil || !bytes.Equal(p.Payload, plain) {
				t.Fatalf("decrypted payload %x (%v), want %x", p.Payload, err, plain)
			}
			r.stop()
			// The BYE report goes out as SRTCP too.
			farRTCP.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				n, err := farRTCP.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				plainRTCP, err := dec.DecryptRTCP(nil, buf[:n], nil)
				if err != nil {
					t.Fatalf("SRTCP: %v", err)
				}
				pkts, err := rtcp.Unmarshal(plainRTCP)
				if err != nil {
					t.Fatal(err)
				}
				if slices.ContainsFunc(pkts, func(p rtcp.Packet) bool { _, ok := p.(*rtcp.Goodbye); return ok }) {
					return
				}
			}
		})
	}
}

// TestSRTPRefuses feeds a keyed session packets it must refuse: each is
// counted, and none is played, latched or taken as a key press.
func TestSRTPRefuses(t *testing.T) {
	keys := testKeys(AESCM128HMACSHA1_80, 1, 101)
	s := newSRTPTestSession(t, keys)
	var digits []rune
	s.cfg.OnDigit = func(r rune) { digits = append(digits, r) }
	far := farEnd(t, keys)
	good := protect(t, far, audioPacket(1, 0, 1000))

	tampered := protect(t, far, audioPacket(2, 0, 1000))
	tampered[20] ^= 1
	wrongKey := protect(t, farEnd(t, testKeys(AESCM128HMACSHA1_80, 1, 102)), audioPacket(3, 0, 1000))
	shortTag := protect(t, far, audioPacket(4, 0, 1000))
	shortTag = shortTag[:len(shortTag)-1]
	for _, b := range [][]byte{
		audioPacket(5, 0, 1000), // plain RTP
		tampered,
		wrongKey,
		shortTag,
		good[:12],   // a header alone
		good[:3],    // not even that
		{},          // nothing
		good[:12+9], // shorter than a tag
	} {
		s.receive(b, peer, s.clk.Now())
	}
	st := s.Stats()
	if st.Unauthenticated != 8 || st.PacketsReceived != 0 || s.jb.Len() != 0 {
		t.Fatalf("after forged packets: %+v, buffered %d", st, s.jb.Len())
	}
	s.receive(slices.Clone(good), peer, s.clk.Now())
	s.receive(slices.Clone(good), peer, s.clk.Now()) // a replay (RFC 3711 section 3.3.2)
	st = s.Stats()
	if st.PacketsReceived != 1 || st.Unauthenticated != 9 || st.Duplicates != 0 {
		t.Fatalf("good packet then its replay: %+v", st)
	}

	// A replayed key press does not press the key again.
	var dtmf [][]byte
	for i, end := range []bool{false, true} {
		payload := []byte{1, 10, 0, 160}
		if end {
			payload[1] |= 0x80
		}
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: uint16(10 + i), Timestamp: 8000, SSRC: 42, Marker: i == 0}, Payload: payload}
		b, _ := p.Marshal()
		dtmf = append(dtmf, protect(t, far, b))
	}
	for _, b := range dtmf {
		s.receive(slices.Clone(b), peer, s.clk.Now())
	}
	for _, b := range dtmf {
		s.receive(slices.Clone(b), peer, s.clk.Now())
	}
	if len(digits) != 1 || digits[0] != '1' || s.Stats().Unauthenticated != 11 {
		t.Fatalf("digits %q, stats %+v", digits, s.Stats())
	}
}

// TestSRTCPRefuses checks the RTCP side: plain or forged reports are
// counted and change nothing, a protected one is taken in.
func TestSRTCPRefuses(t *testing.T) {
	keys := testKeys(AESCM128HMACSHA1_32, 1, 101)
	s := newSRTPTestSession(t, keys)
	far := farEnd(t, keys)
	rr := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 42})
	good, err := far.EncryptRTCP(nil, rr, nil)
	if err != nil {
		t.Fatal(err)
	}
	tampered := slices.Clone(good)
	tampered[9] ^= 1
	rtcpPeer := netip.AddrPortFrom(peer.Addr(), peer.Port()+1)
	for _, b := range [][]byte{rr, tampered, good[:len(good)-1], good[:8], {}} {
		s.receiveRTCP(b, rtcpPeer, s.clk.Now())
	}
	if st := s.Stats(); st.Unauthenticated != 5 || st.RTCPReceived != 0 || st.RTCPMalformed != 0 {
		t.Fatalf("after forged reports: %+v", st)
	}
	s.receiveRTCP(good, rtcpPeer, s.clk.Now())
	if st := s.Stats(); st.RTCPReceived != 1 {
		t.Fatalf("after a good report: %+v", st)
	}
}

// TestSRTPStrangers floods a keyed session with forged packets of ever new
// SSRCs: the state kept for them is renewed, and the real stream, its
// rollover counter included, goes on.
func TestSRTPStrangers(t *testing.T) {
	keys := testKeys(AESCM128HMACSHA1_80, 1, 101)
	s := newSRTPTestSession(t, keys)
	far := farEnd(t, keys)
	// The real stream crosses a sequence wrap: its rollover counter is 1.
	for _, seq := range []uint16{65534, 65535, 0, 1} {
		s.receive(protect(t, far, audioPacket(seq, 0, 1000)), peer, s.clk.Now())
	}
	first := s.sec.rxRTP
	forger := farEnd(t, testKeys(AESCM128HMACSHA1_80, 9, 9))
	for i := range 3 * maxStrangers {
		p := audioPacket(uint16(i), 0, 1000)
		p[8], p[9], p[10], p[11] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)+100
		s.receive(protect(t, forger, p), peer, s.clk.Now())
	}
	if s.sec.rxRTP == first {
		t.Fatal("the receive context was never renewed")
	}
	if roc, ok := s.sec.rxRTP.ROC(42); !ok || roc != 1 {
		t.Fatalf("rollover counter after renewal: %d, %v", roc, ok)
	}
	s.receive(protect(t, far, audioPacket(2, 0, 1000)), peer, s.clk.Now())
	if st := s.Stats(); st.PacketsReceived != 5 || st.Unauthenticated != 3*maxStrangers {
		t.Fatalf("stats %+v", st)
	}
}

// TestSRTPUpdate re-keys a running session (RFC 4568 section 7.1.4): the
// new keys hold from the next frame, the old ones are refused.
func TestSRTPUpdate(t *testing.T) {
	far, farRTCP := listen(t, "127.0.0.1")
	keys := testKeys(AESCM128HMACSHA1_80, 1, 101)
	r := newRig(t, SessionConfig{Remote: localAddr(far), RemoteRTCP: localAddr(farRTCP), Codec: PCMU, SRTP: keys}, nil)
	old := farEnd(t, keys)
	send(t, far, r.addr, protect(t, old, codecPacket(PCMU, 5, 1, 3000)))
	r.frame()
	readSRTP := func(k SRTP) error {
		t.Helper()
		far.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, maxPacket)
		n, err := far.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := newSRTPContext(k.Suite, k.Local)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dec.DecryptRTP(nil, buf[:n], nil)
		return err
	}
	if err := readSRTP(keys); err != nil {
		t.Fatal(err)
	}
	next := testKeys(AESCM128HMACSHA1_32, 50, 150)
	r.update(Update{SRTP: next})
	r.frame()
	if err := readSRTP(next); err != nil {
		t.Fatalf("after re-keying: %v", err)
	}
	before := r.s.Stats().PacketsReceived
	send(t, far, r.addr, protect(t, old, codecPacket(PCMU, 5, 2, 3000)))
	send(t, far, r.addr, protect(t, farEnd(t, next), codecPacket(PCMU, 5, 3, 3000)))
	r.frame()
	if st := r.s.Stats(); st.PacketsReceived != before+1 || st.Unauthenticated != 1 {
		t.Fatalf("after re-keying: %+v", st)
	}
	// The same keys again change nothing; neither does a zero SRTP.
	sec := r.s.want.sec
	r.update(Update{SRTP: next})
	r.update(Update{})
	if r.s.want.sec != sec {
		t.Fatal("an unchanged key made new contexts")
	}
}

func TestSRTPValidates(t *testing.T) {
	c, cc := listen(t, "127.0.0.1")
	_, err := NewSession(SessionConfig{Conn: c, RTCPConn: cc, Remote: peer, Codec: PCMU,
		Source: &sineSource{p: newPacer(clock.Real{}, 8000)}, Sink: discardSink{}, SRTP: SRTP{Suite: 9}})
	if err == nil || !strings.Contains(err.Error(), "srtp suite") {
		t.Fatalf("unknown suite: %v", err)
	}
	s := newTestSession(t, 101)
	if err := s.Update(Update{SRTP: testKeys(AESCM128HMACSHA1_80, 1, 2)}); err == nil {
		t.Fatal("a plain session took SRTP keys")
	}
	k := newSRTPTestSession(t, testKeys(AESCM128HMACSHA1_80, 1, 2))
	want := k.want
	if err := k.Update(Update{SRTP: SRTP{Suite: 9}}); err == nil || k.want != want {
		t.Fatalf("unknown suite in Update: %v", err)
	}
}

// TestSRTPKeysNotPrinted checks every way a key could reach a log.
func TestSRTPKeysNotPrinted(t *testing.T) {
	k := testKeys(AESCM128HMACSHA1_80, 0xa0, 0xb0)
	var logged bytes.Buffer
	// Without the time, whose digits could look like key bytes.
	opts := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	slog.New(slog.NewTextHandler(&logged, opts)).Info("x", "keys", k, "cfg", struct{ K SRTP }{k})
	slog.New(slog.NewJSONHandler(&logged, opts)).Info("x", "keys", k, "cfg", struct{ K SRTP }{k})
	for _, out := range []string{
		fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%v", struct{ K SRTP }{k}),
		fmt.Sprintf("%+v", struct{ K SRTP }{k}), logged.String(),
	} {
		if strings.Contains(out, "160") || strings.Contains(out, "176") || strings.Contains(out, "a0") || !strings.Contains(out, "AES_CM_128_HMAC_SHA1_80") {
			t.Errorf("keys printed: %s", out)
		}
	}
}

func FuzzReceiveSRTP(f *testing.F) {
	keys := testKeys(AESCM128HMACSHA1_80, 1, 101)
	far := farEnd(f, keys)
	f.Add(protect(f, far, audioPacket(1, 0, 100)))
	f.Add(audioPacket(2, 0, 100))
	s := newSRTPTestSession(f, keys)
	f.Fuzz(func(t *testing.T, data []byte) {
		s.receive(data, peer, s.clk.Now())
		s.receiveRTCP(data, netip.AddrPortFrom(peer.Addr(), peer.Port()+1), s.clk.Now())
	})
}

// BenchmarkReceivePathSRTP is BenchmarkReceivePath with authentication
// and decryption.
func BenchmarkReceivePathSRTP(b *testing.B) {
	keys := testKeys(AESCM128HMACSHA1_80, 1, 101)
	s := newSRTPTestSession(b, keys)
	s.cfg.Sink = discardSink{}
	far := farEnd(b, keys)
	pkts := make([][]byte, 1<<16)
	for i := range pkts {
		pkts[i] = protect(b, far, audioPacket(uint16(i), 0, 1000))
	}
	buf := make([]byte, maxPacket)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i > 0 && i%len(pkts) == 0 {
			// The sequence came round: a fresh context, not replays.
			b.StopTimer()
			s.sec.rxRTP = farEnd(b, keys)
			b.StartTimer()
		}
		n := copy(buf, pkts[i%len(pkts)])
		s.receive(buf[:n], peer, s.clk.Now())
		tick(s)
		if err := s.playFrame(); err != nil {
			b.Fatal(err)
		}
	}
	if st := s.Stats(); st.Unauthenticated+st.Malformed != 0 {
		b.Fatalf("stats %+v", st)
	}
}

// BenchmarkSendPacketSRTP is BenchmarkSendPacket with encryption.
func BenchmarkSendPacketSRTP(b *testing.B) {
	st, err := newSRTPState(testKeys(AESCM128HMACSHA1_80, 1, 101))
	if err != nil {
		b.Fatal(err)
	}
	snd := newSender(PCMU, 160)
	b.ReportAllocs()
	for b.Loop() {
		p, err := snd.next()
		if err == nil {
			_, err = st.protectRTP(p)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
