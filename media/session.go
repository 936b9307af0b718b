package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/zaf/g711"

	"intercom/internal/clock"
	"intercom/media/jitter"
)

// JitterConfig bounds the receive delay. The jitter buffer's target delay
// follows the delay variation measured on the network, within [Min, Max].
type JitterConfig struct {
	Min, Max time.Duration
}

// SessionConfig is what a call's media is set up with, usually straight
// from the SDP answer.
type SessionConfig struct {
	Conn *net.UDPConn // RTP, from ListenRTP; the Session closes it
	// RTCPConn is RTCP's socket, from ListenRTP; the Session closes it.
	// nil means no RTCP: no reports sent or read.
	RTCPConn *net.UDPConn
	// Remote is where RTP goes. Symmetric RTP: packets are taken only
	// from its IP, and the first valid one fixes the port (a NAT may have
	// changed it); from then on, only that address is heard and sent to.
	Remote netip.AddrPort
	// RemoteRTCP is where RTCP goes, latched the same way; the zero
	// value means Remote's port + 1 (RFC 3550 §11).
	RemoteRTCP netip.AddrPort
	// RTCPInterval is the nominal time between our reports; 0 => 5s
	// (RFC 3550 §6.2).
	RTCPInterval time.Duration
	Codec        Codec // PCMU or PCMA, with the negotiated payload type
	// Direction is the stream's direction at the start; the zero value
	// is SendRecv. A call that starts on hold starts SendOnly, RecvOnly
	// or Inactive.
	Direction Direction
	// DTMFPayloadType is the negotiated telephone-event payload type; 0
	// means none was negotiated (0 is never a dynamic payload type).
	DTMFPayloadType uint8
	Ptime           time.Duration // frame length; 0 => 20ms (RFC 3551 §4.5)
	Source          Source        // microphone; owned by the caller
	Sink            Sink          // speaker; owned by the caller
	Jitter          JitterConfig  // zero fields => Min 20ms, Max 200ms
	// OnDigit is called once per received RFC 4733 key press, from the
	// goroutine that reads RTP, which on Linux also carries the audio:
	// it must not block.
	OnDigit func(digit rune)
	// SRTP protects RTP and RTCP (RFC 3711) with the keys SDES
	// negotiated; the zero value is plain RTP.
	SRTP   SRTP
	Logger *slog.Logger
	Clock  clock.Clock // times packet arrivals and playout; nil => clock.Real
}

// Stats counts a session's traffic. Byte counts are RTP payload octets, as
// in RTCP sender reports (RFC 3550 §6.4.1).
type Stats struct {
	PacketsSent     uint64
	BytesSent       uint64
	SendErrors      uint64 // packets the socket refused
	PacketsReceived uint64 // RTP packets accepted: audio and telephone-events
	BytesReceived   uint64
	PacketsLost     uint64 // audio missing at its playout time
	PacketsLate     uint64 // audio arriving after its playout time
	Duplicates      uint64 // audio packets received twice
	Discarded       uint64 // audio dropped unplayed to keep the delay within Jitter.Max
	Malformed       uint64 // undecodable RTP or telephone-event payloads
	Ignored         uint64 // RTP or RTCP from another address than the remote's, or RTP with a payload type not negotiated
	// Unauthenticated counts SRTP and SRTCP packets refused: too short,
	// failing authentication, or replayed (RFC 3711 section 3.3).
	Unauthenticated uint64
	DTMF            uint64 // key presses reported through OnDigit

	// The jitter buffer: frames played without a packet (lost, or
	// inserted), and frames dropped or inserted to follow the target delay
	// or a sender clock running faster or slower than the speaker's.
	Concealed      uint64
	FramesDropped  uint64
	FramesInserted uint64
	JitterTarget   time.Duration // the delay the jitter buffer aims for
	JitterDepth    time.Duration // its delay now
	Jitter         time.Duration // RFC 3550 §6.4.1 interarrival jitter estimate

	// RTCP (RFC 3550 §6.4). NetworkLost and FractionLost are the loss of
	// the stream we receive as our reports state it: expected minus
	// received packets (negative with duplicates), and the fraction lost
	// in the last report interval.
	RTCPSent, RTCPReceived uint64
	RTCPMalformed          uint64
	NetworkLost            int64
	FractionLost           float64
	// What the remote's last report said about the stream we send; all
	// zero until one arrived (RemoteReport). RTT is the round trip
	// measured with our last sender report it echoed; 0 until then.
	RemoteReport       bool
	RemoteFractionLost float64
	RemoteLost         int64
	RemoteJitter       time.Duration
	RTT                time.Duration

	Direction Direction // the stream's direction now
	Updates   uint64    // Updates accepted
}

// maxPacket is the buffer for one datagram: an Ethernet MTU, far more than
// a G.711 packet of any usual ptime.
const maxPacket = 1500

// Session sends and receives one call's RTP.
type Session struct {
	cfg    SessionConfig
	codec  Codec // the frame loop's, for playout
	format Format
	log    *slog.Logger
	clk    clock.Clock
	ran    atomic.Bool

	// Update records the session it asks for in want and counts it in
	// upGen; the frame loop applies it at a frame boundary, keeping cur,
	// what it applied last, and curGen, its count (update.go).
	upMu   sync.Mutex
	want   params
	upGen  atomic.Uint64
	cur    params
	curGen uint64
	dir    atomic.Uint32 // cur.dir, for Stats

	// mu guards the jitter buffer, the RTCP state and the receive path's
	// state, shared by the loops.
	mu   sync.Mutex
	jb   *jitter.Buffer
	rtcp rtcpState
	rx   rxParams

	ssrc              uint32 // ours
	sec               srtpState
	rtpPeer, rtcpPeer *latch

	snd  sender
	rcv  receiver
	sock *rtpSocket // Conn as Run uses it
	ply  playout

	sent, sentBytes, sendErrors atomic.Uint64
	received, receivedBytes     atomic.Uint64
	malformed, ignored, digits  atomic.Uint64
	unauthenticated             atomic.Uint64
	rtcpSent, rtcpReceived      atomic.Uint64
	rtcpMalformed               atomic.Uint64
	updates                     atomic.Uint64
}

// NewSession checks cfg and prepares a session; Run starts it.
func NewSession(cfg SessionConfig) (*Session, error) {
	if cfg.Conn == nil {
		return nil, errors.New("media: session: no Conn")
	}
	if !cfg.Remote.IsValid() || cfg.Remote.Port() == 0 {
		return nil, fmt.Errorf("media: session: invalid remote address %v", cfg.Remote)
	}
	codec, ok := CodecByName(cfg.Codec.Name)
	if !ok {
		return nil, fmt.Errorf("media: session: unsupported codec %q", cfg.Codec.Name)
	}
	if cfg.RemoteRTCP == (netip.AddrPort{}) && cfg.Remote.Port() < 0xffff {
		cfg.RemoteRTCP = netip.AddrPortFrom(cfg.Remote.Addr(), cfg.Remote.Port()+1)
	}
	if cfg.RTCPConn != nil && (!cfg.RemoteRTCP.IsValid() || cfg.RemoteRTCP.Port() == 0) {
		return nil, fmt.Errorf("media: session: invalid remote rtcp address %v", cfg.RemoteRTCP)
	}
	if cfg.RTCPInterval == 0 {
		cfg.RTCPInterval = rtcpInterval
	}
	if cfg.RTCPInterval < 0 {
		return nil, fmt.Errorf("media: session: invalid rtcp interval %v", cfg.RTCPInterval)
	}
	if cfg.Codec.PayloadType > 127 {
		return nil, fmt.Errorf("media: session: invalid payload type %d", cfg.Codec.PayloadType)
	}
	codec.PayloadType = cfg.Codec.PayloadType
	if cfg.DTMFPayloadType > 127 || (cfg.DTMFPayloadType != 0 && cfg.DTMFPayloadType == codec.PayloadType) {
		return nil, fmt.Errorf("media: session: invalid telephone-event payload type %d", cfg.DTMFPayloadType)
	}
	if cfg.Direction > Inactive {
		return nil, fmt.Errorf("media: session: invalid direction %d", cfg.Direction)
	}
	if err := cfg.SRTP.check(); err != nil {
		return nil, fmt.Errorf("media: session: %w", err)
	}
	if cfg.Source == nil || cfg.Sink == nil {
		return nil, errors.New("media: session: Source and Sink are required")
	}
	if cfg.Ptime == 0 {
		cfg.Ptime = 20 * time.Millisecond
	}
	format, err := FormatForPtime(cfg.Ptime)
	if err != nil {
		return nil, err
	}
	if cfg.Jitter.Min == 0 {
		cfg.Jitter.Min = 20 * time.Millisecond
	}
	if cfg.Jitter.Max == 0 {
		cfg.Jitter.Max = max(200*time.Millisecond, cfg.Jitter.Min)
	}
	if cfg.Jitter.Min < 0 || cfg.Jitter.Max < cfg.Jitter.Min {
		return nil, fmt.Errorf("media: session: invalid jitter bounds min %v max %v", cfg.Jitter.Min, cfg.Jitter.Max)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	s := &Session{cfg: cfg, codec: codec, format: format, log: cfg.Logger, clk: cfg.Clock}
	jb, err := jitter.New(jitter.Config{
		Frame:       cfg.Ptime,
		ClockRate:   ClockRate,
		Min:         cfg.Jitter.Min,
		Max:         cfg.Jitter.Max,
		PayloadSize: format.FrameSamples, // G.711: a byte per sample
		Quiet:       s.quiet,
	})
	if err != nil {
		return nil, fmt.Errorf("media: session: %w", err)
	}
	s.jb = jb
	if s.sec, err = newSRTPState(cfg.SRTP); err != nil {
		return nil, fmt.Errorf("media: session: %w", err)
	}
	s.cur = params{remote: cfg.Remote, remoteRTCP: cfg.RemoteRTCP, codec: codec, dtmfPT: cfg.DTMFPayloadType, dir: cfg.Direction, keys: cfg.SRTP}
	s.want = s.cur
	s.dir.Store(uint32(cfg.Direction))
	s.rx = rxParams{codecPT: codec.PayloadType, dtmfPT: cfg.DTMFPayloadType, receiving: cfg.Direction.receives(), quiet: quietG711(codec)}
	s.snd = newSender(codec, format.FrameSamples)
	s.ssrc = s.snd.pkt.SSRC
	s.rtpPeer, s.rtcpPeer = newLatch(cfg.Remote), newLatch(cfg.RemoteRTCP)
	s.rtcp.cname = newCNAME()
	s.rcv = receiver{buf: make([]byte, maxPacket)}
	s.ply = playout{
		payload: make([]byte, format.FrameSamples),
		frame:   make([]int16, format.FrameSamples),
		prev:    make([]int16, format.FrameSamples),
	}
	return s, nil
}

// Format returns the PCM format the session reads from its Source and
// writes to its Sink.
func (s *Session) Format() Format { return s.format }

// Run sends and receives until ctx is done or a loop fails, then closes
// Conn (on Linux, Conn is closed at once and its socket carried on
// without the runtime's network poller). It returns nil when ctx ended it.
// It returns only after the current Source.Read and Sink.Write have
// returned, which a paced device does within a frame.
func (s *Session) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("media: session: Run called twice")
	}
	sock, err := newRTPSocket(s.cfg.Conn, s.rcv.buf)
	if err != nil {
		if s.cfg.RTCPConn != nil {
			s.cfg.RTCPConn.Close()
		}
		return err
	}
	s.sock = sock
	// Updates made before Run hold from the start, for every loop.
	s.applyUpdates()
	if !sock.stampsArrivals() {
		s.log.Warn("media: the kernel does not stamp receive times; packets are timed as the loop reads them, up to a frame late")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	loops := []func(context.Context) error{s.frameLoop}
	if !drainsSocket {
		loops = append(loops, s.receiveLoop)
	}
	if s.cfg.RTCPConn != nil {
		loops = append(loops, s.rtcpSendLoop, s.rtcpReceiveLoop)
	}
	for _, loop := range loops {
		wg.Go(func() {
			if err := loop(ctx); err != nil {
				errOnce.Do(func() { runErr = err })
				cancel()
			}
		})
	}
	<-ctx.Done()
	closeErr := s.sock.close()
	if s.cfg.RTCPConn != nil {
		// RFC 3550 §6.3.7: a participant leaving says BYE.
		s.sendReport(true)
		closeErr = errors.Join(closeErr, s.cfg.RTCPConn.Close())
	}
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	if closeErr != nil {
		return fmt.Errorf("media: session: close: %w", closeErr)
	}
	return nil
}

// Stats returns the counters so far; safe to call at any time.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	jb := s.jb.Stats()
	rs := s.rtcp
	s.mu.Unlock()
	st := Stats{
		PacketsSent:     s.sent.Load(),
		BytesSent:       s.sentBytes.Load(),
		SendErrors:      s.sendErrors.Load(),
		PacketsReceived: s.received.Load(),
		BytesReceived:   s.receivedBytes.Load(),
		PacketsLost:     jb.Lost,
		PacketsLate:     jb.Late,
		Duplicates:      jb.Duplicates,
		Discarded:       jb.Overflowed,
		Malformed:       s.malformed.Load(),
		Ignored:         s.ignored.Load(),
		Unauthenticated: s.unauthenticated.Load(),
		DTMF:            s.digits.Load(),
		Concealed:       jb.Lost + jb.Inserted,
		FramesDropped:   jb.Dropped,
		FramesInserted:  jb.Inserted,
		JitterTarget:    jb.Target,
		JitterDepth:     jb.Depth,
		Jitter:          jb.Jitter,
		RTCPSent:        s.rtcpSent.Load(),
		RTCPReceived:    s.rtcpReceived.Load(),
		RTCPMalformed:   s.rtcpMalformed.Load(),
		RemoteReport:    rs.remote,
		RTT:             rs.rtt,
		Direction:       Direction(s.dir.Load()),
		Updates:         s.updates.Load(),
	}
	if rs.src.have {
		st.NetworkLost = rs.src.lost()
		st.FractionLost = float64(rs.src.fraction) / 256
	}
	if rs.remote {
		st.RemoteFractionLost = float64(rs.remoteFrac) / 256
		st.RemoteLost = rs.remoteLost
		st.RemoteJitter = time.Duration(rs.remoteJit) * time.Second / ClockRate
	}
	return st
}

// sender builds outgoing packets in reused buffers.
type sender struct {
	codec Codec
	frame []int16
	pkt   rtp.Packet
	buf   []byte
}

func newSender(c Codec, frameSamples int) sender {
	return sender{
		codec: c,
		frame: make([]int16, frameSamples),
		// RFC 3550 §5.1: the initial sequence number and timestamp are
		// random, and so is the SSRC (§8.1).
		pkt: rtp.Packet{
			Header: rtp.Header{
				Version:        2,
				Marker:         true, // first packet of a talkspurt (RFC 3551 §4.1)
				PayloadType:    c.PayloadType,
				SequenceNumber: uint16(rand.Uint32()),
				Timestamp:      rand.Uint32(),
				SSRC:           rand.Uint32(),
			},
			Payload: make([]byte, frameSamples),
		},
		buf: make([]byte, maxPacket),
	}
}

// next encodes s.frame into the next packet and returns its bytes, valid
// until the following call.
func (s *sender) next() ([]byte, error) {
	if _, err := s.codec.Encode(s.pkt.Payload, s.frame); err != nil {
		return nil, err
	}
	n, err := s.pkt.MarshalTo(s.buf)
	if err != nil {
		return nil, fmt.Errorf("media: marshal rtp: %w", err)
	}
	s.pkt.Marker = false
	s.pkt.SequenceNumber++
	s.pkt.Timestamp += uint32(len(s.frame))
	return s.buf[:n], nil
}

// skip lets a frame's time pass unsent, on hold: the timestamp follows
// the clock while the sequence number waits, and the first packet sent
// again starts a talkspurt (RFC 3551 section 4.1; RFC 3550 section 5.1:
// the sequence counts packets, the timestamp sampling instants).
func (s *sender) skip() {
	s.pkt.Marker = true
	s.pkt.Timestamp += uint32(len(s.frame))
}

// frameLoop carries the call's audio, a frame at a time, at the pace of
// the Source and Sink (a sound card's clock, or a pacer): each frame it
// sends what the microphone gave, takes in the RTP packets that arrived
// meanwhile (where the platform drains the socket here), and plays the
// jitter buffer's next frame. One wake-up per frame, rather than one per
// loop and per packet, is what keeps a call cheap on a small board.
//
// The speaker gets a frame of silence ahead of the first one, so that it
// always holds a frame in hand: a sound card starts playing once a frame
// is queued, and would run dry at every late wake-up if each frame came
// just as the last one ended. A paced Sink then blocks in Write rather
// than the Source in Read, which costs nothing. With microphone and
// speaker on one card's clock, the speaker's buffer stays that full. If
// the speaker's clock is slower, Write blocks and the loop follows the
// speaker; if faster, the card runs dry now and then. Either is an xrun
// the backend counts, and the call goes on.
func (s *Session) frameLoop(ctx context.Context) error {
	for primed := false; ctx.Err() == nil; primed = true {
		if err := s.cfg.Source.Read(s.snd.frame); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("media: read source: %w", err)
		}
		s.applyUpdates()
		// On hold the microphone is still read, so that the sound card
		// does not overrun, and its frame dropped.
		if !s.cur.dir.sends() {
			s.snd.skip()
		} else if err := s.sendFrame(ctx); err != nil {
			return err
		}
		if err := s.sock.drain(s.clk.Now(), s.receive); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("media: read rtp: %w", err)
		}
		if !primed {
			clear(s.ply.frame)
			if err := s.cfg.Sink.Write(s.ply.frame); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("media: write sink: %w", err)
			}
		}
		if err := s.playFrame(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return nil
}

// sendFrame sends s.snd.frame as the next RTP packet.
func (s *Session) sendFrame(ctx context.Context) error {
	ts := s.snd.pkt.Timestamp
	b, err := s.snd.next()
	if err != nil {
		return err
	}
	if b, err = s.sec.protectRTP(b); err != nil {
		// Only a key used up (2^48 packets, RFC 3711 section 9.2) fails.
		return err
	}
	dest := s.rtpPeer.addr()
	if err := s.sock.send(b, dest); err != nil {
		if ctx.Err() != nil {
			return nil // Run closed the socket; the loop ends at its check of ctx
		}
		// A send can fail transiently (no route yet, a full buffer);
		// the call goes on and the failure shows in Stats.
		s.sendErrors.Add(1)
		s.log.Debug("media: rtp send failed", "remote", dest, "err", err)
		return nil
	}
	now := s.clk.Now()
	s.mu.Lock()
	s.rtcp.sentTS, s.rtcp.sentAt = ts, now
	s.mu.Unlock()
	s.sent.Add(1)
	s.sentBytes.Add(uint64(len(s.snd.pkt.Payload)))
	return nil
}

// receiver holds the receive path's state: the frame loop's, or where
// it does not drain the socket, receiveLoop's. Session.mu guards it but
// for buf and pkt, which only the reading loop touches.
type receiver struct {
	buf  []byte
	pkt  rtp.Packet
	ssrc uint32
	have bool
	dtmf dtmfReceiver
}

// receiveLoop reads the RTP socket where the frame loop does not drain
// it, timing each packet as it is read.
func (s *Session) receiveLoop(ctx context.Context) error {
	for {
		n, from, err := s.cfg.Conn.ReadFromUDPAddrPort(s.rcv.buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("media: read rtp: %w", err)
		}
		s.receive(s.rcv.buf[:n], from, s.clk.Now())
	}
}

// receive handles one datagram, arrived at time at: the whole receive path
// after the socket. It runs under s.mu, so that an Update takes effect
// between packets, but for OnDigit, which might call back into the Session.
func (s *Session) receive(b []byte, from netip.AddrPort, at time.Time) {
	s.mu.Lock()
	digit, ok := s.receiveLocked(b, from, at)
	s.mu.Unlock()
	if ok {
		s.digits.Add(1)
		if s.cfg.OnDigit != nil {
			s.cfg.OnDigit(digit)
		}
	}
}

// receiveLocked is receive under s.mu; it returns a key pressed.
func (s *Session) receiveLocked(b []byte, from netip.AddrPort, at time.Time) (rune, bool) {
	r := &s.rcv
	if !s.rtpPeer.allows(from) {
		s.ignored.Add(1)
		return 0, false
	}
	// Nothing is looked at, nor the remote latched, before the packet
	// authenticated (RFC 3711 section 3.3, step 5 before 6).
	b, err := s.sec.unprotectRTP(b)
	if err != nil {
		s.unauthenticated.Add(1)
		return 0, false
	}
	if err := r.pkt.Unmarshal(b); err != nil || r.pkt.Version != 2 {
		s.malformed.Add(1)
		return 0, false
	}
	// Not receiving (on hold), packets still count for RTCP, which goes
	// on (RFC 3264 section 5.1), but are neither played nor taken as keys.
	rx := &s.rx
	pt := r.pkt.PayloadType
	switch {
	case rx.dtmfPT != 0 && pt == rx.dtmfPT:
		var (
			digit rune
			ok    bool
		)
		if rx.receiving {
			var err error
			if digit, ok, err = r.dtmf.packet(r.pkt.SSRC, r.pkt.Timestamp, r.pkt.Marker, r.pkt.Payload); err != nil {
				s.malformed.Add(1)
				return 0, false
			}
		}
		s.accepted(from)
		s.countReceived(len(r.pkt.Payload))
		if r.have && r.pkt.SSRC == r.ssrc {
			// Telephone-events share the audio's sequence numbers
			// (RFC 4733 §2.1).
			s.rtcp.src.update(r.pkt.SequenceNumber)
		}
		return digit, ok
	case pt == rx.codecPT:
		s.accepted(from)
		s.countReceived(len(r.pkt.Payload))
		if !r.have || r.pkt.SSRC != r.ssrc {
			// A new stream (a new sender, or re-INVITE): its sequence
			// numbers have nothing to do with the old one's.
			r.have, r.ssrc = true, r.pkt.SSRC
			s.jb.Reset()
			s.rtcp.src.reset(r.pkt.SSRC, r.pkt.SequenceNumber)
		}
		s.rtcp.src.update(r.pkt.SequenceNumber)
		if rx.receiving {
			s.jb.Push(r.pkt.SequenceNumber, r.pkt.Timestamp, at, r.pkt.Payload)
		}
	default:
		s.ignored.Add(1)
	}
	return 0, false
}

// accepted latches the RTP remote on the first valid packet.
func (s *Session) accepted(from netip.AddrPort) {
	if s.rtpPeer.latch(from) {
		s.log.Debug("media: rtp latched to a new port", "remote", from)
	}
}

func (s *Session) countReceived(payload int) {
	s.received.Add(1)
	s.receivedBytes.Add(uint64(payload))
}

// playout holds the playout buffers.
type playout struct {
	payload []byte
	frame   []int16
	prev    []int16 // the last frame played, for concealment
	misses  int     // frames concealed since the last good one
}

// concealFrames is how many frames a missing packet is papered over
// (repeating the last one, halving its level each time) before silence.
const concealFrames = 4

// playFrame takes one frame from the jitter buffer and writes it to Sink.
// Not receiving (on hold), the buffer stays empty: it plays silence, and
// counts no loss while it waits for a stream to start.
func (s *Session) playFrame() error {
	p := &s.ply
	now := s.clk.Now()
	s.mu.Lock()
	n, res := s.jb.Pop(now, p.payload)
	s.mu.Unlock()
	if res == jitter.Played {
		m, err := s.codec.Decode(p.frame, p.payload[:n])
		if err != nil {
			return err
		}
		clear(p.frame[m:])
		copy(p.prev, p.frame)
		p.misses = 0
	} else {
		p.misses++
		if p.misses > concealFrames {
			clear(p.frame)
		} else {
			for i, v := range p.prev {
				p.frame[i] = v >> p.misses
			}
		}
	}
	if err := s.cfg.Sink.Write(p.frame); err != nil {
		return fmt.Errorf("media: write sink: %w", err)
	}
	return nil
}

// quietLevel is the mean absolute sample value under which a frame counts
// as silence, about -40 dBFS: dropping or repeating it goes unheard.
const quietLevel = 328

// quiet is the jitter buffer's test for a quiet payload, in the codec
// received now; the jitter buffer calls it under s.mu.
func (s *Session) quiet(payload []byte) bool { return s.rx.quiet(payload) }

// quietG711 returns the jitter buffer's test for a quiet G.711 payload.
func quietG711(c Codec) func(payload []byte) bool {
	var level [256]int32
	for i := range level {
		v := g711.DecodeUlawFrame(uint8(i))
		if c.Name == PCMA.Name {
			v = g711.DecodeAlawFrame(uint8(i))
		}
		level[i] = max(int32(v), -int32(v))
	}
	return func(payload []byte) bool {
		limit := int32(quietLevel * len(payload))
		var sum int32
		for _, b := range payload {
			if sum += level[b]; sum >= limit {
				return false
			}
		}
		return true
	}
}
