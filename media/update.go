package media

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Direction is the SDP media direction of a stream, seen from our side
// (RFC 3264 section 6.1).
type Direction uint8

const (
	SendRecv Direction = iota // the zero value: a normal call
	SendOnly                  // we send, the far end does not (it put itself on hold for listening)
	RecvOnly                  // we only receive: the far end put us on hold (it sent a=sendonly)
	Inactive                  // neither
)

// String returns the SDP attribute name of d: "sendrecv", "sendonly",
// "recvonly" or "inactive" (RFC 4566 section 6).
func (d Direction) String() string {
	switch d {
	case SendRecv:
		return "sendrecv"
	case SendOnly:
		return "sendonly"
	case RecvOnly:
		return "recvonly"
	case Inactive:
		return "inactive"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// sends reports whether RTP goes out in direction d.
func (d Direction) sends() bool { return d == SendRecv || d == SendOnly }

// receives reports whether RTP coming in is played in direction d.
func (d Direction) receives() bool { return d == SendRecv || d == RecvOnly }

// Update is a change to a running Session from a new SDP offer/answer.
type Update struct {
	Remote          netip.AddrPort // new RTP destination; zero value: unchanged
	RemoteRTCP      netip.AddrPort // zero: Remote's port + 1 when Remote changes, else unchanged
	Codec           Codec          // zero Name: unchanged; PCMU<->PCMA with its payload type
	DTMFPayloadType uint8          // the telephone-event payload type of the new answer (0: none)
	Direction       Direction
	// SRTP is the keying of the new offer/answer, which may change keys
	// (RFC 4568 section 7.1.4); a zero Suite leaves it unchanged. A
	// session does not switch between RTP and SRTP.
	SRTP SRTP
}

// params are the negotiated parameters that an Update may change.
type params struct {
	remote, remoteRTCP netip.AddrPort
	codec              Codec
	dtmfPT             uint8
	dir                Direction
	keys               SRTP
	// sec is keys' contexts, made by Update when keys change.
	sec *srtpState
}

// rxParams are what the receive path accepts; Session.mu guards them, as
// RTP may be read on another goroutine than the frame loop's.
type rxParams struct {
	codecPT, dtmfPT uint8
	receiving       bool
	quiet           func(payload []byte) bool // the jitter buffer's test, for the codec
}

// Update applies u to the running (or not yet running) session, safe from
// any goroutine. Every field but Remote, RemoteRTCP, Codec and SRTP is
// taken as the new answer states it: DTMFPayloadType 0 turns
// telephone-events off, and Direction is always set. New SRTP keys hold
// from the next frame on, both ways.
//
// The change takes effect at the next frame boundary (before Run, when Run
// starts); several Updates within one frame add up. An Update the session
// cannot do (a codec other than PCMU or PCMA, a payload type out of range
// or shared by audio and telephone-events, an invalid address) returns an
// error and changes nothing. The ptime stays as NewSession set it: the
// sound device keeps its buffer size, and RFC 3264 section 6.1 makes
// ptime only a preference, so a re-INVITE's a=ptime is not followed.
//
// A new Remote moves symmetric RTP's latch: packets are taken from the new
// IP only, the first valid one fixes the port again, and the old address
// is ignored from then on. The far end's stream starts afresh there: the
// jitter buffer and the RTCP statistics of the stream we receive restart.
// c=0.0.0.0, the old way to put a call on hold (RFC 3264 section 8.4), is
// a Direction, not an address: it is refused as a Remote.
func (s *Session) Update(u Update) error {
	if u.Direction > Inactive {
		return fmt.Errorf("media: update: invalid direction %d", u.Direction)
	}
	s.upMu.Lock()
	defer s.upMu.Unlock()
	next := s.want
	if u.Codec.Name != "" {
		c, ok := CodecByName(u.Codec.Name)
		if !ok {
			return fmt.Errorf("media: update: unsupported codec %q", u.Codec.Name)
		}
		if u.Codec.PayloadType > 127 {
			return fmt.Errorf("media: update: invalid payload type %d", u.Codec.PayloadType)
		}
		c.PayloadType = u.Codec.PayloadType
		next.codec = c
	}
	if u.DTMFPayloadType > 127 || (u.DTMFPayloadType != 0 && u.DTMFPayloadType == next.codec.PayloadType) {
		return fmt.Errorf("media: update: invalid telephone-event payload type %d", u.DTMFPayloadType)
	}
	next.dtmfPT = u.DTMFPayloadType
	if u.Remote != (netip.AddrPort{}) {
		if !validRemote(u.Remote) {
			return fmt.Errorf("media: update: invalid remote address %v", u.Remote)
		}
		next.remote, next.remoteRTCP = u.Remote, netip.AddrPort{}
		if u.Remote.Port() < 0xffff {
			next.remoteRTCP = netip.AddrPortFrom(u.Remote.Addr(), u.Remote.Port()+1)
		}
	}
	if u.RemoteRTCP != (netip.AddrPort{}) {
		if !validRemote(u.RemoteRTCP) {
			return fmt.Errorf("media: update: invalid remote rtcp address %v", u.RemoteRTCP)
		}
		next.remoteRTCP = u.RemoteRTCP
	}
	if s.cfg.RTCPConn != nil && !validRemote(next.remoteRTCP) {
		return fmt.Errorf("media: update: invalid remote rtcp address %v", next.remoteRTCP)
	}
	if u.SRTP.Suite != NoSRTP && u.SRTP != next.keys {
		if next.keys.Suite == NoSRTP {
			return errors.New("media: update: a plain rtp session cannot switch to srtp")
		}
		if err := u.SRTP.check(); err != nil {
			return fmt.Errorf("media: update: %w", err)
		}
		sec, err := newSRTPState(u.SRTP)
		if err != nil {
			return fmt.Errorf("media: update: %w", err)
		}
		next.keys, next.sec = u.SRTP, &sec
	}
	next.dir = u.Direction
	s.want = next
	s.upGen.Add(1)
	s.updates.Add(1)
	return nil
}

// validRemote reports whether a is an address packets can be sent to.
func validRemote(a netip.AddrPort) bool {
	return a.IsValid() && a.Port() != 0 && !a.Addr().IsUnspecified()
}

// applyUpdates brings the session to the last accepted Update, if the
// frame loop has not applied it yet. It runs on the frame loop (or in Run
// before the loops start), which owns cur, snd and ply.
func (s *Session) applyUpdates() {
	if s.upGen.Load() == s.curGen {
		return
	}
	s.upMu.Lock()
	next, gen := s.want, s.upGen.Load()
	s.upMu.Unlock()
	old := s.cur
	s.cur, s.curGen = next, gen

	if next.codec != old.codec {
		// The sequence and the timestamp go on: one stream, re-encoded
		// from this frame on.
		s.codec = next.codec
		s.snd.codec = next.codec
		s.snd.pkt.PayloadType = next.codec.PayloadType
	}
	rekey := next.keys != old.keys
	if rekey {
		// The frame loop's context first; the rest under s.mu below.
		s.sec.txRTP = next.sec.txRTP
	}
	if old.dir.receives() && !next.dir.receives() {
		// Nothing of the old audio is to be heard on resume.
		clear(s.ply.prev)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if rekey {
		s.sec = *next.sec
	}
	rx := &s.rx
	rx.dtmfPT = next.dtmfPT
	if next.codec != old.codec {
		rx.codecPT = next.codec.PayloadType
		if next.codec.Name != old.codec.Name {
			// The held payloads are in the old encoding.
			rx.quiet = quietG711(next.codec)
			s.jb.Reset()
		}
	}
	if receiving := next.dir.receives(); receiving != rx.receiving {
		// Playout stops, or starts again from fresh packets; the
		// stream's RTCP statistics go on (RFC 3264 section 5.1).
		rx.receiving = receiving
		s.jb.Reset()
	}
	if next.remote != old.remote {
		s.rtpPeer.move(next.remote)
		// The far end's stream restarts at its new address, maybe with
		// a new SSRC and sequence: not a loss (RFC 3550 appendix A.1).
		// The next audio packet starts it afresh (receive).
		s.rcv.have = false
		s.rcv.dtmf = dtmfReceiver{}
		s.rtcp.src = source{}
		s.rtcp.srSSRC, s.rtcp.srNTP, s.rtcp.srAt = 0, 0, time.Time{}
		s.jb.Reset()
	}
	if next.remoteRTCP != old.remoteRTCP {
		s.rtcpPeer.move(next.remoteRTCP)
	}
	s.dir.Store(uint32(next.dir))
}
