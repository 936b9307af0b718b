package media

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtcp"
)

// rtcpInterval is the nominal time between our reports: RFC 3550 §6.2's
// minimum, which at G.711 rates is also what the bandwidth rule yields.
const rtcpInterval = 5 * time.Second

// latch is one direction's remote address under symmetric RTP: packets are
// taken only from the negotiated IP, and the first valid one fixes the
// port, which a NAT in front of the peer may have changed. Once latched,
// every other source is ignored and replies go to the latched address.
type latch struct {
	mu      sync.Mutex
	ip      netip.Addr
	dest    netip.AddrPort
	latched bool
	// stale is the address the remote moved away from (move), unmapped:
	// its stragglers must not latch when the new address has its IP.
	stale netip.AddrPort
}

func newLatch(dest netip.AddrPort) *latch {
	return &latch{ip: dest.Addr().Unmap(), dest: dest}
}

// allows reports whether a packet from from may be looked at.
func (l *latch) allows(from netip.AddrPort) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ip := from.Addr().Unmap()
	if ip != l.ip || netip.AddrPortFrom(ip, from.Port()) == l.stale {
		return false
	}
	return !l.latched || from.Port() == l.dest.Port()
}

// latch fixes the remote address at from, the source of a valid packet
// that allows accepted; it reports whether the port changed.
func (l *latch) latch(from netip.AddrPort) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.latched {
		return false
	}
	moved := from.Port() != l.dest.Port()
	l.dest, l.latched = from, true
	return moved
}

// move sets a new remote, to be latched afresh; the address packets came
// from until now is not heard again.
func (l *latch) move(dest netip.AddrPort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dest != dest {
		l.stale = netip.AddrPortFrom(l.dest.Addr().Unmap(), l.dest.Port())
	}
	l.ip, l.dest, l.latched = dest.Addr().Unmap(), dest, false
}

// addr is where packets go now.
func (l *latch) addr() netip.AddrPort {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dest
}

// source tracks the sequence numbers of the stream we receive, for the
// loss figures of our reception report (RFC 3550 appendix A.1 and A.3).
type source struct {
	have                         bool
	ssrc                         uint32
	maxSeq                       uint16
	badSeq                       uint32 // A.1: a jump is believed when the next packet follows it
	cycles, baseSeq              uint32
	received                     uint32
	expectedPrior, receivedPrior uint32
	fraction                     uint8 // loss over the last report interval, in 1/256
}

// RFC 3550 appendix A.1 limits: a sequence number further behind than
// seqMisorder or further ahead than seqDropout means the sender restarted.
const (
	seqDropout  = 3000
	seqMisorder = 100
)

func (src *source) reset(ssrc uint32, seq uint16) {
	*src = source{have: true, ssrc: ssrc, maxSeq: seq, baseSeq: uint32(seq), badSeq: 1 << 16}
}

// update counts a packet with sequence number seq (appendix A.1).
func (src *source) update(seq uint16) {
	switch delta := seq - src.maxSeq; {
	case delta < seqDropout:
		if seq < src.maxSeq {
			src.cycles += 1 << 16
		}
		src.maxSeq = seq
	case delta <= 1<<16-seqMisorder:
		if uint32(seq) != src.badSeq {
			src.badSeq = uint32(seq + 1)
			return
		}
		// Two packets in sequence after a jump: the sender restarted.
		src.reset(src.ssrc, seq)
	default:
		// A duplicate or a packet out of order.
	}
	src.received++
}

func (src *source) extendedMax() uint32 { return src.cycles + uint32(src.maxSeq) }

// lost is the cumulative number of packets lost: expected minus received,
// negative when duplicates outnumber the losses (appendix A.3).
func (src *source) lost() int64 {
	return int64(src.extendedMax()-src.baseSeq+1) - int64(src.received)
}

// interval closes a report interval and returns its fraction lost.
func (src *source) interval() uint8 {
	expected := src.extendedMax() - src.baseSeq + 1
	expInt := expected - src.expectedPrior
	recInt := src.received - src.receivedPrior
	src.expectedPrior, src.receivedPrior = expected, src.received
	src.fraction = 0
	if expInt != 0 && int32(expInt-recInt) > 0 {
		src.fraction = uint8((expInt - recInt) << 8 / expInt)
	}
	return src.fraction
}

// rtcpState is what reports are built from and what the remote's reports
// told us. Session.mu guards it.
type rtcpState struct {
	cname string
	src   source
	// Our sending: the RTP timestamp last sent and when, for the SR's
	// RTP time, and the packet count at the last two reports, since an SR
	// is due only from a sender of the last two intervals (§6.4).
	sentTS           uint32
	sentAt           time.Time
	sentAt1, sentAt2 uint64
	// The remote's last SR, echoed in our report blocks as LSR and DLSR.
	srSSRC uint32
	srNTP  uint32
	srAt   time.Time
	// What the remote's last report block about our stream said.
	remote     bool
	remoteFrac uint8
	remoteLost int64
	remoteJit  uint32
	rtt        time.Duration
}

// newCNAME returns a random canonical name, as RFC 7022 §4.2 recommends
// for a short-term one: 96 random bits, base64.
func newCNAME() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return base64.StdEncoding.EncodeToString(b)
}

// ntpTime is t in the 64-bit NTP format of RFC 3550 §4.
func ntpTime(t time.Time) uint64 {
	const unixToNTP = 2208988800
	secs := uint64(t.Unix() + unixToNTP)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

// ntpShort is the middle 32 bits of the NTP time, the unit of LSR and DLSR.
func ntpShort(t time.Time) uint32 { return uint32(ntpTime(t) >> 16) }

// shortDuration is d in units of 1/65536 s.
func shortDuration(d time.Duration) uint32 { return uint32(d * 65536 / time.Second) }

// report builds our compound RTCP packet (§6.1: SR or RR first, then SDES
// with the CNAME), with BYE added when leaving (§6.6). Called under s.mu.
func (s *Session) report(now time.Time, bye bool) []rtcp.Packet {
	st := &s.rtcp
	ssrc := s.ssrc
	var blocks []rtcp.ReceptionReport
	if src := &st.src; src.have {
		rr := rtcp.ReceptionReport{
			SSRC:               src.ssrc,
			FractionLost:       src.interval(),
			TotalLost:          uint32(min(max(src.lost(), 0), 0x7fffff)),
			LastSequenceNumber: src.extendedMax(),
			Jitter:             uint32(s.jb.Stats().Jitter * ClockRate / time.Second),
		}
		if st.srSSRC == src.ssrc && !st.srAt.IsZero() {
			rr.LastSenderReport = st.srNTP
			rr.Delay = shortDuration(now.Sub(st.srAt))
		}
		blocks = append(blocks, rr)
	}
	sent := s.sent.Load()
	var first rtcp.Packet = &rtcp.ReceiverReport{SSRC: ssrc, Reports: blocks}
	if sent > st.sentAt2 {
		first = &rtcp.SenderReport{
			SSRC:        ssrc,
			NTPTime:     ntpTime(now),
			RTPTime:     st.sentTS + uint32(now.Sub(st.sentAt)*ClockRate/time.Second),
			PacketCount: uint32(sent),
			OctetCount:  uint32(s.sentBytes.Load()),
			Reports:     blocks,
		}
	}
	st.sentAt2, st.sentAt1 = st.sentAt1, sent
	pkts := []rtcp.Packet{first, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
		Source: ssrc,
		Items:  []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: st.cname}},
	}}}}
	if bye {
		pkts = append(pkts, &rtcp.Goodbye{Sources: []uint32{ssrc}})
	}
	return pkts
}

// sendReport sends our compound RTCP packet to the remote's RTCP address.
func (s *Session) sendReport(bye bool) {
	s.mu.Lock()
	b, err := rtcp.Marshal(s.report(s.clk.Now(), bye))
	if err == nil {
		// RFC 3711 section 3.4: SRTCP is always authenticated.
		b, err = s.sec.protectRTCP(b)
	}
	s.mu.Unlock()
	if err != nil {
		// Only out-of-range fields, which report never builds, or a key
		// used up (2^31 reports) fail.
		s.log.Warn("media: marshal rtcp", "err", err)
		return
	}
	dest := s.rtcpPeer.addr()
	if _, err := s.cfg.RTCPConn.WriteToUDPAddrPort(b, dest); err != nil {
		s.sendErrors.Add(1)
		s.log.Debug("media: rtcp send failed", "remote", dest, "err", err)
		return
	}
	s.rtcpSent.Add(1)
}

// reportInterval is the time until our next report: the nominal interval,
// halved for the first (§6.2), randomized over 0.5-1.5 of it (§6.3.1) so
// that participants do not synchronize.
func (s *Session) reportInterval(first bool) time.Duration {
	d := s.cfg.RTCPInterval
	if first {
		d /= 2
	}
	return time.Duration(float64(d) * (0.5 + mrand.Float64()))
}

func (s *Session) rtcpSendLoop(ctx context.Context) error {
	t := s.clk.NewTimer(s.reportInterval(true))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			s.sendReport(false)
			t.Reset(s.reportInterval(false))
		}
	}
}

func (s *Session) rtcpReceiveLoop(ctx context.Context) error {
	buf := make([]byte, maxPacket)
	for {
		n, from, err := s.cfg.RTCPConn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("media: read rtcp: %w", err)
		}
		s.receiveRTCP(buf[:n], from, s.clk.Now())
	}
}

var errNotReport = errors.New("compound packet does not start with SR or RR")

// receiveRTCP handles one RTCP datagram that arrived at time at.
func (s *Session) receiveRTCP(b []byte, from netip.AddrPort, at time.Time) {
	// Under s.mu, an Update cannot move the latch between its check and
	// its latching.
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.rtcpPeer.allows(from) {
		s.ignored.Add(1)
		return
	}
	b, err := s.sec.unprotectRTCP(b)
	if err != nil {
		s.unauthenticated.Add(1)
		return
	}
	pkts, err := rtcp.Unmarshal(b)
	if err == nil {
		// RFC 3550 appendix A.2: a compound packet starts with a report.
		switch pkts[0].(type) {
		case *rtcp.SenderReport, *rtcp.ReceiverReport:
		default:
			err = errNotReport
		}
	}
	if err != nil {
		s.rtcpMalformed.Add(1)
		s.log.Debug("media: malformed rtcp", "from", from, "err", err)
		return
	}
	if s.rtcpPeer.latch(from) {
		s.log.Debug("media: rtcp latched to a new port", "remote", from)
	}
	s.rtcpReceived.Add(1)
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			s.rtcp.srSSRC, s.rtcp.srNTP, s.rtcp.srAt = p.SSRC, uint32(p.NTPTime>>16), at
			s.reportBlocks(p.Reports, at)
		case *rtcp.ReceiverReport:
			s.reportBlocks(p.Reports, at)
		}
	}
}

// reportBlocks takes in what the remote's report blocks say about our
// stream. Called under s.mu.
func (s *Session) reportBlocks(blocks []rtcp.ReceptionReport, at time.Time) {
	for _, rb := range blocks {
		if rb.SSRC != s.ssrc {
			continue
		}
		st := &s.rtcp
		st.remote = true
		st.remoteFrac = rb.FractionLost
		st.remoteLost = int64(int32(rb.TotalLost<<8) >> 8) // 24-bit signed
		st.remoteJit = rb.Jitter
		if rb.LastSenderReport == 0 {
			continue // no SR of ours reached the remote yet
		}
		// §6.4.1: round trip = arrival - LSR - DLSR, in 1/65536 s. A
		// negative result means a clock step or a bogus report.
		if rtt := int32(ntpShort(at) - rb.LastSenderReport - rb.Delay); rtt >= 0 {
			st.rtt = time.Duration(rtt) * time.Second / 65536
		}
	}
}
