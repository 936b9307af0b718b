package media

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"intercom/internal/clock"
)

// Default back-off between attempts to reopen a failed device.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// ResilientConfig tunes Resilient.
type ResilientConfig struct {
	// MinBackoff is the wait before the first attempt to reopen a failed
	// stream; each failed attempt doubles it, up to MaxBackoff. Zero
	// values mean DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	Clock                  clock.Clock  // paces the stand-in audio and the retries; nil => clock.Real{}
	Logger                 *slog.Logger // nil => discard
}

// ResilientStats counts, over every stream of a ResilientBackend, what
// went wrong with the device.
type ResilientStats struct {
	Xruns    uint64 // overflows and underflows the streams reported and survived
	Failures uint64 // Read, Write or open errors, including failed reopen attempts
	Reopens  uint64 // streams reopened after a failure
	Down     int    // streams in an outage now, standing in with silence
}

// ResilientBackend keeps a call's audio going through device failures: a
// stream whose Read or Write fails (a fatal xrun, a USB sound card
// unplugged) is closed and reopened with capped exponential back-off, and
// meanwhile Read delivers silence and Write discards, both paced by the
// clock like a sound card. A call using it never sees a device error.
type ResilientBackend struct {
	b   Backend
	cfg ResilientConfig

	xruns, failures, reopens atomic.Uint64
	down                     atomic.Int64
}

var _ Backend = (*ResilientBackend)(nil)

// Resilient wraps b.
func Resilient(b Backend, cfg ResilientConfig) *ResilientBackend {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &ResilientBackend{b: b, cfg: cfg}
}

// Stats returns the counters so far; it is safe to call at any time.
func (r *ResilientBackend) Stats() ResilientStats {
	return ResilientStats{
		Xruns:    r.xruns.Load(),
		Failures: r.failures.Load(),
		Reopens:  r.reopens.Load(),
		Down:     int(r.down.Load()),
	}
}

// OpenSource opens a source of b. If the device cannot be opened now, the
// source starts in an outage, giving silence while it retries: a door
// station must take a call even when its microphone has gone.
func (r *ResilientBackend) OpenSource(f Format) (Source, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	s := r.newStream(f, "input", func() (io.Closer, error) { return r.b.OpenSource(f) })
	return &resilientSource{s}, nil
}

// OpenSink opens a sink of b, starting in an outage (discarding) if the
// device cannot be opened now.
func (r *ResilientBackend) OpenSink(f Format) (Sink, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	s := r.newStream(f, "output", func() (io.Closer, error) { return r.b.OpenSink(f) })
	return &resilientSink{s}, nil
}

func (r *ResilientBackend) newStream(f Format, dir string, open func() (io.Closer, error)) *resilientStream {
	s := &resilientStream{r: r, dir: dir, open: open, pace: newPacer(r.cfg.Clock, f.SampleRate), backoff: r.cfg.MinBackoff}
	cur, err := open()
	if err != nil {
		s.mu.Lock()
		s.failLocked(nil, fmt.Errorf("media: open %s: %w", dir, err))
		s.mu.Unlock()
		return s
	}
	s.setLocked(cur)
	return s
}

// overflowCounter and underflowCounter are the xrun counts a device
// stream may keep (the portaudio backend's do).
type (
	overflowCounter  interface{ Overflows() uint64 }
	underflowCounter interface{ Underflows() uint64 }
)

// resilientStream is what a resilient source and sink share: the device
// stream while it works, and the outage state while it does not.
type resilientStream struct {
	r    *ResilientBackend
	dir  string
	open func() (io.Closer, error)
	pace *pacer // paces the stand-in audio during an outage

	// mu guards the fields below against Close; Read and Write do their
	// I/O outside it, because a device stream's Close may run during its
	// Read or Write.
	mu      sync.Mutex
	closed  bool
	cur     io.Closer     // the device stream; nil during an outage
	xruns   func() uint64 // cur's xrun count, or nil
	seen    uint64        // xruns of cur already counted
	retryAt time.Time     // when the next reopen attempt is due
	backoff time.Duration // the wait after the next failed attempt
}

// setLocked makes c the working device stream.
func (s *resilientStream) setLocked(c io.Closer) {
	s.cur, s.seen, s.xruns = c, 0, nil
	switch x := c.(type) {
	case overflowCounter:
		s.xruns = x.Overflows
	case underflowCounter:
		s.xruns = x.Underflows
	}
}

// stream returns the device stream to use for this frame, after trying to
// reopen it if an attempt is due; nil means stand in. err is ErrClosed
// once Close has been called.
func (s *resilientStream) stream() (io.Closer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.cur != nil || s.r.cfg.Clock.Now().Before(s.retryAt) {
		return s.cur, nil
	}
	c, err := s.open()
	if err != nil {
		s.r.failures.Add(1)
		s.r.cfg.Logger.Debug("media: reopen failed", "dir", s.dir, "error", err, "retry_in", s.backoff)
		s.scheduleLocked()
		return nil, nil
	}
	s.setLocked(c)
	s.backoff = s.r.cfg.MinBackoff
	s.r.reopens.Add(1)
	s.r.down.Add(-1)
	s.r.cfg.Logger.Info("media: audio device reopened", "dir", s.dir)
	return c, nil
}

// scheduleLocked sets the next attempt one back-off from now and doubles
// the back-off, up to the cap.
func (s *resilientStream) scheduleLocked() {
	s.retryAt = s.r.cfg.Clock.Now().Add(s.backoff)
	s.backoff = min(2*s.backoff, s.r.cfg.MaxBackoff)
}

// countXruns adds what the device stream counted since the last frame.
// Only the Read or Write goroutine sets and calls xruns, so it needs no
// lock.
func (s *resilientStream) countXruns() {
	if s.xruns == nil {
		return
	}
	if n := s.xruns(); n > s.seen {
		s.r.xruns.Add(n - s.seen)
		s.seen = n
	}
}

// fail closes c after err and starts an outage; it returns ErrClosed if
// Close came first (and is why c failed).
func (s *resilientStream) fail(c io.Closer, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.failLocked(c, err)
	return nil
}

// failLocked starts an outage after err; c, if any, is the failed stream.
func (s *resilientStream) failLocked(c io.Closer, err error) {
	s.r.failures.Add(1)
	s.r.down.Add(1)
	s.r.cfg.Logger.Warn("media: audio device failed; standing in with silence while reopening",
		"dir", s.dir, "error", err, "retry_in", s.backoff)
	if c != nil {
		if cerr := c.Close(); cerr != nil {
			s.r.cfg.Logger.Debug("media: close failed stream", "dir", s.dir, "error", cerr)
		}
	}
	s.cur, s.xruns = nil, nil
	// The stand-in pacing starts afresh from now, not from the last
	// outage's schedule.
	s.pace.start = time.Time{}
	s.scheduleLocked()
}

func (s *resilientStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.pace.close()
	if s.cur == nil {
		s.r.down.Add(-1)
		return nil
	}
	return s.cur.Close()
}

type resilientSource struct{ *resilientStream }

var _ Source = (*resilientSource)(nil)

// Read reads from the device, or gives a frame of paced silence while the
// device is down.
func (s *resilientSource) Read(frame []int16) error {
	c, err := s.stream()
	if err != nil {
		return err
	}
	if c != nil {
		ioErr := c.(Source).Read(frame)
		if ioErr == nil {
			s.countXruns()
			return nil
		}
		if err := s.fail(c, ioErr); err != nil {
			return err
		}
	}
	clear(frame)
	return s.pace.wait(len(frame))
}

type resilientSink struct{ *resilientStream }

var _ Sink = (*resilientSink)(nil)

// Write plays to the device, or discards at the device's pace while it is
// down.
func (s *resilientSink) Write(frame []int16) error {
	c, err := s.stream()
	if err != nil {
		return err
	}
	if c != nil {
		ioErr := c.(Sink).Write(frame)
		if ioErr == nil {
			s.countXruns()
			return nil
		}
		if err := s.fail(c, ioErr); err != nil {
			return err
		}
	}
	return s.pace.wait(len(frame))
}
