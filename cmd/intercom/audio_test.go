package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/media"
	"intercom/media/measure"
	"intercom/media/wav"
)

var fmt20ms = media.Format{SampleRate: 8000, FrameSamples: 160}

// loopback is a sound card whose microphone hears its speaker after delay
// samples, both paced in real time from one start.
type loopback struct {
	delay    int
	failSink error

	mu    sync.Mutex
	start time.Time
	queue []int16
}

func (l *loopback) OpenSource(f media.Format) (media.Source, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.start = time.Now()
	l.queue = make([]int16, l.delay)
	return &loopStream{l: l, f: f}, nil
}

func (l *loopback) OpenSink(f media.Format) (media.Sink, error) {
	if l.failSink != nil {
		return nil, l.failSink
	}
	return &loopStream{l: l, f: f}, nil
}

type loopStream struct {
	l *loopback
	f media.Format
	n int // frames so far
}

// Read returns frame n once it has been captured, at the end of its time.
func (s *loopStream) Read(frame []int16) error {
	s.n++
	time.Sleep(time.Until(s.l.start.Add(time.Duration(s.n) * s.f.FrameDuration())))
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	clear(frame)
	if len(s.l.queue) >= len(frame) {
		copy(frame, s.l.queue)
		s.l.queue = s.l.queue[len(frame):]
	}
	return nil
}

// Write blocks until the previous frame has had its time.
func (s *loopStream) Write(frame []int16) error {
	time.Sleep(time.Until(s.l.start.Add(time.Duration(s.n) * s.f.FrameDuration())))
	s.n++
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	s.l.queue = append(s.l.queue, frame...)
	return nil
}

func (s *loopStream) Close() error { return nil }

func TestAudioTestRoundTrip(t *testing.T) {
	const delay = 100 * time.Millisecond
	res, err := audioTest(&loopback{delay: 800}, fmt20ms, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// The tone waits one frame in the sink before it is due.
	if !res.Heard || res.RoundTrip < delay || res.RoundTrip > delay+2*fmt20ms.FrameDuration() {
		t.Errorf("round trip %v (heard %v), want %v plus at most two frames", res.RoundTrip, res.Heard, delay)
	}
	if math.Abs(measure.DBFS(res.Tone)+6) > 0.5 || math.Abs(measure.DBFS(res.Peak)+6) > 0.5 {
		t.Errorf("tone %.1f dBFS, peak %.1f dBFS; want the -6 dBFS tone back", measure.DBFS(res.Tone), measure.DBFS(res.Peak))
	}
	want := leadIn + 300*time.Millisecond + maxRoundTrip
	if res.Recorded < want-2*fmt20ms.FrameDuration() || res.Recorded > want+2*fmt20ms.FrameDuration() {
		t.Errorf("recorded %v, want about %v", res.Recorded, want)
	}
}

func TestAudioTestDeviceError(t *testing.T) {
	bad := errors.New("no speaker")
	if _, err := audioTest(&loopback{failSink: bad}, fmt20ms, 100*time.Millisecond); !errors.Is(err, bad) {
		t.Errorf("audioTest with a failing sink: %v, want %v", err, bad)
	}
}

func TestAnalyse(t *testing.T) {
	start := time.Now()
	tone := func(freq float64, from, n int) []int16 {
		out := make([]int16, n)
		for i := from; i < n; i++ {
			out[i] = int16(0.1 * math.MaxInt16 * math.Sin(2*math.Pi*freq*float64(i)/8000))
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		samples []int16
		heard   bool
		rt      time.Duration
	}{
		// The tone was handed to the sink 0.1s after the first sample and
		// recorded 0.3s after it.
		{"tone after 0.3s", tone(testToneHz, 2400, 8000), true, 200 * time.Millisecond},
		{"another tone", tone(440, 0, 8000), false, 0},
		{"silence", make([]int16, 8000), false, 0},
		{"nothing", nil, false, 0},
	} {
		r := analyse(capture{samples: tc.samples, start: start}, 8000, start.Add(100*time.Millisecond))
		if r.Heard != tc.heard || (r.RoundTrip-tc.rt).Abs() > 2*time.Millisecond {
			t.Errorf("%s: heard %v, round trip %v; want %v, %v", tc.name, r.Heard, r.RoundTrip, tc.heard, tc.rt)
		}
		if r.Recorded != samplesDuration(len(tc.samples), 8000) {
			t.Errorf("%s: recorded %v", tc.name, r.Recorded)
		}
	}
}

func TestAudioCommand(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.wav"), filepath.Join(dir, "out.wav")
	w, err := wav.Create(in, 8000)
	if err != nil {
		t.Fatal(err)
	}
	samples := make([]int16, 8000)
	for i := range samples {
		samples[i] = int16(0.25 * math.MaxInt16 * math.Sin(2*math.Pi*440*float64(i)/8000))
	}
	if err := errors.Join(w.Write(samples), w.Close()); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "intercom.yaml")
	yaml := "device:\n  name: test\naudio:\n  backend: file\n  input: " + in + "\n  output: " + out + "\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	if err := run([]string{"audio", "test", "-config", cfg, "-duration", "200ms"}, &stdout, &stderr); err != nil {
		t.Fatalf("audio test: %v\n%s", err, stderr.String())
	}
	// The input is a -12 dBFS sine: its RMS is 3 dB lower.
	for _, want := range []string{"file backend: playing 1000 Hz at -6 dBFS for 200ms", "RMS -15.1 dBFS, peak -12.0 dBFS", "round trip: not measured"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("audio test output lacks %q:\n%s", want, stdout.String())
		}
	}
	// The speaker's WAV holds the tone after the lead-in.
	played, _, err := wav.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lead := int(leadIn.Seconds() * 8000)
	if len(played) < lead+1600 || measure.Goertzel(played[lead:lead+1600], 8000, testToneHz) < 0.45 ||
		measure.Goertzel(played[:lead], 8000, testToneHz) != 0 {
		t.Errorf("played %d samples, want silence then the tone", len(played))
	}

	for _, args := range [][]string{
		{"audio"},
		{"audio", "play"},
		{"audio", "devices", "extra"},
		{"audio", "test", "-duration", "0s"},
		{"audio", "test", "-duration", "2h"},
		{"audio", "test", "-config", cfg, "extra"},
		{"audio", "test", "-config", filepath.Join(dir, "missing.yaml")},
	} {
		var ue usageError
		if err := run(args, &stdout, &stderr); !errors.As(err, &ue) {
			t.Errorf("run %q: %v, want a usage error", args, err)
		}
	}
	// A device error is a runtime error (exit 1), not a usage error.
	if err := os.Remove(in); err != nil {
		t.Fatal(err)
	}
	var ue usageError
	if err := run([]string{"audio", "test", "-config", cfg, "-duration", "100ms"}, &stdout, &stderr); err == nil || errors.As(err, &ue) {
		t.Errorf("audio test without its input file: %v, want a runtime error", err)
	}
}

func TestPrintDevices(t *testing.T) {
	var b strings.Builder
	printDevices(&b, []media.AudioDevice{
		{Name: "default", HostAPI: "ALSA", MaxInputChannels: 32, MaxOutputChannels: 32, DefaultSampleRate: 44100, DefaultInput: true, DefaultOutput: true},
		{Name: "USB Audio: mic (hw:1,0)", HostAPI: "ALSA", MaxInputChannels: 1, DefaultSampleRate: 48000},
		{Name: "spk", HostAPI: "ALSA", MaxOutputChannels: 2, DefaultSampleRate: 48000, DefaultOutput: false},
	})
	want := `NAME                     HOST API  IN  OUT  RATE   DEFAULT
default                  ALSA      32  32   44100  input, output
USB Audio: mic (hw:1,0)  ALSA      1   0    48000  
spk                      ALSA      0   2    48000  
`
	if b.String() != want {
		t.Errorf("printDevices:\n%s\nwant:\n%s", b.String(), want)
	}
}
