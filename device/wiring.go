package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"intercom/media"
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
				d = RegistrationEvent{State: ev.State, Registrar: ev.Registrar, Expires: ev.Expires, Err: ev.Err}
			case sipagent.IncomingCall:
				d = IncomingEvent{Call: ev.Call, From: ev.From, Source: ev.Source, FromProxy: ev.FromProxy}
			case sipagent.CallEnded:
				d = EndedEvent{Call: ev.Call, Reason: ev.Reason}
			case sipagent.DTMF:
				d = InfoDigitEvent{Call: ev.Call, Digit: ev.Digit}
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
	Ptime  time.Duration
	Logger *slog.Logger
}

var _ Media = (*RTPMedia)(nil)

// Open implements Media.
func (m *RTPMedia) Open(ip netip.Addr) (Stream, error) {
	conn, err := media.ListenRTP(ip)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	return &rtpStream{m: m, conn: conn}, nil
}

type rtpStream struct {
	m    *RTPMedia
	conn *net.UDPConn
}

func (s *rtpStream) LocalAddr() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (s *rtpStream) Close() error { return s.conn.Close() }

// Run opens the sound devices for the duration of the call.
func (s *rtpStream) Run(ctx context.Context, ans sipagent.MediaAnswer, onDigit func(rune)) error {
	ptime := ans.Ptime
	if ptime == 0 {
		ptime = s.m.Ptime
	}
	codec, ok := media.CodecByName(ans.Codec.Name)
	if !ok {
		s.conn.Close()
		return fmt.Errorf("device: negotiated codec %q is not supported", ans.Codec.Name)
	}
	codec.PayloadType = ans.Codec.PayloadType
	format := media.Format{SampleRate: 8000, FrameSamples: int(ptime / (time.Second / 8000))}
	src, err := s.m.Backend.OpenSource(format)
	if err != nil {
		s.conn.Close()
		return fmt.Errorf("device: open audio input: %w", err)
	}
	sink, err := s.m.Backend.OpenSink(format)
	if err != nil {
		src.Close()
		s.conn.Close()
		return fmt.Errorf("device: open audio output: %w", err)
	}
	sess, err := media.NewSession(media.SessionConfig{
		Conn: s.conn, Remote: ans.Remote, Codec: codec, DTMFPayloadType: ans.DTMFPayloadType,
		Ptime: ptime, Source: src, Sink: sink, Jitter: s.m.Jitter, OnDigit: onDigit, Logger: s.m.Logger,
	})
	if err != nil {
		src.Close()
		sink.Close()
		s.conn.Close()
		return fmt.Errorf("device: %w", err)
	}
	err = sess.Run(ctx)
	return errors.Join(err, src.Close(), sink.Close())
}
