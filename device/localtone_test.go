package device

import (
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"intercom/media"
	"intercom/media/measure"
	"intercom/media/tone"
)

// recordingBackend keeps what every sink was given, one slice per sink.
type recordingBackend struct {
	mu    sync.Mutex
	sinks [][]int16
	open  int
	wrote chan struct{}
}

type recordingSink struct {
	b *recordingBackend
	i int
}

func (b *recordingBackend) OpenSource(media.Format) (media.Source, error) { return nil, nil }
func (b *recordingBackend) OpenSink(media.Format) (media.Sink, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open > 0 {
		panic("two sinks open at once")
	}
	b.open++
	b.sinks = append(b.sinks, nil)
	return &recordingSink{b: b, i: len(b.sinks) - 1}, nil
}

func (s *recordingSink) Write(frame []int16) error {
	s.b.mu.Lock()
	s.b.sinks[s.i] = append(s.b.sinks[s.i], frame...)
	s.b.mu.Unlock()
	select {
	case s.b.wrote <- struct{}{}:
	default:
	}
	return nil
}

func (s *recordingSink) Close() error {
	s.b.mu.Lock()
	s.b.open--
	s.b.mu.Unlock()
	return nil
}

func (b *recordingBackend) recorded(i int) []int16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i >= len(b.sinks) {
		return nil
	}
	return append([]int16(nil), b.sinks[i]...)
}

func TestAnnouncePlaysAOneShotToneToTheEnd(t *testing.T) {
	b := &recordingBackend{wrote: make(chan struct{}, 1)}
	m := &RTPMedia{Backend: b, Ptime: 20 * time.Millisecond, Logger: discard()}
	m.Announce(tone.DoorOpened(), time.Minute)
	m.local.mu.Lock()
	done := m.local.done
	m.local.mu.Unlock()
	<-done // a one-shot tone ends by itself
	got := b.recorded(0)
	if len(got) < 8000*300/1000 || len(got) > 8000*400/1000 {
		t.Fatalf("door-opened tone lasted %d samples", len(got))
	}
	if lvl := measure.Goertzel(got[:800], 8000, 880); lvl < 0.1 {
		t.Fatalf("880 Hz level %.3f in the first beep", lvl)
	}
}

func TestRingbackStopsBeforeTheCallsSinkOpens(t *testing.T) {
	b := &recordingBackend{wrote: make(chan struct{}, 1)}
	ringback, err := tone.ParseCadence("425@1s/4s")
	if err != nil {
		t.Fatal(err)
	}
	m := &RTPMedia{Backend: b, Ptime: 20 * time.Millisecond, Ringback: ringback, Logger: discard()}
	st, err := m.Open(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	st.StartRingback()
	for len(b.recorded(0)) < 8000 {
		<-b.wrote
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	open := b.open
	b.mu.Unlock()
	if open != 0 {
		t.Fatal("ringback sink still open after the stream closed")
	}
	if lvl := measure.Goertzel(b.recorded(0)[:8000], 8000, 425); lvl < 0.1 {
		t.Fatalf("425 Hz level %.3f in the first second of ringback", lvl)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
