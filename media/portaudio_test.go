//go:build cgo && !noportaudio && linux

package media

import (
	"errors"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/media/measure"
	"intercom/media/mediatest"
)

// These tests run PortAudio (ALSA host API) against a private PulseAudio
// server (see mediatest.Pulse): there is no sound card in CI.

// pulse is the server shared by the tests, started by the first one that
// needs it and stopped by TestMain.
var pulse struct {
	once   sync.Once
	err    error
	server *mediatest.Pulse
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pulse.server != nil {
		pulse.server.Stop()
	}
	os.Exit(code)
}

// needPulse starts the server once and points this process at it; it must
// run before InitPortAudio, which is when ALSA reads its configuration.
func needPulse(t *testing.T) {
	t.Helper()
	pulse.once.Do(func() {
		if pulse.server, pulse.err = mediatest.StartPulse(); pulse.err != nil {
			return
		}
		for _, kv := range pulse.server.Env() {
			k, v, _ := strings.Cut(kv, "=")
			if err := os.Setenv(k, v); err != nil {
				pulse.err = err
				return
			}
		}
	})
	if pulse.err != nil {
		mediatest.PulseFailed(t, pulse.err)
	}
}

// initPA initialises PortAudio for one test and terminates it after.
func initPA(t *testing.T) {
	t.Helper()
	terminate, err := InitPortAudio()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := terminate(); err != nil {
			t.Error(err)
		}
	})
}

func openPA(t *testing.T, in, out string) Backend {
	t.Helper()
	needPulse(t)
	initPA(t)
	b, err := NewBackend("portaudio", BackendConfig{Input: in, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPortAudioSourceHearsTheMicrophone(t *testing.T) {
	b := openPA(t, "default", "default")
	src, err := b.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	frame := make([]int16, fmt20ms.FrameSamples)
	var got []int16
	start := time.Now()
	for range 50 {
		if err := src.Read(frame); err != nil {
			t.Fatal(err)
		}
		got = append(got, frame...)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("50 frames of 20ms read in %v: not paced by the card", d)
	}
	// The second half is well clear of the stream's start.
	tail := got[len(got)/2:]
	tone, other := measure.Goertzel(tail, 8000, 440), measure.Goertzel(tail, 8000, 1000)
	if tone < 0.1 || other > tone/10 {
		t.Errorf("440 Hz level %.3f, 1000 Hz level %.3f: want the microphone's 440 Hz tone", tone, other)
	}
	t.Logf("440 Hz level %.3f, 1000 Hz %.4f, overflows %d", tone, other, src.(*paSource).Overflows())
}

func TestPortAudioSinkPlaysToTheSpeaker(t *testing.T) {
	b := openPA(t, "default", "default")
	rec := pulse.server.Record(t, "spk.monitor")
	sink, err := b.OpenSink(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]int16, fmt20ms.FrameSamples)
	start := time.Now()
	for i := range 50 {
		for j := range frame {
			n := i*len(frame) + j
			frame[j] = int16(0.5 * 32767 * math.Sin(2*math.Pi*1000*float64(n)/8000))
		}
		if err := sink.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("50 frames of 20ms written in %v: not paced by the card", d)
	}
	underflows := sink.(*paSink).Underflows()
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	// One second of tone was played: wait until at least half of it, in
	// 50 ms windows, has reached the recording.
	const window = 400
	var loud int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := rec.Samples()
		loud = 0
		for i := 0; i+window <= len(got); i += window {
			w := got[i : i+window]
			if measure.Goertzel(w, 8000, 1000) > 0.3 && measure.Goertzel(w, 8000, 440) < 0.05 {
				loud++
			}
		}
		if loud >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recorded %d samples with %d windows of 1000 Hz tone, want 10", len(got), loud)
		}
	}
	t.Logf("%d windows of tone recorded, underflows %d", loud, underflows)
}

func TestPortAudioDeviceNames(t *testing.T) {
	needPulse(t)
	initPA(t)
	for _, cfg := range []BackendConfig{{Input: "no such mic", Output: "default"}, {Input: "default", Output: "no such speaker"}} {
		_, err := NewBackend("portaudio", cfg)
		want := cfg.Input
		if want == "default" {
			want = cfg.Output
		}
		if err == nil || !strings.Contains(err.Error(), `"`+want+`"`) || !strings.Contains(err.Error(), `"pulse"`) {
			t.Errorf("NewBackend(%+v) error = %v, want it to name the device and list the real ones", cfg, err)
		}
	}
	// Exact names work, and "" means the default.
	b, err := NewBackend("portaudio", BackendConfig{Input: "pulse", Output: ""})
	if err != nil {
		t.Fatal(err)
	}
	src, sink := openStreams(t, b, fmt20ms)
	frame := make([]int16, fmt20ms.FrameSamples)
	if err := src.Read(frame); err != nil {
		t.Fatal(err)
	}
	if err := sink.Write(frame); err != nil {
		t.Fatal(err)
	}
	if _, err := b.OpenSource(Format{}); err == nil {
		t.Error("OpenSource accepted an empty format")
	}
	// No device takes 1 MHz: the error says which device and what it would take.
	_, err = b.OpenSource(Format{SampleRate: 1000000, FrameSamples: 160})
	if err == nil || !strings.Contains(err.Error(), `input device "pulse" does not support 1000000 Hz`) ||
		!strings.Contains(err.Error(), "default rate is") {
		t.Errorf("OpenSource at 1 MHz: %v, want it to name the device and its default rate", err)
	}
}

func TestPortAudioClose(t *testing.T) {
	b := openPA(t, "default", "default")
	src, err := b.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := b.OpenSink(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Read(nil); err != nil {
		t.Errorf("Read of an empty frame: %v", err)
	}
	// Close while another goroutine reads and writes as a call does.
	errs := make(chan error, 2)
	go func() {
		frame := make([]int16, fmt20ms.FrameSamples)
		for {
			if err := src.Read(frame); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		frame := make([]int16, fmt20ms.FrameSamples)
		for {
			if err := sink.Write(frame); err != nil {
				errs <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("transfer during Close: %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Read or Write did not return after Close")
		}
	}
	frame := make([]int16, fmt20ms.FrameSamples)
	if err := src.Read(frame); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if err := sink.Write(frame); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestPortAudioInitAndTerminate(t *testing.T) {
	needPulse(t)
	if _, err := NewBackend("portaudio", BackendConfig{}); err == nil || !strings.Contains(err.Error(), "InitPortAudio") {
		t.Fatalf("NewBackend before InitPortAudio: %v", err)
	}
	// Nested: PortAudio stays up until the last terminate.
	outer, err := InitPortAudio()
	if err != nil {
		t.Fatal(err)
	}
	inner, err := InitPortAudio()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBackend("portaudio", BackendConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := inner(); err != nil {
		t.Fatal(err)
	}
	src, err := b.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	if err := inner(); err != nil {
		t.Fatalf("second call of the same terminate: %v", err)
	}
	frame := make([]int16, fmt20ms.FrameSamples)
	if err := src.Read(frame); err != nil {
		t.Fatalf("Read after an inner terminate: %v", err)
	}
	// The last terminate closes what is still open.
	if err := outer(); err != nil {
		t.Fatal(err)
	}
	if err := src.Read(frame); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after terminate: %v, want ErrClosed", err)
	}
	if err := src.Close(); err != nil {
		t.Errorf("Close after terminate: %v", err)
	}
	if _, err := b.OpenSink(fmt20ms); err == nil || !strings.Contains(err.Error(), "InitPortAudio") {
		t.Errorf("OpenSink after terminate: %v", err)
	}
}

// Without libportaudio2 (or with a library that lacks a function) the
// station gets an error that says what to install, and can load PortAudio
// once it is there.
func TestPortAudioLibraryMissing(t *testing.T) {
	needPulse(t)
	for _, tc := range []struct{ lib, want string }{
		{"libportaudio-missing.so.2", "media: portaudio: load libportaudio-missing.so.2: libportaudio-missing.so.2: cannot open shared object file"},
		{"libc.so.6", "undefined symbol: Pa_GetErrorText (install libportaudio2)"},
	} {
		loadFrom(t, tc.lib)
		for range 2 { // a failure is not remembered as a success
			terminate, err := InitPortAudio()
			if err == nil || terminate != nil || !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "(install libportaudio2)") {
				t.Fatalf("InitPortAudio with %s = %v, %v; want an error containing %q", tc.lib, terminate != nil, err, tc.want)
			}
		}
		if _, err := PortAudioDevices(); !errors.Is(err, errNotInitialised) {
			t.Errorf("PortAudioDevices after a failed load: %v, want errNotInitialised", err)
		}
	}
	loadFrom(t, "libportaudio.so.2")
	initPA(t)
	if _, err := PortAudioDevices(); err != nil {
		t.Errorf("PortAudioDevices after loading the real library: %v", err)
	}
}

// loadFrom makes the next InitPortAudio load PortAudio from lib, as if for
// the first time, until the test ends.
func loadFrom(t *testing.T, lib string) {
	t.Helper()
	pa.Lock()
	defer pa.Unlock()
	if pa.users != 0 {
		t.Fatalf("PortAudio still initialised %d times", pa.users)
	}
	old := paLibrary
	paLibrary, pa.loaded = lib, false
	t.Cleanup(func() {
		pa.Lock()
		defer pa.Unlock()
		paLibrary, pa.loaded = old, false
	})
}

func TestPortAudioDevices(t *testing.T) {
	needPulse(t)
	if _, err := PortAudioDevices(); err == nil || !strings.Contains(err.Error(), "InitPortAudio") {
		t.Errorf("PortAudioDevices before InitPortAudio: %v", err)
	}
	initPA(t)
	devs, err := PortAudioDevices()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]AudioDevice{}
	var defIn, defOut int
	for _, d := range devs {
		byName[d.Name] = d
		if d.DefaultInput {
			defIn++
		}
		if d.DefaultOutput {
			defOut++
		}
	}
	if defIn != 1 || defOut != 1 {
		t.Errorf("%d default inputs and %d default outputs, want one each: %+v", defIn, defOut, devs)
	}
	for _, name := range []string{"default", "pulse"} {
		d, ok := byName[name]
		if !ok {
			t.Errorf("no device %q in %+v", name, devs)
			continue
		}
		if d.HostAPI != "ALSA" || d.MaxInputChannels < 1 || d.MaxOutputChannels < 1 || d.DefaultSampleRate <= 0 {
			t.Errorf("device %+v: want an ALSA device that captures and plays", d)
		}
	}
	if d := byName["default"]; !d.DefaultInput || !d.DefaultOutput {
		t.Errorf("ALSA's default device %+v is not PortAudio's default", d)
	}
}

// A card that refuses 8 kHz (many USB cards and I2S HATs do) is opened at
// its default rate and the stream resamples. PulseAudio's ALSA device takes
// any rate, so the test makes the backend believe it refuses 8 kHz.
func TestPortAudioResamplesWhenTheCardRefuses8kHz(t *testing.T) {
	b := openPA(t, "default", "default")
	var asked []int
	b.(*paBackend).supports = func(dev paDevice, input bool, rate int) bool {
		asked = append(asked, rate)
		return rate != 8000 && formatSupported(dev, input, rate)
	}
	rec := pulse.server.Record(t, "spk.monitor")
	src, err := b.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sink, err := b.OpenSink(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 4 || asked[0] != 8000 || asked[1] == 8000 || src.(*paSource).conv == nil || sink.(*paSink).conv == nil {
		t.Fatalf("rates asked %v: want 8000 refused and the default rate taken for both", asked)
	}
	in, out := src.(*paSource).conv.r.Rates()
	t.Logf("capture converts %d -> %d Hz", in, out)
	// Capture and play a second of 20 ms frames, the card pacing both.
	frame := make([]int16, fmt20ms.FrameSamples)
	play := make([]int16, fmt20ms.FrameSamples)
	var got []int16
	start := time.Now()
	for i := range 50 {
		if err := src.Read(frame); err != nil {
			t.Fatal(err)
		}
		got = append(got, frame...)
		for j := range play {
			play[j] = int16(0.5 * 32767 * math.Sin(2*math.Pi*1000*float64(i*len(play)+j)/8000))
		}
		if err := sink.Write(play); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("50 frames of 20ms in %v: not paced by the card", d)
	}
	tail := got[len(got)/2:]
	if tone, other := measure.Goertzel(tail, 8000, 440), measure.Goertzel(tail, 8000, 1000); tone < 0.1 || other > tone/10 {
		t.Errorf("440 Hz level %.3f, 1000 Hz level %.3f: want the microphone's 440 Hz tone", tone, other)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	const window = 400
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := rec.Samples()
		loud := 0
		for i := 0; i+window <= len(got); i += window {
			if w := got[i : i+window]; measure.Goertzel(w, 8000, 1000) > 0.3 && measure.Goertzel(w, 8000, 440) < 0.05 {
				loud++
			}
		}
		if loud >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recorded %d samples with %d windows of 1000 Hz tone, want 10", len(got), loud)
		}
	}
}
