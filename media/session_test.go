package media

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"

	"intercom/internal/clock"
	"intercom/internal/clock/clocktest"
	"intercom/media/measure"
)

// sineSource is a microphone hearing a steady tone, paced in real time.
type sineSource struct {
	freq float64
	n    int
	p    *pacer
}

func (s *sineSource) Read(frame []int16) error {
	if err := s.p.wait(len(frame)); err != nil {
		return err
	}
	for i := range frame {
		frame[i] = int16(16384 * math.Sin(2*math.Pi*s.freq*float64(s.n)/8000))
		s.n++
	}
	return nil
}

func (s *sineSource) Close() error { s.p.close(); return nil }

// recordSink is a speaker that keeps what it plays; paced when p is set.
type recordSink struct {
	p       *pacer
	mu      sync.Mutex
	samples []int16
	heard   chan struct{} // closed once `want` non-silent samples were played
	want    int
	loud    int
}

func newRecordSink(p *pacer, want int) *recordSink {
	return &recordSink{p: p, heard: make(chan struct{}), want: want}
}

func (s *recordSink) Write(frame []int16) error {
	if s.p != nil {
		if err := s.p.wait(len(frame)); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range frame {
		if s.loud > 0 || v != 0 {
			s.samples = append(s.samples, v)
			s.loud++
			if s.loud == s.want {
				close(s.heard)
			}
		}
	}
	return nil
}

func (s *recordSink) Close() error { return nil }

func (s *recordSink) played() []int16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int16(nil), s.samples...)
}

// listen binds an RTP/RTCP pair, closed when the test ends.
func listen(t testing.TB, ip string) (rtp, rtcp *net.UDPConn) {
	t.Helper()
	rtp, rtcp, err := ListenRTP(netip.MustParseAddr(ip))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rtp.Close(); rtcp.Close() })
	return rtp, rtcp
}

func localAddr(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func TestListenRTP(t *testing.T) {
	for range 5 {
		c, cc := listen(t, "127.0.0.1")
		ap := localAddr(c)
		if p := ap.Port(); p%2 != 0 || p < 16384 || p > 32766 || ap.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("bound %v", ap)
		}
		if got := localAddr(cc); got != netip.AddrPortFrom(ap.Addr(), ap.Port()+1) {
			t.Fatalf("rtcp bound %v, rtp %v", got, ap)
		}
	}
	if _, _, err := ListenRTP(netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Fatal("bound a non-local address")
	}
}

func TestNewSessionValidates(t *testing.T) {
	conn, rtcpConn := listen(t, "127.0.0.1")
	remote := netip.MustParseAddrPort("127.0.0.1:20000")
	good := SessionConfig{Conn: conn, RTCPConn: rtcpConn, Remote: remote, Codec: PCMU, DTMFPayloadType: 101,
		Source: &sineSource{}, Sink: newRecordSink(nil, 1)}
	s, err := NewSession(good)
	if err != nil {
		t.Fatal(err)
	}
	if s.Format() != fmt20ms {
		t.Fatalf("default format %+v", s.Format())
	}
	for name, mod := range map[string]func(*SessionConfig){
		"no conn":       func(c *SessionConfig) { c.Conn = nil },
		"no remote":     func(c *SessionConfig) { c.Remote = netip.AddrPort{} },
		"port 0":        func(c *SessionConfig) { c.Remote = netip.MustParseAddrPort("127.0.0.1:0") },
		"no rtcp port":  func(c *SessionConfig) { c.Remote = netip.MustParseAddrPort("127.0.0.1:65535") },
		"rtcp interval": func(c *SessionConfig) { c.RTCPInterval = -time.Second },
		"codec":         func(c *SessionConfig) { c.Codec = Codec{Name: "opus", PayloadType: 111} },
		"pt 128":        func(c *SessionConfig) { c.Codec.PayloadType = 128 },
		"dtmf == codec": func(c *SessionConfig) { c.Codec.PayloadType = c.DTMFPayloadType },
		"no source":     func(c *SessionConfig) { c.Source = nil },
		"no sink":       func(c *SessionConfig) { c.Sink = nil },
		"ptime":         func(c *SessionConfig) { c.Ptime = 100 * time.Microsecond },
		"jitter max<min": func(c *SessionConfig) {
			c.Jitter = JitterConfig{Min: 100 * time.Millisecond, Max: 50 * time.Millisecond}
		},
		"jitter min<0": func(c *SessionConfig) { c.Jitter = JitterConfig{Min: -time.Millisecond, Max: time.Second} },
	} {
		cfg := good
		mod(&cfg)
		if _, err := NewSession(cfg); err == nil {
			t.Errorf("%s: NewSession succeeded", name)
		}
	}
}

// TestLoopback runs two sessions against each other on loopback, each
// sending its own tone, and checks that each side hears the other's.
func TestLoopback(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		t.Run(c.Name, func(t *testing.T) { testLoopback(t, c) })
	}
}

func testLoopback(t *testing.T, codec Codec) {
	connA, rtcpA := listen(t, "127.0.0.1")
	connB, rtcpB := listen(t, "127.0.0.1")
	const frames = 15
	type side struct {
		s    *Session
		src  *sineSource
		sink *recordSink
	}
	mk := func(conn, rtcpConn *net.UDPConn, remote netip.AddrPort, freq float64) side {
		sd := side{
			src:  &sineSource{freq: freq, p: newPacer(clock.Real{}, 8000)},
			sink: newRecordSink(newPacer(clock.Real{}, 8000), frames*160),
		}
		var err error
		sd.s, err = NewSession(SessionConfig{Conn: conn, RTCPConn: rtcpConn, Remote: remote, Codec: codec,
			DTMFPayloadType: 101, Source: sd.src, Sink: sd.sink,
			Jitter: JitterConfig{Min: 40 * time.Millisecond, Max: 200 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	a := mk(connA, rtcpA, localAddr(connB), 440)
	b := mk(connB, rtcpB, localAddr(connA), 1000)

	// Junk from the right IP is counted and dropped; the call goes on.
	// It is queued before A sends, so that B has not latched to A's port.
	junk, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(localAddr(connB)))
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	for _, p := range [][]byte{{}, {0x80}, {0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, {0x8f, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, {0x40, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}} {
		junk.Write(p)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- a.s.Run(ctx) }()
	go func() { errs <- b.s.Run(ctx) }()

	for _, sd := range []side{a, b} {
		select {
		case <-sd.sink.heard:
		case <-time.After(10 * time.Second):
			t.Fatal("no audio received")
		}
	}
	cancel()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	for _, c := range []*net.UDPConn{connA, rtcpA} {
		if _, err := c.Write([]byte{1}); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("conn after Run: %v, want closed", err)
		}
	}

	for _, tc := range []struct {
		name        string
		sd          side
		hear, other float64
	}{{"A hears B", a, 1000, 440}, {"B hears A", b, 440, 1000}} {
		got := tc.sd.sink.played()[:frames*160]
		on, off := measure.Goertzel(got, 8000, tc.hear), measure.Goertzel(got, 8000, tc.other)
		// The tone is sent at 0.5 of full scale. On a loaded machine the
		// receiver may run dry and conceal a frame or two, which lowers
		// the level; the tone must still clearly dominate.
		if on < 0.1 || on < 20*off {
			t.Errorf("%s: level at %v Hz %.3f (want ~0.5), at %v Hz %.3f (want ~0); %+v", tc.name, tc.hear, on, tc.other, off, tc.sd.s.Stats())
		}
		st := tc.sd.s.Stats()
		if st.PacketsSent == 0 || st.PacketsReceived == 0 || st.BytesSent != 160*st.PacketsSent {
			t.Errorf("%s: stats %+v", tc.name, st)
		}
	}
	if m := b.s.Stats().Malformed; m != 5 {
		t.Errorf("B counted %d malformed packets, want 5", m)
	}
}

func TestRunTwice(t *testing.T) {
	s := newTestSession(t, 101)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestRunReportsSourceError(t *testing.T) {
	s := newTestSession(t, 101)
	s.cfg.Source = failSource{}
	err := s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "mic unplugged") {
		t.Fatalf("Run = %v", err)
	}
}

type failSource struct{}

func (failSource) Read([]int16) error { return errors.New("mic unplugged") }
func (failSource) Close() error       { return nil }

var peer = netip.MustParseAddrPort("127.0.0.1:20000")

func newTestSession(t testing.TB, dtmfPT uint8) *Session {
	c, cc := listen(t, "127.0.0.1")
	s, err := NewSession(SessionConfig{Conn: c, RTCPConn: cc, Remote: peer, Codec: PCMU, DTMFPayloadType: dtmfPT,
		Source: &sineSource{p: newPacer(clock.Real{}, 8000)}, Sink: newRecordSink(nil, 1<<30),
		Jitter: JitterConfig{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		Clock:  clocktest.New(time.Unix(1000, 0))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tick advances a test session's fake clock by a 20 ms frame.
func tick(s *Session) { s.clk.(*clocktest.Fake).Advance(20 * time.Millisecond) }

func audioPacket(seq uint16, pt uint8, level int16) []byte {
	payload := make([]byte, 160)
	pcm := make([]int16, 160)
	for i := range pcm {
		pcm[i] = level
	}
	PCMU.Encode(payload, pcm)
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 42}, Payload: payload}
	b, _ := p.Marshal()
	return b
}

func TestReceiveDispatch(t *testing.T) {
	s := newTestSession(t, 101)
	var digits []rune
	s.cfg.OnDigit = func(r rune) { digits = append(digits, r) }
	stranger := netip.MustParseAddrPort("127.0.0.2:20000")

	s.receive(audioPacket(1, 0, 1000), stranger, s.clk.Now()) // wrong IP
	s.receive(audioPacket(1, 9, 1000), peer, s.clk.Now())     // payload type not negotiated
	s.receive([]byte{0x80, 0, 0}, peer, s.clk.Now())          // too short for RTP
	s.receive(audioPacket(1, 0, 1000)[:5], peer, s.clk.Now()) // truncated header
	s.receive(audioPacket(2, 0, 1000), netip.MustParseAddrPort("[::ffff:127.0.0.1]:20000"), s.clk.Now())
	s.receive(audioPacket(2, 0, 1000), peer, s.clk.Now()) // duplicate
	for _, h := range sippDTMF1 {
		b, _ := hex.DecodeString(h)
		s.receive(b, peer, s.clk.Now())
	}
	dtmfShort, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, Timestamp: 99}, Payload: []byte{1, 2}}).Marshal()
	s.receive(dtmfShort, peer, s.clk.Now())

	if string(digits) != "1" {
		t.Fatalf("digits %q, want \"1\"", string(digits))
	}
	st := s.Stats()
	// The sipp DTMF packets carry another SSRC than the audio, so the
	// RTCP loss count sees only the audio: one packet and its duplicate.
	want := Stats{PacketsReceived: 12, BytesReceived: 2*160 + 10*4, Duplicates: 1, Malformed: 3, Ignored: 2, DTMF: 1,
		JitterTarget: 20 * time.Millisecond, NetworkLost: -1}
	if st != want {
		t.Fatalf("stats\n got %+v\nwant %+v", st, want)
	}

	// Playout waits until the packet has been held for jitter.min; then
	// it plays, decoded, and a missing one is concealed, fading.
	sink := s.cfg.Sink.(*recordSink)
	for range 2 {
		if err := s.playFrame(); err != nil {
			t.Fatal(err)
		}
		tick(s)
	}
	s.receive(audioPacket(4, 0, 1000), peer, s.clk.Now())
	for range 7 {
		tick(s)
		if err := s.playFrame(); err != nil {
			t.Fatal(err)
		}
	}
	got := sink.played()
	levels := []int16{}
	for i := 0; i < len(got); i += 160 {
		levels = append(levels, got[i])
	}
	// Frames: 2 (played), 3 (lost: half), 4 (played), then the buffer
	// runs dry and the last frame fades out.
	wantLevels := []int16{got[0], got[0] >> 1, got[0], got[0] >> 1, got[0] >> 2, got[0] >> 3, got[0] >> 4}
	if got[0] < 900 || len(levels) < len(wantLevels) {
		t.Fatalf("played levels %v", levels)
	}
	for i, w := range wantLevels {
		if levels[i] != w {
			t.Fatalf("played levels %v, want %v then silence", levels, wantLevels)
		}
	}
	if st := s.Stats(); st.PacketsLost != 1 || st.FramesInserted != 3 || st.Concealed != 4 {
		t.Fatalf("lost %d, inserted %d, concealed %d; want 1, 3 (dry until jitter.max), 4", st.PacketsLost, st.FramesInserted, st.Concealed)
	}
}

func TestNoDTMFPayloadTypeWithPCMU(t *testing.T) {
	// DTMFPayloadType 0 means "none": PCMU's payload type 0 must go to audio.
	s := newTestSession(t, 0)
	s.cfg.OnDigit = func(rune) { t.Fatal("audio taken for DTMF") }
	s.receive(audioPacket(1, 0, 1000), peer, s.clk.Now())
	if st := s.Stats(); st.PacketsReceived != 1 || s.jb.Len() != 1 {
		t.Fatalf("stats %+v, buffered %d", st, s.jb.Len())
	}
}

func TestSSRCChangeRestartsStream(t *testing.T) {
	s := newTestSession(t, 101)
	s.receive(audioPacket(1000, 0, 1000), peer, s.clk.Now())
	p := audioPacket(5, 0, 1000)
	p[11] = 43 // another SSRC, far-away sequence numbers
	s.receive(p, peer, s.clk.Now())
	if s.jb.Len() != 1 || s.Stats().PacketsLate != 0 {
		t.Fatalf("buffered %d, late %d", s.jb.Len(), s.Stats().PacketsLate)
	}
}

func FuzzReceive(f *testing.F) {
	f.Add(audioPacket(1, 0, 100))
	b, _ := hex.DecodeString(sippDTMF1[0])
	f.Add(b)
	s := newTestSession(f, 101)
	f.Fuzz(func(t *testing.T, data []byte) {
		s.receive(data, peer, s.clk.Now())
	})
}

type discardSink struct{}

func (discardSink) Write([]int16) error { return nil }
func (discardSink) Close() error        { return nil }

func BenchmarkSendPacket(b *testing.B) {
	snd := newSender(PCMU, 160)
	for i := range snd.frame {
		snd.frame[i] = int16(i * 100)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := snd.next(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendPacketUDP(b *testing.B) {
	s := newTestSession(b, 101)
	dst := listen2(b)
	b.ReportAllocs()
	for b.Loop() {
		pkt, err := s.snd.next()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.cfg.Conn.WriteToUDPAddrPort(pkt, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func listen2(b *testing.B) netip.AddrPort {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return localAddr(c)
}

// BenchmarkReceivePath measures one packet from datagram to speaker:
// parse, dispatch, jitter buffer, decode.
func BenchmarkReceivePath(b *testing.B) {
	s := newTestSession(b, 101)
	s.cfg.Sink = discardSink{}
	pkt := audioPacket(0, 0, 1000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pkt[2], pkt[3] = byte(i>>8), byte(i)
		s.receive(pkt, peer, s.clk.Now())
		tick(s)
		if err := s.playFrame(); err != nil {
			b.Fatal(err)
		}
	}
	if st := s.Stats(); st.Malformed+st.PacketsLate+st.Duplicates != 0 {
		b.Fatalf("stats %+v", st)
	}
}

func TestQuietG711(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		quiet := quietG711(c)
		payload := make([]byte, 160)
		for _, tc := range []struct {
			level int16
			want  bool
		}{{0, true}, {100, true}, {-250, true}, {400, false}, {-8000, false}} {
			pcm := make([]int16, 160)
			for i := range pcm {
				pcm[i] = tc.level
			}
			c.Encode(payload, pcm)
			if got := quiet(payload); got != tc.want {
				t.Errorf("%s: level %d quiet = %v, want %v", c.Name, tc.level, got, tc.want)
			}
		}
	}
}

// stepSource gives a frame at the given level each time the test sends on
// step, and ErrClosed once step is closed.
type stepSource struct {
	step  chan struct{}
	level int16
}

func (s *stepSource) Read(frame []int16) error {
	if _, ok := <-s.step; !ok {
		return ErrClosed
	}
	for i := range frame {
		frame[i] = s.level
	}
	return nil
}

func (s *stepSource) Close() error { return nil }

// levelSink passes on the first sample of each frame written.
type levelSink chan int16

func (s levelSink) Write(frame []int16) error { s <- frame[0]; return nil }
func (s levelSink) Close() error              { return nil }

// TestFrameLoop checks a frame's work: the microphone's frame goes out,
// the packets that arrived meanwhile go into the jitter buffer with their
// arrival times, and the buffer's next frame is played, all at the
// Source's pace, with one frame of silence ahead.
func TestFrameLoop(t *testing.T) {
	conn, _ := listen(t, "127.0.0.1")
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.SetReadDeadline(time.Now().Add(10 * time.Second)) // a lost packet fails the test rather than hang it
	clk := clocktest.New(epoch)
	src, sink := &stepSource{step: make(chan struct{}), level: 2000}, make(levelSink, 1)
	s, err := NewSession(SessionConfig{Conn: conn, Remote: localAddr(peer), Codec: PCMU, Source: src, Sink: sink,
		Jitter: JitterConfig{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	want := make([]byte, 160)
	PCMU.Encode(want, slices.Repeat([]int16{2000}, 160))
	var seq uint16
	sent := func(n int) {
		t.Helper()
		buf := make([]byte, maxPacket)
		m, err := peer.Read(buf)
		var p rtp.Packet
		if err != nil || p.Unmarshal(buf[:m]) != nil {
			t.Fatalf("frame %d: peer read %d bytes: %v", n, m, err)
		}
		if n > 0 && p.SequenceNumber != seq+1 || !bytes.Equal(p.Payload, want) {
			t.Fatalf("frame %d: sent seq %d (previous %d), payload %x", n, p.SequenceNumber, seq, p.Payload)
		}
		seq = p.SequenceNumber
	}
	// The peer's packet is waiting on the socket when the frame starts.
	if _, err := peer.WriteToUDPAddrPort(audioPacket(7, 0, 1000), localAddr(conn)); err != nil {
		t.Fatal(err)
	}
	step := func() {
		t.Helper()
		select {
		case src.step <- struct{}{}:
		case err := <-done:
			t.Fatalf("Run returned %v", err)
		}
	}
	step()
	sent(0)
	// A frame of silence goes ahead, then the first frame: silence too,
	// as the packet must wait jitter.min.
	for i := range 2 {
		if got := <-sink; got != 0 {
			t.Fatalf("write %d: played %d; want silence", i, got)
		}
	}
	if st := s.Stats(); st.PacketsReceived != 1 || st.PacketsSent != 1 {
		t.Fatalf("after a frame: %+v", st)
	}
	clk.Advance(20 * time.Millisecond)
	step()
	sent(1)
	if got := <-sink; got < 900 || got > 1100 {
		t.Fatalf("played level %d after jitter.min, want ~1000", got)
	}
	cancel()
	close(src.step)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(sink); n != 0 {
		t.Fatalf("%d more frames written; want one per frame read, and one ahead", n)
	}
}
