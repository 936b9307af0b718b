package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"intercom/media"
	"intercom/media/dsp"
	"intercom/media/tone"
	"intercom/sipagent"
)

// SIPPhone places calls through a sipagent.Agent.
type SIPPhone struct{ Agent *sipagent.Agent }

var _ Phone = SIPPhone{}

// Dial implements Phone.
func (p SIPPhone) Dial(ctx context.Context, req sipagent.DialRequest) (Call, error) {
	c, err := p.Agent.Dial(ctx, req)
	if err != nil || c == nil {
		return nil, err
	}
	return c, nil
}

// SIPEvents translates the agent's events into the station's until ctx is
// done or in is closed.
func SIPEvents(ctx context.Context, in <-chan sipagent.Event) <-chan any {
	out := make(chan any, 16)
	go func() {
		defer close(out)
		for {
			var ev sipagent.Event
			var ok bool
			select {
			case <-ctx.Done():
				return
			case ev, ok = <-in:
				if !ok {
					return
				}
			}
			var d any
			switch ev := ev.(type) {
			case sipagent.RegistrationChanged:
				d = RegistrationEvent{State: ev.State, Registrar: ev.Registrar, Expires: ev.Expires, Err: ev.Err, Transport: ev.Transport, Addr: ev.Addr}
			case sipagent.IncomingCall:
				d = IncomingEvent{Call: ev.Call, From: ev.From, Source: ev.Source, FromProxy: ev.FromProxy}
			case sipagent.CallEnded:
				d = EndedEvent{Call: ev.Call, Reason: ev.Reason}
			case sipagent.DTMF:
				d = InfoDigitEvent{Call: ev.Call, Digit: ev.Digit}
			case sipagent.CheckSync:
				d = CheckSyncEvent{Source: ev.Source}
			case sipagent.MediaChanged:
				d = MediaChangedEvent{Call: ev.Call, Media: ev.Media}
			default:
				continue
			}
			select {
			case out <- d:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// RTPMedia runs calls' audio with intercom/media.
type RTPMedia struct {
	Backend media.Backend
	Jitter  media.JitterConfig
	// Ptime is used when the answer names none.
	Ptime time.Duration
	// MicGain and SpeakerGain apply audio.mic_gain_db and speaker_gain_db.
	MicGain, SpeakerGain dsp.Gain
	// Ringback is played at the door while the flat rings.
	Ringback tone.Spec
	// EchoSuppression attenuates the microphone while the far end talks.
	EchoSuppression bool
	Logger          *slog.Logger

	local localPlayer
}

// Close stops a tone still playing outside a call.
func (m *RTPMedia) Close() { m.local.stop() }

// Announce plays a tone on the door's speaker for d, outside a call.
func (m *RTPMedia) Announce(spec tone.Spec, d time.Duration) {
	m.local.play(m, spec, d)
}

var _ Media = (*RTPMedia)(nil)

// Open implements Media.
func (m *RTPMedia) Open(ip netip.Addr) (Stream, error) {
	conn, rtcpConn, err := media.ListenRTP(ip)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	return &rtpStream{m: m, conn: conn, rtcpConn: rtcpConn}, nil
}

type rtpStream struct {
	m              *RTPMedia
	conn, rtcpConn *net.UDPConn
	// speaker and far carry tones into what the door plays and what it
	// sends, so that both sides hear a door-open confirmation.
	speaker, far tone.Overlay

	mu   sync.Mutex
	rang bool // this stream started the ringback
	sess *media.Session
	// next is a change of media that came before Run set up sess.
	next *media.Update
}

// Update moves the running call's media to ans, the call's new
// offer/answer result: a new remote address, codec or hold direction.
func (s *rtpStream) Update(ans sipagent.MediaAnswer) error {
	u, err := mediaUpdate(ans)
	if err != nil {
		return err
	}
	s.mu.Lock()
	sess := s.sess
	if sess == nil {
		s.next = &u
	}
	s.mu.Unlock()
	if sess == nil {
		return nil
	}
	if err := sess.Update(u); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	return nil
}

// mediaUpdate translates a negotiated answer into a media.Update.
func mediaUpdate(ans sipagent.MediaAnswer) (media.Update, error) {
	dir, err := mediaDirection(ans.Direction)
	if err != nil {
		return media.Update{}, err
	}
	codec, ok := media.CodecByName(ans.Codec.Name)
	if !ok {
		return media.Update{}, fmt.Errorf("device: negotiated codec %q is not supported", ans.Codec.Name)
	}
	codec.PayloadType = ans.Codec.PayloadType
	keys, err := mediaSRTP(ans.SRTP)
	if err != nil {
		return media.Update{}, err
	}
	u := media.Update{Codec: codec, DTMFPayloadType: ans.DTMFPayloadType, Direction: dir, SRTP: keys}
	// An unspecified address (old-style hold) keeps the last one.
	if ans.Remote.IsValid() && !ans.Remote.Addr().IsUnspecified() {
		u.Remote = ans.Remote
	}
	return u, nil
}

// mediaSRTP maps the call's SDES keying to media's; no suite is plain RTP.
func mediaSRTP(k sipagent.SRTPKeys) (media.SRTP, error) {
	var suite media.SRTPSuite
	switch k.Suite {
	case "":
		return media.SRTP{}, nil
	case sipagent.SuiteAES128SHA1_80:
		suite = media.AESCM128HMACSHA1_80
	case sipagent.SuiteAES128SHA1_32:
		suite = media.AESCM128HMACSHA1_32
	default:
		return media.SRTP{}, fmt.Errorf("device: negotiated srtp suite %q is not supported", k.Suite)
	}
	return media.SRTP{Suite: suite, Local: k.Local, Remote: k.Remote}, nil
}

// mediaDirection maps sipagent's direction, from our side, to media's.
func mediaDirection(d string) (media.Direction, error) {
	switch d {
	case "", "sendrecv":
		return media.SendRecv, nil
	case "sendonly":
		return media.SendOnly, nil
	case "recvonly":
		return media.RecvOnly, nil
	case "inactive":
		return media.Inactive, nil
	}
	return 0, fmt.Errorf("device: unknown media direction %q", d)
}

func (s *rtpStream) LocalAddr() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (s *rtpStream) Close() error {
	s.mu.Lock()
	rang := s.rang
	s.mu.Unlock()
	if rang {
		s.m.local.stop()
	}
	return s.closeConns()
}

func (s *rtpStream) closeConns() error {
	return errors.Join(s.conn.Close(), s.rtcpConn.Close())
}

// Stats reports the call's RTP and RTCP figures once Run set it up.
func (s *rtpStream) Stats() (media.Stats, bool) {
	s.mu.Lock()
	sess := s.sess
	s.mu.Unlock()
	if sess == nil {
		return media.Stats{}, false
	}
	return sess.Stats(), true
}

// PlayTone mixes a tone into both directions of a running call.
func (s *rtpStream) PlayTone(spec tone.Spec) error {
	spk, err := tone.New(spec)
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	far, err := tone.New(spec)
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	s.speaker.Play(spk)
	s.far.Play(far)
	return nil
}

// StartRingback plays the ringback tone on the door's speaker until the
// call is answered or the stream closed.
func (s *rtpStream) StartRingback() {
	s.mu.Lock()
	s.rang = true
	s.mu.Unlock()
	s.m.local.play(s.m, s.m.Ringback, 0)
}

// Run opens the sound devices for the duration of the call.
func (s *rtpStream) Run(ctx context.Context, ans sipagent.MediaAnswer, onDigit func(rune)) error {
	s.m.local.stop()
	ptime := ans.Ptime
	if ptime == 0 {
		ptime = s.m.Ptime
	}
	codec, ok := media.CodecByName(ans.Codec.Name)
	if !ok {
		s.closeConns()
		return fmt.Errorf("device: negotiated codec %q is not supported", ans.Codec.Name)
	}
	codec.PayloadType = ans.Codec.PayloadType
	dir, err := mediaDirection(ans.Direction)
	if err != nil {
		s.closeConns()
		return err
	}
	keys, err := mediaSRTP(ans.SRTP)
	if err != nil {
		s.closeConns()
		return err
	}
	format, err := media.FormatForPtime(ptime)
	if err != nil {
		s.closeConns()
		return fmt.Errorf("device: %w", err)
	}
	var echo *dsp.EchoSuppressor
	if s.m.EchoSuppression {
		if echo, err = dsp.NewEchoSuppressor(dsp.DefaultEchoConfig()); err != nil {
			s.closeConns()
			return fmt.Errorf("device: %w", err)
		}
	}
	src, err := s.m.Backend.OpenSource(format)
	if err != nil {
		s.closeConns()
		return fmt.Errorf("device: open audio input: %w", err)
	}
	sink, err := s.m.Backend.OpenSink(format)
	if err != nil {
		src.Close()
		s.closeConns()
		return fmt.Errorf("device: open audio output: %w", err)
	}
	sess, err := media.NewSession(media.SessionConfig{
		Conn: s.conn, RTCPConn: s.rtcpConn, Remote: ans.Remote, Codec: codec, DTMFPayloadType: ans.DTMFPayloadType, Ptime: ptime, Direction: dir,
		Source: &micPath{Source: src, gain: s.m.MicGain, tones: &s.far, echo: echo},
		Sink:   &speakerPath{Sink: sink, gain: s.m.SpeakerGain, tones: &s.speaker, echo: echo},
		Jitter: s.m.Jitter, OnDigit: onDigit, SRTP: keys, Logger: s.m.Logger,
	})
	if err != nil {
		src.Close()
		sink.Close()
		s.closeConns()
		return fmt.Errorf("device: %w", err)
	}
	s.mu.Lock()
	s.sess = sess
	next := s.next
	s.next = nil
	s.mu.Unlock()
	if next != nil {
		if err := sess.Update(*next); err != nil {
			src.Close()
			sink.Close()
			s.closeConns()
			return fmt.Errorf("device: %w", err)
		}
	}
	err = sess.Run(ctx)
	return errors.Join(err, src.Close(), sink.Close())
}

// micPath applies the microphone gain and mixes tones meant for the far end.
type micPath struct {
	media.Source
	gain  dsp.Gain
	tones *tone.Overlay
	echo  *dsp.EchoSuppressor // nil: off
}

func (m *micPath) Read(frame []int16) error {
	if err := m.Source.Read(frame); err != nil {
		return err
	}
	if m.echo != nil {
		m.echo.Apply(frame)
	}
	m.gain.Apply(frame)
	m.tones.Mix(frame)
	return nil
}

// speakerPath mixes local tones into what the door plays, then applies the
// speaker gain.
type speakerPath struct {
	media.Sink
	gain  dsp.Gain
	tones *tone.Overlay
	echo  *dsp.EchoSuppressor // nil: off
}

func (p *speakerPath) Write(frame []int16) error {
	p.tones.Mix(frame)
	p.gain.Apply(frame)
	if p.echo != nil {
		p.echo.FarEnd(frame)
	}
	return p.Sink.Write(frame)
}
