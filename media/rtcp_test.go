package media

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"intercom/internal/clock"
)

func marshalRTCP(t testing.TB, pkts ...rtcp.Packet) []byte {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var peerRTCP = netip.MustParseAddrPort("127.0.0.1:20001")

func TestMalformedRTCP(t *testing.T) {
	s := newTestSession(t, 101)
	rr := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{SSRC: s.ssrc}}})
	sdesOnly := marshalRTCP(t, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 7,
		Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "x"}}}}})
	badVersion := append([]byte(nil), rr...)
	badVersion[0] = 0x40 | badVersion[0]&0x3f
	longLength := append([]byte(nil), rr...)
	longLength[3]++
	for name, b := range map[string][]byte{
		"empty":             {},
		"one byte":          {0x80},
		"header only":       {0x80, 201, 0, 1},
		"version 1":         badVersion,
		"length past end":   longLength,
		"truncated block":   rr[:len(rr)-4],
		"no report first":   sdesOnly,
		"trailing garbage":  append(append([]byte(nil), rr...), 1, 2, 3),
		"rtp, not rtcp":     audioPacket(1, 0, 0),
		"count over length": {0x9f, 201, 0, 1, 0, 0, 0, 7},
	} {
		before := s.Stats().RTCPMalformed
		s.receiveRTCP(b, peerRTCP, s.clk.Now())
		if got := s.Stats().RTCPMalformed; got != before+1 {
			t.Errorf("%s: malformed count %d -> %d", name, before, got)
		}
	}
	if st := s.Stats(); st.RTCPReceived != 0 || st.RemoteReport {
		t.Fatalf("malformed packets taken in: %+v", st)
	}
	s.receiveRTCP(rr, peerRTCP, s.clk.Now())
	if st := s.Stats(); st.RTCPReceived != 1 || !st.RemoteReport {
		t.Fatalf("valid RR not taken in: %+v", st)
	}
}

func FuzzReceiveRTCP(f *testing.F) {
	s := newTestSession(f, 101)
	f.Add(marshalRTCP(f, &rtcp.SenderReport{SSRC: 7, NTPTime: 1 << 40, Reports: []rtcp.ReceptionReport{{SSRC: s.ssrc, LastSenderReport: 5}}}))
	f.Add([]byte{0x81, 201, 0, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		s.receiveRTCP(data, peerRTCP, s.clk.Now())
	})
}

// TestReportBlock feeds a stream with a gap and an SR, and checks our
// report block and the round trip computed from the remote's answer.
func TestReportBlock(t *testing.T) {
	s := newTestSession(t, 101)
	t0 := s.clk.Now()
	// Sequence numbers wrap; 65535+2 and 65535+4 are lost.
	for _, seq := range []uint16{65530, 65531, 65532, 65533, 65534, 65535, 0, 2, 4, 5} {
		s.receive(audioPacket(seq, 0, 1000), peer, t0)
	}
	s.receiveRTCP(marshalRTCP(t, &rtcp.SenderReport{SSRC: 42, NTPTime: ntpTime(t0)}), peerRTCP, t0)
	now := t0.Add(1500 * time.Millisecond)
	s.mu.Lock()
	pkts := s.report(now, false)
	s.mu.Unlock()
	rr, ok := pkts[0].(*rtcp.ReceiverReport)
	if !ok || len(pkts) != 2 {
		t.Fatalf("report %v: want RR (nothing sent) and SDES", pkts)
	}
	if len(rr.Reports) != 1 {
		t.Fatalf("report blocks %+v", rr.Reports)
	}
	b := rr.Reports[0]
	want := rtcp.ReceptionReport{SSRC: 42, FractionLost: 256 * 2 / 12, TotalLost: 2, LastSequenceNumber: 1<<16 + 5,
		LastSenderReport: ntpShort(t0), Delay: 3 << 15, Jitter: b.Jitter}
	if b != want {
		t.Fatalf("report block\n got %+v\nwant %+v", b, want)
	}
	if st := s.Stats(); st.NetworkLost != 2 || st.FractionLost != float64(want.FractionLost)/256 {
		t.Fatalf("lost %d, fraction %v", st.NetworkLost, st.FractionLost)
	}

	// The remote answers an SR of ours sent at t0 that it held for 1 s;
	// the answer arrives 1.25 s after we sent it: 250 ms round trip.
	s.receiveRTCP(marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 42, Reports: []rtcp.ReceptionReport{{
		SSRC: s.ssrc, FractionLost: 64, TotalLost: 0xfffffe, Jitter: 80,
		LastSenderReport: ntpShort(t0), Delay: 1 << 16,
	}}}), peerRTCP, t0.Add(1250*time.Millisecond))
	st := s.Stats()
	if d := st.RTT - 250*time.Millisecond; d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("RTT %v, want 250ms", st.RTT)
	}
	if st.RemoteFractionLost != 0.25 || st.RemoteLost != -2 || st.RemoteJitter != 10*time.Millisecond {
		t.Errorf("remote figures %v %v %v", st.RemoteFractionLost, st.RemoteLost, st.RemoteJitter)
	}
	// A block about someone else's stream, and one whose round trip
	// would be negative, change nothing.
	s.receiveRTCP(marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 42, Reports: []rtcp.ReceptionReport{
		{SSRC: s.ssrc + 1, FractionLost: 1},
		{SSRC: s.ssrc, FractionLost: 64, TotalLost: 0xfffffe, Jitter: 80, LastSenderReport: ntpShort(t0), Delay: 5 << 16},
	}}), peerRTCP, t0.Add(time.Second))
	if got := s.Stats(); got.RTT != st.RTT || got.RemoteFractionLost != 0.25 {
		t.Errorf("after bogus blocks: RTT %v, fraction %v", got.RTT, got.RemoteFractionLost)
	}
}

func TestSenderReport(t *testing.T) {
	s := newTestSession(t, 101)
	now := s.clk.Now()
	s.sent.Store(10)
	s.sentBytes.Store(1600)
	s.rtcp.sentTS, s.rtcp.sentAt = 1000, now.Add(-100*time.Millisecond)
	for i, wantSR := range []bool{true, true, false} {
		s.mu.Lock()
		pkts := s.report(now, i == 2)
		s.mu.Unlock()
		sr, isSR := pkts[0].(*rtcp.SenderReport)
		if isSR != wantSR {
			t.Fatalf("report %d: %T, want SR %v", i, pkts[0], wantSR)
		}
		if isSR && (sr.PacketCount != 10 || sr.OctetCount != 1600 || sr.RTPTime != 1800 || sr.NTPTime != ntpTime(now)) {
			t.Fatalf("SR %+v", sr)
		}
		if i == 2 {
			if bye, ok := pkts[len(pkts)-1].(*rtcp.Goodbye); !ok || bye.Sources[0] != s.ssrc {
				t.Fatalf("no BYE last: %v", pkts)
			}
		}
	}
}

func TestSourceSequence(t *testing.T) {
	var src source
	src.reset(1, 100)
	for _, seq := range []uint16{100, 101, 101, 99, 103, 40000, 104} {
		src.update(seq)
	}
	// 40000 is a jump not followed up: not counted; 99 is late and counted.
	if src.extendedMax() != 104 || src.lost() != 5-6 {
		t.Fatalf("max %d lost %d", src.extendedMax(), src.lost())
	}
	// Two packets in sequence after a jump: the sender restarted.
	src.update(50000)
	src.update(50001)
	if src.extendedMax() != 50001 || src.lost() != 0 {
		t.Fatalf("after restart: max %d lost %d", src.extendedMax(), src.lost())
	}
}

// TestLatching checks symmetric RTP: other IPs are ignored, the first
// valid packet from the negotiated IP fixes the port, and then only that
// address is heard and sent to.
func TestLatching(t *testing.T) {
	s := newTestSession(t, 101)
	now := s.clk.Now()
	natted := netip.MustParseAddrPort("127.0.0.1:30000")
	s.receive(audioPacket(1, 0, 1000), netip.MustParseAddrPort("127.0.0.2:20000"), now)
	s.receive([]byte{0x80, 0}, natted, now) // junk does not latch
	s.receive(audioPacket(1, 9, 1000), natted, now)
	if st := s.Stats(); st.PacketsReceived != 0 || st.Ignored != 2 || s.rtpPeer.addr() != peer {
		t.Fatalf("before latching: %+v, sending to %v", st, s.rtpPeer.addr())
	}
	s.receive(audioPacket(2, 0, 1000), natted, now)
	if st := s.Stats(); st.PacketsReceived != 1 || s.rtpPeer.addr() != natted {
		t.Fatalf("latching: %+v, sending to %v", st, s.rtpPeer.addr())
	}
	s.receive(audioPacket(3, 0, 1000), peer, now) // the negotiated port, too late
	s.receive(audioPacket(3, 0, 1000), netip.MustParseAddrPort("127.0.0.1:30002"), now)
	s.receive(audioPacket(3, 0, 1000), netip.MustParseAddrPort("127.0.0.3:30000"), now)
	if st := s.Stats(); st.PacketsReceived != 1 || st.Ignored != 5 || s.rtpPeer.addr() != natted {
		t.Fatalf("strangers after latching: %+v, sending to %v", st, s.rtpPeer.addr())
	}

	// RTCP latches on its own.
	rr := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 42})
	s.receiveRTCP(rr, netip.MustParseAddrPort("127.0.0.2:20001"), now)
	if s.Stats().RTCPReceived != 0 || s.rtcpPeer.addr() != peerRTCP {
		t.Fatalf("rtcp from another IP taken, sending to %v", s.rtcpPeer.addr())
	}
	s.receiveRTCP(rr, netip.MustParseAddrPort("127.0.0.1:30001"), now)
	s.receiveRTCP(rr, peerRTCP, now)
	if st := s.Stats(); st.RTCPReceived != 1 || s.rtcpPeer.addr() != netip.MustParseAddrPort("127.0.0.1:30001") {
		t.Fatalf("rtcp latching: %+v, sending to %v", st, s.rtcpPeer.addr())
	}
}

// relay forwards RTP and RTCP between two sessions after a delay,
// dropping every dropEvery-th RTP packet from A to B. A talks to its
// pair facing A, B to the pair facing B.
type relay struct {
	facingA, facingB [2]*net.UDPConn // RTP, RTCP
	delay            time.Duration
	dropEvery        int
	dropped          atomic.Int64
	wg               sync.WaitGroup
}

func newRelay(t *testing.T, delay time.Duration, dropEvery int) *relay {
	r := &relay{delay: delay, dropEvery: dropEvery}
	r.facingA[0], r.facingA[1] = listen(t, "127.0.0.1")
	r.facingB[0], r.facingB[1] = listen(t, "127.0.0.1")
	return r
}

// run forwards until the sockets close: in from one side goes out of the
// other side's socket to that side's session.
func (r *relay) run(a, b [2]netip.AddrPort) {
	for i := range 2 {
		r.wg.Go(func() { r.forward(r.facingA[i], r.facingB[i], b[i], i == 0) })
		r.wg.Go(func() { r.forward(r.facingB[i], r.facingA[i], a[i], false) })
	}
}

func (r *relay) forward(in, out *net.UDPConn, to netip.AddrPort, lossy bool) {
	n := 0
	for {
		buf := make([]byte, maxPacket)
		k, _, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n++; lossy && n%r.dropEvery == 0 {
			r.dropped.Add(1)
			continue
		}
		time.AfterFunc(r.delay, func() { out.WriteToUDPAddrPort(buf[:k], to) })
	}
}

func (r *relay) close() {
	for _, c := range append(r.facingA[:], r.facingB[:]...) {
		c.Close()
	}
	r.wg.Wait()
}

// TestRTCPRoundTrip runs two sessions through a relay that delays every
// packet by 25 ms and drops a tenth of A's RTP: both measure a round trip
// of about 50 ms, and A learns from B's reports that packets were lost.
func TestRTCPRoundTrip(t *testing.T) {
	const delay = 25 * time.Millisecond
	r := newRelay(t, delay, 10)
	defer r.close()
	type side struct {
		s         *Session
		rtp, rtcp *net.UDPConn
	}
	mk := func(remote netip.AddrPort) side {
		c, cc := listen(t, "127.0.0.1")
		s, err := NewSession(SessionConfig{Conn: c, RTCPConn: cc, Remote: remote, Codec: PCMU,
			Source: &sineSource{freq: 440, p: newPacer(clock.Real{}, 8000)},
			Sink:   newRecordSink(newPacer(clock.Real{}, 8000), 1<<30), RTCPInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return side{s: s, rtp: c, rtcp: cc}
	}
	a := mk(localAddr(r.facingA[0]))
	b := mk(localAddr(r.facingB[0]))
	r.run([2]netip.AddrPort{localAddr(a.rtp), localAddr(a.rtcp)}, [2]netip.AddrPort{localAddr(b.rtp), localAddr(b.rtcp)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- a.s.Run(ctx) }()
	go func() { errs <- b.s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sa, sb := a.s.Stats(), b.s.Stats()
		if sa.RTT > 0 && sb.RTT > 0 && sa.RemoteLost > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no round trip or loss report:\nA %+v\nB %+v", sa, sb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	sa, sb := a.s.Stats(), b.s.Stats()
	for name, st := range map[string]Stats{"A": sa, "B": sb} {
		if st.RTT < 2*delay || st.RTT > 2*delay+200*time.Millisecond {
			t.Errorf("%s: RTT %v, want about %v", name, st.RTT, 2*delay)
		}
		if st.RTCPSent < 2 || st.RTCPReceived < 1 || st.RTCPMalformed != 0 || st.Ignored != 0 {
			t.Errorf("%s: rtcp counts %+v", name, st)
		}
	}
	if dropped := r.dropped.Load(); sb.NetworkLost < 1 || sb.NetworkLost > dropped || sa.RemoteLost > sb.NetworkLost {
		t.Errorf("relay dropped %d; B counted %d lost, A was told %d", dropped, sb.NetworkLost, sa.RemoteLost)
	}
	if sa.NetworkLost != 0 || sb.RemoteLost != 0 {
		t.Errorf("loss from B to A: A counted %d, B was told %d", sa.NetworkLost, sb.RemoteLost)
	}
}
