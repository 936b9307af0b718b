package media

import (
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"intercom/internal/clock/clocktest"
)

var errGone = errors.New("device gone")

// flakyBackend is a sound card that can be unplugged: its streams fail
// once unplugged, and opening fails while it stays unplugged, or for a
// number of attempts.
type flakyBackend struct {
	clk *clocktest.Fake

	mu        sync.Mutex
	failOpens int         // opens still to fail; -1 means all
	opens     []time.Time // when each open was tried
	streams   []*flakyStream
}

type flakyStream struct {
	fail   atomic.Bool
	closed atomic.Bool
	xruns  atomic.Uint64
	got    atomic.Int64 // frames written
}

func (s *flakyStream) transfer(frame []int16, input bool) error {
	switch {
	case s.closed.Load():
		return ErrClosed
	case s.fail.Load():
		return errGone
	}
	if input {
		for i := range frame {
			frame[i] = 1000 // what the device hears, unlike the stand-in silence
		}
	} else {
		s.got.Add(1)
	}
	return nil
}

func (s *flakyStream) Close() error { s.closed.Store(true); return nil }

type flakySource struct{ *flakyStream }

func (s flakySource) Read(frame []int16) error { return s.transfer(frame, true) }
func (s flakySource) Overflows() uint64        { return s.xruns.Load() }

type flakySink struct{ *flakyStream }

func (s flakySink) Write(frame []int16) error { return s.transfer(frame, false) }
func (s flakySink) Underflows() uint64        { return s.xruns.Load() }

func (b *flakyBackend) open() (*flakyStream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opens = append(b.opens, b.clk.Now())
	if b.failOpens != 0 {
		if b.failOpens > 0 {
			b.failOpens--
		}
		return nil, errGone
	}
	s := &flakyStream{}
	b.streams = append(b.streams, s)
	return s, nil
}

func (b *flakyBackend) OpenSource(Format) (Source, error) {
	s, err := b.open()
	if err != nil {
		return nil, err
	}
	return flakySource{s}, nil
}

func (b *flakyBackend) OpenSink(Format) (Sink, error) {
	s, err := b.open()
	if err != nil {
		return nil, err
	}
	return flakySink{s}, nil
}

// unplug makes the current stream fail and the next n opens fail (-1: all).
func (b *flakyBackend) unplug(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failOpens = n
	if len(b.streams) > 0 {
		b.streams[len(b.streams)-1].fail.Store(true)
	}
}

// openTimes returns the opens tried, as offsets from start.
func (b *flakyBackend) openTimes(start time.Time) []time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var d []time.Duration
	for _, t := range b.opens {
		d = append(d, t.Sub(start))
	}
	return d
}

var outageStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newFlaky(t *testing.T) (*flakyBackend, *ResilientBackend, *clocktest.Fake) {
	clk := clocktest.New(outageStart)
	fb := &flakyBackend{clk: clk}
	return fb, Resilient(fb, ResilientConfig{Clock: clk}), clk
}

// frameAt is one frame read and the fake time it came at.
type frameAt struct {
	at     time.Duration
	device bool // the device's audio, not stand-in silence
}

// readFrames reads n frames of 20 ms from src on the fake clock, advancing
// the clock by a frame whenever the reader waits for one, as a sound card
// would make it.
func readFrames(t *testing.T, clk *clocktest.Fake, src Source, n int) []frameAt {
	t.Helper()
	type result struct {
		f   frameAt
		err error
	}
	ch := make(chan result, n)
	go func() {
		frame := make([]int16, 160)
		for range n {
			err := src.Read(frame)
			ch <- result{frameAt{clk.Now().Sub(outageStart), frame[0] == 1000}, err}
			if err != nil {
				return
			}
			if frame[0] != 1000 && slices.ContainsFunc(frame, func(x int16) bool { return x != 0 }) {
				t.Error("a stand-in frame is not silence")
			}
		}
	}()
	var got []frameAt
	for len(got) < n {
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("Read after %d frames: %v", len(got), r.err)
			}
			got = append(got, r.f)
		default:
			if clk.Pending() > 0 {
				clk.Advance(20 * time.Millisecond)
			} else {
				runtime.Gosched()
			}
		}
	}
	return got
}

func TestResilientSourceSurvivesUnplug(t *testing.T) {
	fb, rb, clk := newFlaky(t)
	src, err := rb.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got := readFrames(t, clk, src, 1)
	if !got[0].device {
		t.Fatal("first frame is not the device's")
	}
	fb.streams[0].xruns.Store(3)
	readFrames(t, clk, src, 1)
	if s := rb.Stats(); s != (ResilientStats{Xruns: 3}) {
		t.Errorf("after 3 overflows: %+v", s)
	}

	// Unplugged: two reopens fail, the third works. Attempts come at
	// 100, 300 and 700 ms (back-off doubling from 100 ms).
	fb.unplug(2)
	got = readFrames(t, clk, src, 50)
	if got[0].device {
		t.Error("a frame from the failed stream")
	}
	first := slices.IndexFunc(got, func(f frameAt) bool { return f.device })
	if first < 0 || got[first].at != 700*time.Millisecond {
		t.Fatalf("the device came back at frame %d (%+v), want at 700 ms", first, got)
	}
	// The stand-in is paced: a frame every 20 ms, no burst, no gap.
	for i := 1; i < first; i++ {
		if d := got[i].at - got[i-1].at; d != 20*time.Millisecond {
			t.Fatalf("stand-in frames %d and %d are %v apart", i-1, i, d)
		}
	}
	for _, f := range got[first:] {
		if !f.device {
			t.Fatal("silence after the device came back")
		}
	}
	if want := []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond}; !slices.Equal(fb.openTimes(outageStart), want) {
		t.Errorf("opens at %v, want %v", fb.openTimes(outageStart), want)
	}
	if !fb.streams[0].closed.Load() {
		t.Error("the failed stream was not closed")
	}
	if s := rb.Stats(); s != (ResilientStats{Xruns: 3, Failures: 3, Reopens: 1}) {
		t.Errorf("stats %+v, want 3 xruns, 3 failures, 1 reopen", s)
	}
	// The new stream's xruns count from its own zero.
	fb.streams[1].xruns.Store(2)
	readFrames(t, clk, src, 1)
	if s := rb.Stats(); s.Xruns != 5 {
		t.Errorf("xruns %d, want 5", s.Xruns)
	}

	// A second failure starts the back-off from 100 ms again.
	fb.unplug(0)
	before := clk.Now().Sub(outageStart)
	got = readFrames(t, clk, src, 10)
	if first := slices.IndexFunc(got, func(f frameAt) bool { return f.device }); first < 0 || got[first].at-before != 100*time.Millisecond {
		t.Errorf("second outage: device back at frame %d %+v, want 100 ms after %v", first, got, before)
	}
	if s := rb.Stats(); s.Reopens != 2 || s.Failures != 4 || s.Down != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestResilientKeepsRetryingAtTheCap(t *testing.T) {
	fb, rb, clk := newFlaky(t)
	src, err := rb.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fb.unplug(-1)
	got := readFrames(t, clk, src, 30*50) // 30 s
	if slices.ContainsFunc(got, func(f frameAt) bool { return f.device }) {
		t.Fatal("device audio from an unplugged device")
	}
	if got[len(got)-1].at != got[0].at+(30*50-1)*20*time.Millisecond {
		t.Errorf("30 s of stand-in frames span %v: not paced", got[len(got)-1].at-got[0].at)
	}
	ms := time.Millisecond
	want := []time.Duration{0, 100 * ms, 300 * ms, 700 * ms, 1500 * ms, 3100 * ms, 6300 * ms, 11300 * ms, 16300 * ms, 21300 * ms, 26300 * ms}
	if opens := fb.openTimes(outageStart); !slices.Equal(opens, want) {
		t.Errorf("opens at %v, want %v", opens, want)
	}
	if s := rb.Stats(); s != (ResilientStats{Failures: 11, Down: 1}) {
		t.Errorf("stats %+v, want 11 failures and 1 stream down", s)
	}
}

func TestResilientCloseDuringOutage(t *testing.T) {
	fb, rb, clk := newFlaky(t)
	src, err := rb.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	fb.unplug(-1)
	readFrames(t, clk, src, 3)
	// A Read waiting for its stand-in frame returns at Close.
	errs := make(chan error, 1)
	go func() { errs <- src.Read(make([]int16, 160)) }()
	clk.WaitForTimers(1)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !errors.Is(err, ErrClosed) {
		t.Errorf("Read during Close: %v, want ErrClosed", err)
	}
	opens := len(fb.openTimes(outageStart))
	clk.Advance(time.Minute)
	if err := src.Read(make([]int16, 160)); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if n := len(fb.openTimes(outageStart)); n != opens {
		t.Errorf("%d opens after Close", n-opens)
	}
	if err := src.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if s := rb.Stats(); s.Down != 0 {
		t.Errorf("a closed stream counts as down: %+v", s)
	}
}

func TestResilientStartsInOutageWhenOpenFails(t *testing.T) {
	fb, rb, clk := newFlaky(t)
	fb.failOpens = 1
	src, err := rb.OpenSource(fmt20ms)
	if err != nil {
		t.Fatalf("OpenSource with the device missing: %v, want a source that stands in", err)
	}
	defer src.Close()
	if s := rb.Stats(); s != (ResilientStats{Failures: 1, Down: 1}) {
		t.Errorf("stats %+v", s)
	}
	// The stand-in frame due at 100 ms comes first; the next Read opens
	// the device.
	got := readFrames(t, clk, src, 10)
	if got[5].device || got[5].at != 100*time.Millisecond || !got[6].device || got[6].at != 100*time.Millisecond {
		t.Errorf("frames %+v, want silence until 100 ms and the device after", got)
	}
	if _, err := rb.OpenSource(Format{}); err == nil {
		t.Error("OpenSource accepted an empty format")
	}
	if _, err := rb.OpenSink(Format{}); err == nil {
		t.Error("OpenSink accepted an empty format")
	}
}

func TestResilientSink(t *testing.T) {
	fb, rb, clk := newFlaky(t)
	sink, err := rb.OpenSink(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]int16, 160)
	if err := sink.Write(frame); err != nil {
		t.Fatal(err)
	}
	fb.streams[0].xruns.Store(1)
	fb.unplug(1)
	// Failing Write and one more: discarded, paced, no error.
	done := make(chan error)
	go func() {
		for range 20 {
			if err := sink.Write(frame); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		default:
			if clk.Pending() > 0 {
				clk.Advance(20 * time.Millisecond)
			} else {
				runtime.Gosched()
			}
			continue
		}
		break
	}
	// The first Write of the outage sees the failure; reopens at 100 ms
	// (fails) and 300 ms (works).
	if len(fb.streams) != 2 || fb.streams[1].got.Load() == 0 {
		t.Fatalf("%d streams; the reopened one got %d frames", len(fb.streams), fb.streams[len(fb.streams)-1].got.Load())
	}
	if got := fb.streams[0].got.Load(); got != 1 {
		t.Errorf("first stream got %d frames, want 1", got)
	}
	if s := rb.Stats(); s != (ResilientStats{Failures: 2, Reopens: 1}) {
		t.Errorf("stats %+v", s)
	}
	// Xruns are counted after a successful Write.
	fb.streams[1].xruns.Store(4)
	if err := sink.Write(frame); err != nil {
		t.Fatal(err)
	}
	if s := rb.Stats(); s.Xruns != 4 {
		t.Errorf("xruns %d, want 4", s.Xruns)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if !fb.streams[1].closed.Load() {
		t.Error("Close did not close the device stream")
	}
	if err := sink.Write(frame); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
}

func TestResilientDefaults(t *testing.T) {
	rb := Resilient(&flakyBackend{}, ResilientConfig{MinBackoff: 10 * time.Second, MaxBackoff: time.Second})
	if rb.cfg.MaxBackoff != 10*time.Second || rb.cfg.Clock == nil || rb.cfg.Logger == nil {
		t.Errorf("config %+v: a cap below the start must rise to it, and nil clock and logger get defaults", rb.cfg)
	}
	rb = Resilient(&flakyBackend{}, ResilientConfig{})
	if rb.cfg.MinBackoff != DefaultMinBackoff || rb.cfg.MaxBackoff != DefaultMaxBackoff {
		t.Errorf("defaults %v..%v", rb.cfg.MinBackoff, rb.cfg.MaxBackoff)
	}
}
