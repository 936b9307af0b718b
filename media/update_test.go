package media

import (
	"bytes"
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"intercom/internal/clock/clocktest"
)

// rig runs a Session a frame at a time on a fake clock: frame hands the
// microphone a frame and waits until the speaker got its frame, so that
// the loop is idle, waiting for the microphone, between frames.
type rig struct {
	t      *testing.T
	s      *Session
	addr   netip.AddrPort // the session's RTP address
	src    *stepSource
	sink   levelSink
	clk    *clocktest.Fake
	done   chan error
	cancel context.CancelFunc
	primed bool
}

// newRig sets cfg up with a microphone at level 2000, a speaker, a fake
// clock and sockets of its own, and starts the session. update, if not
// nil, is called before Run.
func newRig(t *testing.T, cfg SessionConfig, update func(*Session)) *rig {
	t.Helper()
	if !drainsSocket {
		// A goroutine of its own takes packets in: which frame sees them
		// is a matter of timing.
		t.Skip("needs the frame loop to drain the socket")
	}
	conn, rtcpConn := listen(t, "127.0.0.1")
	r := &rig{t: t, addr: localAddr(conn), src: &stepSource{step: make(chan struct{}), level: 2000},
		sink: make(levelSink, 2), clk: clocktest.New(epoch), done: make(chan error, 1)}
	cfg.Conn, cfg.Source, cfg.Sink, cfg.Clock = conn, r.src, r.sink, r.clk
	if cfg.RemoteRTCP.IsValid() {
		cfg.RTCPConn = rtcpConn
	}
	cfg.Jitter = JitterConfig{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	var err error
	if r.s, err = NewSession(cfg); err != nil {
		t.Fatal(err)
	}
	if update != nil {
		update(r.s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.s.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// frame runs one frame and returns the first sample played; then the
// clock moves on a frame.
func (r *rig) frame() int16 {
	r.t.Helper()
	select {
	case r.src.step <- struct{}{}:
	case err := <-r.done:
		r.t.Fatalf("Run returned %v", err)
	}
	writes := 1
	if !r.primed {
		writes, r.primed = 2, true // a frame of silence goes ahead
	}
	var got int16
	for range writes {
		select {
		case got = <-r.sink:
		case err := <-r.done:
			r.t.Fatalf("Run returned %v", err)
		}
	}
	r.clk.Advance(20 * time.Millisecond)
	return got
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	close(r.src.step)
	if err := <-r.done; err != nil {
		r.t.Errorf("Run: %v", err)
	}
}

func (r *rig) update(u Update) {
	r.t.Helper()
	if err := r.s.Update(u); err != nil {
		r.t.Fatalf("Update(%+v): %v", u, err)
	}
}

// readRTP reads the next RTP packet that c got.
func readRTP(t *testing.T, c *net.UDPConn) rtp.Packet {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a lost packet fails the test rather than hang it
	buf := make([]byte, maxPacket)
	n, err := c.Read(buf)
	var p rtp.Packet
	if err != nil || p.Unmarshal(buf[:n]) != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return p
}

// readRTCP reads the next RTCP compound packet that c got.
func readRTCP(t *testing.T, c *net.UDPConn) []rtcp.Packet {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, maxPacket)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := rtcp.Unmarshal(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}

// codecPacket is an RTP packet of one frame at a steady level, encoded
// with c, from SSRC ssrc.
func codecPacket(c Codec, ssrc uint32, seq uint16, level int16) []byte {
	payload := make([]byte, 160)
	c.Encode(payload, slices.Repeat([]int16{level}, 160))
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: c.PayloadType, SequenceNumber: seq,
		Timestamp: uint32(seq) * 160, SSRC: ssrc}, Payload: payload}
	b, _ := p.Marshal()
	return b
}

func send(t *testing.T, from *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := from.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

func near(got, want int16) bool { return got > want-want/10 && got < want+want/10 }

func TestDirectionString(t *testing.T) {
	for d, want := range map[Direction]string{SendRecv: "sendrecv", SendOnly: "sendonly", RecvOnly: "recvonly",
		Inactive: "inactive", 9: "Direction(9)"} {
		if got := d.String(); got != want {
			t.Errorf("%d: %q, want %q", uint8(d), got, want)
		}
	}
}

// TestUpdateHold puts the call on hold and back: no RTP while on hold,
// RTCP goes on, and the stream resumes where it stopped, its timestamp
// having followed the clock, with the marker bit.
func TestUpdateHold(t *testing.T) {
	peer, peerRTCP := listen(t, "127.0.0.1")
	r := newRig(t, SessionConfig{Remote: localAddr(peer), RemoteRTCP: localAddr(peerRTCP), Codec: PCMU,
		RTCPInterval: time.Second}, nil)
	var first, last rtp.Packet
	for i := range 3 {
		r.frame()
		last = readRTP(t, peer)
		if i == 0 {
			first = last
		}
		if last.Marker != (i == 0) || last.SequenceNumber != first.SequenceNumber+uint16(i) ||
			last.Timestamp != first.Timestamp+uint32(i)*160 {
			t.Fatalf("packet %d: %+v; first %+v", i, last.Header, first.Header)
		}
	}
	r.update(Update{Direction: RecvOnly})
	for range 3 {
		r.frame()
	}
	if st := r.s.Stats(); st.PacketsSent != 3 || st.Direction != RecvOnly || st.Updates != 1 {
		t.Fatalf("on hold: sent %d, direction %v, updates %d; want 3, recvonly, 1", st.PacketsSent, st.Direction, st.Updates)
	}
	// RFC 3264 section 5.1: RTCP goes on while on hold.
	r.clk.WaitForTimers(1)
	r.clk.Advance(time.Second)
	if sr, ok := readRTCP(t, peerRTCP)[0].(*rtcp.SenderReport); !ok || sr.SSRC != first.SSRC || sr.PacketCount != 3 {
		t.Fatalf("on hold: RTCP %+v; want an SR of 3 packets", sr)
	}

	r.update(Update{Direction: SendRecv})
	for i := range 2 {
		r.frame()
		p := readRTP(t, peer)
		// Six frames passed since the first packet.
		if p.Marker != (i == 0) || p.SequenceNumber != last.SequenceNumber+1+uint16(i) ||
			p.Timestamp != first.Timestamp+uint32(6+i)*160 || p.SSRC != first.SSRC {
			t.Fatalf("resumed packet %d: %+v; first %+v, last before hold seq %d", i, p.Header, first.Header, last.SequenceNumber)
		}
	}
	if st := r.s.Stats(); st.Direction != SendRecv || st.Updates != 2 {
		t.Fatalf("resumed: direction %v, updates %d", st.Direction, st.Updates)
	}
}

// TestUpdateReceiveHold: while the far end is not to be heard, the
// speaker gets silence, not counted lost, and neither what was buffered
// before nor what arrives meanwhile is played later.
func TestUpdateReceiveHold(t *testing.T) {
	for _, dir := range []Direction{SendOnly, Inactive} {
		t.Run(dir.String(), func(t *testing.T) {
			s := newTestSession(t, 101)
			sink := make(levelSink, 1)
			s.cfg.Sink = sink
			var digits []rune
			s.cfg.OnDigit = func(r rune) { digits = append(digits, r) }
			seq := uint16(1)
			frame := func(level int16) int16 {
				t.Helper()
				if level != 0 {
					s.receive(audioPacket(seq, 0, level), peer, s.clk.Now())
					seq++
				}
				s.applyUpdates()
				if err := s.playFrame(); err != nil {
					t.Fatal(err)
				}
				tick(s)
				return <-sink
			}
			for range 3 {
				frame(1000)
			}
			if got := frame(3000); !near(got, 1000) {
				t.Fatalf("before hold: played %d, want ~1000", got)
			}
			// The 3000 frame is still buffered.
			if err := s.Update(Update{Direction: dir, DTMFPayloadType: 101}); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if got := frame(3000); got != 0 || s.jb.Len() != 0 {
					t.Fatalf("on hold, frame %d: played %d, %d packets buffered; want silence, none", i, got, s.jb.Len())
				}
			}
			for _, h := range sippDTMF1 {
				b, _ := hex.DecodeString(h)
				s.receive(b, peer, s.clk.Now())
			}
			before := s.Stats()
			if before.PacketsLost != 0 || before.Concealed != 0 || before.PacketsReceived != 9+uint64(len(sippDTMF1)) ||
				before.Direction != dir || len(digits) != 0 {
				t.Fatalf("on hold: %+v, digits %q", before, string(digits))
			}
			if err := s.Update(Update{DTMFPayloadType: 101}); err != nil {
				t.Fatal(err)
			}
			var played []int16
			for range 4 {
				played = append(played, frame(6000))
			}
			// The first packet arrives before the frame boundary that
			// resumes; the second waits jitter.min.
			if played[0] != 0 || played[1] != 0 || !near(played[2], 6000) || !near(played[3], 6000) {
				t.Fatalf("resumed: played %v; want silence while buffering, then ~6000 only", played)
			}
			if st := s.Stats(); st.PacketsLost != 0 || st.NetworkLost != 0 {
				t.Fatalf("resumed: lost %d, network lost %d", st.PacketsLost, st.NetworkLost)
			}
		})
	}
}

// TestUpdateMove moves the far end to another port: RTP and RTCP go
// there, packets from the old address are ignored, and the stream, its
// sequence numbers jumping, plays on without counting a loss.
func TestUpdateMove(t *testing.T) {
	a, aRTCP := listen(t, "127.0.0.1")
	b, bRTCP := listen(t, "127.0.0.1")
	r := newRig(t, SessionConfig{Remote: localAddr(a), RemoteRTCP: localAddr(aRTCP), Codec: PCMU,
		RTCPInterval: time.Second}, nil)
	send(t, a, r.addr, codecPacket(PCMU, 42, 100, 1000))
	r.frame()
	p := readRTP(t, a)
	send(t, a, r.addr, codecPacket(PCMU, 42, 101, 1000))
	r.frame()
	if got := readRTP(t, a); got.SequenceNumber != p.SequenceNumber+1 {
		t.Fatalf("seq %d after %d", got.SequenceNumber, p.SequenceNumber)
	}
	r.update(Update{Remote: localAddr(b)}) // RTCP: b's port + 1, which is bRTCP

	send(t, a, r.addr, codecPacket(PCMU, 42, 102, 1000)) // old address: ignored
	// A jump too small for RFC 3550 appendix A.1 to take as a restart.
	seq := uint16(1100)
	var played []int16
	for i := range 5 {
		send(t, b, r.addr, codecPacket(PCMU, 42, seq, 3000))
		seq++
		played = append(played, r.frame())
		if got := readRTP(t, b); got.SequenceNumber != p.SequenceNumber+2+uint16(i) || got.SSRC != p.SSRC {
			t.Fatalf("to the new address: %+v; first %+v", got.Header, p.Header)
		}
	}
	st := r.s.Stats()
	if st.Ignored != 1 || st.PacketsReceived != 7 || st.PacketsLost != 0 || st.PacketsLate != 0 || st.NetworkLost != 0 {
		t.Fatalf("after the move: %+v", st)
	}
	// The old stream's last packet, due when the move came, is not
	// played; the new one is, once it waited jitter.min.
	if near(played[0], 1000) || !near(played[len(played)-1], 3000) {
		t.Fatalf("played %v; want the new stream's ~3000", played)
	}
	r.clk.WaitForTimers(1)
	r.clk.Advance(time.Second)
	sr, ok := readRTCP(t, bRTCP)[0].(*rtcp.SenderReport)
	if !ok || len(sr.Reports) != 1 || sr.Reports[0].SSRC != 42 || sr.Reports[0].TotalLost != 0 {
		t.Fatalf("RTCP at the new address: %+v; want an SR with a block on SSRC 42, none lost", sr)
	}
}

// TestUpdateMoveReports: after a move, our reports speak of the old
// stream no more, and echo no sender report of the old address.
func TestUpdateMoveReports(t *testing.T) {
	s := newTestSession(t, 101)
	t0 := s.clk.Now()
	for seq := range uint16(3) {
		s.receive(audioPacket(seq, 0, 1000), peer, t0)
	}
	s.receiveRTCP(marshalRTCP(t, &rtcp.SenderReport{SSRC: 42, NTPTime: ntpTime(t0)}), peerRTCP, t0)
	report := func() *rtcp.ReceiverReport {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.report(t0, false)[0].(*rtcp.ReceiverReport)
	}
	if rr := report(); len(rr.Reports) != 1 || rr.Reports[0].LastSenderReport == 0 {
		t.Fatalf("before the move: %+v", rr)
	}
	moved := netip.MustParseAddrPort("127.0.0.1:30000")
	if err := s.Update(Update{Remote: moved, DTMFPayloadType: 101}); err != nil {
		t.Fatal(err)
	}
	s.applyUpdates()
	if rr := report(); len(rr.Reports) != 0 {
		t.Fatalf("after the move: %+v; want no report block", rr)
	}
	s.receive(audioPacket(500, 0, 1000), moved, t0)
	if rr := report(); len(rr.Reports) != 1 || rr.Reports[0].LastSenderReport != 0 || rr.Reports[0].TotalLost != 0 {
		t.Fatalf("from the new address: %+v; want a block, no LSR, none lost", rr)
	}
}

func TestLatchMove(t *testing.T) {
	ap := netip.MustParseAddrPort
	l := newLatch(ap("192.0.2.1:4000"))
	l.latch(ap("192.0.2.1:4002")) // a NAT changed the port
	l.move(ap("192.0.2.1:5000"))
	for from, want := range map[string]bool{
		"192.0.2.1:4002":          false, // where the old stream came from
		"[::ffff:192.0.2.1]:4002": false,
		"192.0.2.2:5000":          false,
		"192.0.2.1:5000":          true,
		"192.0.2.1:4000":          true, // not latched yet: any port of the IP
	} {
		if got := l.allows(ap(from)); got != want {
			t.Errorf("allows(%s) = %v, want %v", from, got, want)
		}
	}
	if l.addr() != ap("192.0.2.1:5000") {
		t.Fatalf("sends to %v", l.addr())
	}
	if !l.latch(ap("192.0.2.1:5004")) || l.addr() != ap("192.0.2.1:5004") || l.allows(ap("192.0.2.1:5000")) {
		t.Fatalf("after latching: sends to %v", l.addr())
	}
	l.move(ap("192.0.2.1:4002")) // back where it was
	if !l.allows(ap("192.0.2.1:4002")) || l.allows(ap("192.0.2.1:5004")) {
		t.Fatal("moving back: the old address is not heard, or the last one still is")
	}
}

// TestUpdateCodec switches PCMU to PCMA: the next frame goes out in PCMA
// with its payload type, in sequence, and PCMA is heard while PCMU is not
// any more.
func TestUpdateCodec(t *testing.T) {
	peer, _ := listen(t, "127.0.0.1")
	r := newRig(t, SessionConfig{Remote: localAddr(peer), Codec: PCMU, DTMFPayloadType: 101}, nil)
	mic := slices.Repeat([]int16{2000}, 160)
	ulaw, alaw := make([]byte, 160), make([]byte, 160)
	PCMU.Encode(ulaw, mic)
	PCMA.Encode(alaw, mic)
	send(t, peer, r.addr, codecPacket(PCMU, 42, 1, 1000)) // still buffered at the switch
	r.frame()
	p := readRTP(t, peer)
	if p.PayloadType != 0 || !bytes.Equal(p.Payload, ulaw) {
		t.Fatalf("PCMU: sent %+v", p)
	}
	r.update(Update{Codec: PCMA, DTMFPayloadType: 101})
	send(t, peer, r.addr, codecPacket(PCMU, 42, 2, 1000)) // the old codec: ignored
	seq := uint16(3)
	var played []int16
	for i := range 4 {
		send(t, peer, r.addr, codecPacket(PCMA, 42, seq, 1000))
		seq++
		played = append(played, r.frame())
		got := readRTP(t, peer)
		if got.PayloadType != 8 || !bytes.Equal(got.Payload, alaw) || got.SequenceNumber != p.SequenceNumber+1+uint16(i) ||
			got.Timestamp != p.Timestamp+uint32(1+i)*160 {
			t.Fatalf("PCMA frame %d: sent %+v; first %+v", i, got, p.Header)
		}
	}
	// The PCMU packet buffered is not played as PCMA.
	if played[0] != 0 || !near(played[len(played)-1], 1000) {
		t.Fatalf("played %v; want silence, then PCMA decoded to ~1000", played)
	}
	if st := r.s.Stats(); st.Ignored != 1 || st.PacketsReceived != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// TestUpdateCodecQuiet: the jitter buffer judges quiet frames in the
// codec received now.
func TestUpdateCodecQuiet(t *testing.T) {
	s := newTestSession(t, 101)
	if err := s.Update(Update{Codec: PCMA}); err != nil {
		t.Fatal(err)
	}
	s.applyUpdates()
	quiet, loud := make([]byte, 160), make([]byte, 160)
	PCMA.Encode(quiet, make([]int16, 160))
	PCMA.Encode(loud, slices.Repeat([]int16{8000}, 160))
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.quiet(quiet) || s.quiet(loud) {
		t.Fatal("PCMA silence not quiet, or a loud PCMA frame quiet")
	}
}

// TestUpdateBeforeRun: an Update made before Run, and an initial
// direction, hold from the first frame.
func TestUpdateBeforeRun(t *testing.T) {
	peer, _ := listen(t, "127.0.0.1")
	var ts uint32
	r := newRig(t, SessionConfig{Remote: localAddr(peer), Codec: PCMU, Direction: Inactive}, func(s *Session) {
		ts = s.snd.pkt.Timestamp
		if err := s.Update(Update{Codec: Codec{Name: "pcma", PayloadType: 8}, Direction: RecvOnly}); err != nil {
			t.Fatal(err)
		}
	})
	r.frame()
	r.frame()
	if st := r.s.Stats(); st.PacketsSent != 0 || st.Direction != RecvOnly || st.Updates != 1 {
		t.Fatalf("stats %+v", st)
	}
	r.update(Update{Direction: SendOnly})
	r.frame()
	if p := readRTP(t, peer); p.PayloadType != 8 || !p.Marker || p.Timestamp != ts+2*160 {
		t.Fatalf("first packet %+v; want PCMA, marker, timestamp %d", p.Header, ts+2*160)
	}
}

// TestUpdateInvalid: an Update the session cannot do is refused and
// changes nothing.
func TestUpdateInvalid(t *testing.T) {
	s := newTestSession(t, 101)
	want := s.want
	ap := netip.MustParseAddrPort
	for name, u := range map[string]Update{
		"codec":             {Codec: Codec{Name: "opus", PayloadType: 111}},
		"payload type":      {Codec: Codec{Name: "PCMA", PayloadType: 128}},
		"dtmf payload type": {DTMFPayloadType: 128},
		"dtmf == new codec": {Codec: Codec{Name: "PCMA", PayloadType: 96}, DTMFPayloadType: 96},
		"port 0":            {Remote: ap("127.0.0.1:0")},
		"hold address":      {Remote: ap("0.0.0.0:4000")},
		"no address":        {Remote: netip.AddrPortFrom(netip.Addr{}, 4000)},
		"no rtcp port":      {Remote: ap("127.0.0.1:65535")},
		"rtcp port 0":       {RemoteRTCP: ap("127.0.0.1:0")},
		"direction":         {Direction: Inactive + 1},
	} {
		if err := s.Update(u); err == nil {
			t.Errorf("%s: Update succeeded", name)
		}
		s.applyUpdates()
		if s.want != want || s.cur != want || s.Stats().Updates != 0 || s.Stats().Direction != SendRecv {
			t.Fatalf("%s: the failed update changed the session: %+v", name, s.cur)
		}
	}
	c, _ := listen(t, "127.0.0.1")
	if _, err := NewSession(SessionConfig{Conn: c, Remote: peer, Codec: PCMU, Direction: Inactive + 1,
		Source: &stepSource{}, Sink: make(levelSink)}); err == nil {
		t.Fatal("NewSession took an invalid direction")
	}
	if err := s.Update(Update{Remote: ap("127.0.0.1:30000"), Direction: Inactive}); err != nil {
		t.Fatal(err)
	}
	s.applyUpdates()
	if st := s.Stats(); st.Updates != 1 || st.Direction != Inactive || s.rtcpPeer.addr() != ap("127.0.0.1:30001") {
		t.Fatalf("a valid update: %+v, rtcp to %v", st, s.rtcpPeer.addr())
	}
}

// TestUpdateConcurrent updates a running session from several goroutines
// while it carries audio; the race detector checks the sharing.
func TestUpdateConcurrent(t *testing.T) {
	a, _ := listen(t, "127.0.0.1")
	b, _ := listen(t, "127.0.0.1")
	r := newRig(t, SessionConfig{Remote: localAddr(a), Codec: PCMU, DTMFPayloadType: 101}, nil)
	updates := []Update{
		{Direction: RecvOnly},
		{Remote: localAddr(b), Codec: PCMA, DTMFPayloadType: 101},
		{Direction: Inactive, DTMFPayloadType: 96},
		{Remote: localAddr(a), Codec: PCMU},
	}
	const rounds = 50
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for i := range rounds {
				if err := r.s.Update(updates[(g+i)%len(updates)]); err != nil {
					t.Error(err)
					return
				}
				r.s.Stats()
			}
		})
	}
	for i := range 60 {
		send(t, a, r.addr, codecPacket(PCMU, 42, uint16(i), 1000))
		send(t, b, r.addr, codecPacket(PCMA, 43, uint16(i), 1000))
		r.frame()
	}
	wg.Wait()
	r.frame()
	if st := r.s.Stats(); st.Updates != 2*rounds {
		t.Fatalf("updates %d, want %d", st.Updates, 2*rounds)
	}
}
