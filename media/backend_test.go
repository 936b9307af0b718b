package media

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/internal/clock/clocktest"
	"intercom/media/measure"
	"intercom/media/wav"
)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

var fmt20ms = Format{SampleRate: 8000, FrameSamples: 160}

func TestBackendsRegistered(t *testing.T) {
	got := Backends()
	if !slices.Contains(got, "file") || !slices.Contains(got, "null") || !slices.IsSorted(got) {
		t.Fatalf("Backends() = %v", got)
	}
	_, err := NewBackend("nope", BackendConfig{})
	if err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "null") {
		t.Fatalf("err = %v, want it to name the backend and list the known ones", err)
	}
}

func TestFormatForPtime(t *testing.T) {
	f, err := FormatForPtime(20 * time.Millisecond)
	if err != nil || f != fmt20ms || f.FrameDuration() != 20*time.Millisecond {
		t.Fatalf("FormatForPtime(20ms) = %+v, %v", f, err)
	}
	for _, p := range []time.Duration{0, -time.Millisecond, 100 * time.Microsecond, 1000100 * time.Nanosecond} {
		if _, err := FormatForPtime(p); err == nil {
			t.Errorf("FormatForPtime(%v) succeeded", p)
		}
	}
}

// advance keeps moving clk by step whenever something waits on it, until
// the test ends.
func advance(t *testing.T, clk *clocktest.Fake, step time.Duration) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if clk.Pending() > 0 {
				clk.Advance(step)
			} else {
				time.Sleep(50 * time.Microsecond)
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
}

func TestPacerSteadySchedule(t *testing.T) {
	clk := clocktest.New(epoch)
	p := newPacer(clk, 8000)
	if err := p.wait(160); err != nil { // the first frame is due at once
		t.Fatal(err)
	}
	if clk.Pending() != 0 {
		t.Fatal("first wait armed a timer")
	}
	done := make(chan error)
	go func() { done <- p.wait(160) }()
	clk.WaitForTimers(1)
	clk.Advance(19 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("second frame released after 19ms (err %v)", err)
	default:
	}
	clk.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A caller that comes back 5ms late gets the next frame only 15ms
	// later: the schedule holds, it does not slide.
	clk.Advance(5 * time.Millisecond)
	go func() { done <- p.wait(160) }()
	clk.WaitForTimers(1)
	clk.Advance(14 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("released before its slot")
	default:
	}
	clk.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Far behind (a stalled caller): restart the schedule, no burst.
	clk.Advance(time.Second)
	if err := p.wait(160); err != nil {
		t.Fatal(err)
	}
	go func() { done <- p.wait(160) }()
	clk.WaitForTimers(1)
	clk.Advance(20 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPacerCloseUnblocks(t *testing.T) {
	clk := clocktest.New(epoch)
	b, err := NewBackend("null", BackendConfig{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	src, err := b.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]int16, 160)
	frame[0] = 7
	if err := src.Read(frame); err != nil || frame[0] != 0 {
		t.Fatalf("Read = %v, frame[0] %d; want silence", err, frame[0])
	}
	done := make(chan error)
	go func() { done <- src.Read(frame) }()
	clk.WaitForTimers(1)
	src.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close = %v, want ErrClosed", err)
	}
	sink, err := b.OpenSink(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	sink.Close()
	if err := sink.Write(frame); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
	if _, err := b.OpenSource(Format{}); err == nil {
		t.Fatal("OpenSource with a zero format succeeded")
	}
}

func writeWAV(t *testing.T, samples []int16) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.wav")
	w, err := wav.Create(path, 8000)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(samples); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFileBackendErrors(t *testing.T) {
	dir := t.TempDir()
	stereo := filepath.Join(dir, "stereo.wav")
	// A 44-byte header claiming 2 channels at 8 kHz, then one frame.
	hdr, _ := os.ReadFile(writeWAV(t, []int16{1, 2}))
	hdr[22] = 2
	if err := os.WriteFile(stereo, hdr, 0o600); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.wav")
	if err := os.WriteFile(junk, []byte("not a wav"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		input, want string
	}{
		{filepath.Join(dir, "missing.wav"), "no such file"},
		{stereo, "2 channels, want 1"},
		{junk, "too short"},
	} {
		_, err := NewBackend("file", BackendConfig{Input: tc.input})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.input) {
			t.Errorf("NewBackend(file, %s) = %v, want it to name the file and %q", tc.input, err, tc.want)
		}
	}
	b, err := NewBackend("file", BackendConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.OpenSource(fmt20ms); err == nil {
		t.Error("OpenSource without an input path succeeded")
	}
	if _, err := b.OpenSink(fmt20ms); err == nil {
		t.Error("OpenSink without an output path succeeded")
	}
	b, err = NewBackend("file", BackendConfig{Output: filepath.Join(dir, "no", "such", "dir.wav")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.OpenSink(fmt20ms); err == nil {
		t.Error("OpenSink into a missing directory succeeded")
	}
}

func TestFileSourceLoops(t *testing.T) {
	clk := clocktest.New(epoch)
	advance(t, clk, 5*time.Millisecond)
	path := writeWAV(t, []int16{1, 2, 3, 4, 5})
	b, err := NewBackend("file", BackendConfig{Input: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	src, err := b.OpenSource(Format{SampleRate: 8000, FrameSamples: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var got []int16
	frame := make([]int16, 4)
	for range 3 {
		if err := src.Read(frame); err != nil {
			t.Fatal(err)
		}
		got = append(got, frame...)
	}
	want := []int16{1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2}
	if !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	if _, err := b.OpenSource(Format{SampleRate: 16000, FrameSamples: 4}); err == nil || !strings.Contains(err.Error(), "8000 Hz") {
		t.Fatalf("OpenSource at 16 kHz = %v", err)
	}
}

// TestFileSourceReadsAhead reads a file longer than the read-ahead across
// refills and the loop back to its start.
func TestFileSourceReadsAhead(t *testing.T) {
	clk := clocktest.New(epoch)
	advance(t, clk, 20*time.Millisecond)
	in := make([]int16, readAhead*3/4+3) // 1.5 reads, and an odd frame count
	for i := range in {
		in[i] = int16(i)
	}
	b, err := NewBackend("file", BackendConfig{Input: writeWAV(t, in), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	src, err := b.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	frame := make([]int16, 160)
	for n := range 2 * len(in) / 160 {
		if err := src.Read(frame); err != nil {
			t.Fatal(err)
		}
		for j, v := range frame {
			if want := in[(n*160+j)%len(in)]; v != want {
				t.Fatalf("frame %d sample %d = %d, want %d", n, j, v, want)
			}
		}
	}
}

func TestFileSinkRoundTrip(t *testing.T) {
	clk := clocktest.New(epoch)
	advance(t, clk, 10*time.Millisecond)
	out := filepath.Join(t.TempDir(), "out.wav")
	b, err := NewBackend("file", BackendConfig{Output: out, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	// An existing file is truncated, not appended to.
	if err := os.WriteFile(out, make([]byte, 100000), 0o600); err != nil {
		t.Fatal(err)
	}
	sink, err := b.OpenSink(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]int16, 160)
	var want []int16
	for i := range 60 { // 1.2 s: past the once-a-second header refresh
		for j := range frame {
			frame[j] = int16(i*160 + j)
		}
		want = append(want, frame...)
		if err := sink.Write(frame); err != nil {
			t.Fatal(err)
		}
		if i == 50 {
			// During the call a reader already sees a valid file with
			// the first second of audio.
			got, rate, err := wav.ReadFile(out)
			if err != nil || rate != 8000 || len(got) != 8000 || !slices.Equal(got, want[:8000]) {
				t.Fatalf("mid-call read: %d samples at %d Hz, %v", len(got), rate, err)
			}
		}
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	got, rate, err := wav.ReadFile(out)
	if err != nil || rate != 8000 || !slices.Equal(got, want) {
		t.Fatalf("read %d samples at %d Hz, %v; want %d", len(got), rate, err, len(want))
	}
	if err := sink.Write(frame); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
}

// TestFileSourceReadsSoxWAV checks the reader against the files the
// end-to-end tests make with sox.
func TestFileSourceReadsSoxWAV(t *testing.T) {
	soxPath, err := exec.LookPath("sox")
	if err != nil {
		t.Skip("sox not installed")
	}
	path := filepath.Join(t.TempDir(), "tone.wav")
	if out, err := exec.Command(soxPath, "-n", "-r", "8000", "-c", "1", "-b", "16", path, "synth", "0.5", "sine", "440").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v\n%s", err, out)
	}
	clk := clocktest.New(epoch)
	advance(t, clk, 20*time.Millisecond)
	b, err := NewBackend("file", BackendConfig{Input: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	src, err := b.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	samples := make([]int16, 0, 4000)
	frame := make([]int16, 160)
	for range 25 {
		if err := src.Read(frame); err != nil {
			t.Fatal(err)
		}
		samples = append(samples, frame...)
	}
	if l := measure.Goertzel(samples, 8000, 440); l < 0.5 {
		t.Fatalf("level at 440 Hz %.3f, want a loud tone", l)
	}
}

// openStreams opens b's source and sink in format f; both close when the
// test ends.
func openStreams(t testing.TB, b Backend, f Format) (Source, Sink) {
	t.Helper()
	src, err := b.OpenSource(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	sink, err := b.OpenSink(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	return src, sink
}
