//go:build cgo && !noportaudio && linux

package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"intercom/media/mediatest"
)

// These tests run PortAudio (ALSA host API) against a private PulseAudio
// server: there is no sound card in CI. The server has a null sink "spk"
// (the speaker, recorded through spk.monitor) and, as the microphone, the
// monitor of a null sink "mic" that module-sine plays 440 Hz into; ALSA's
// default PCM is routed to the server by an .asoundrc in a temporary HOME.
// (module-sine-source would be simpler, but it delivers its audio in
// blocks of about a second, so a reader of it is not paced.)

const pulseHint = "install with: apt-get install pulseaudio pulseaudio-utils libasound2-plugins"

// pulse is the server shared by the tests, started by the first one that
// needs it and stopped by TestMain.
var pulse struct {
	once    sync.Once
	err     error
	missing bool // a tool is not installed: skip unless INTERCOM_E2E=1
	stop    func()
	env     []string // for pactl and parecord
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pulse.stop != nil {
		pulse.stop()
	}
	os.Exit(code)
}

// needPulse starts the server once and points this process at it; it must
// run before InitPortAudio, which is when ALSA reads its configuration.
func needPulse(t *testing.T) {
	t.Helper()
	pulse.once.Do(func() { pulse.missing, pulse.err = startPulse() })
	switch {
	case pulse.err == nil:
	case pulse.missing && os.Getenv("INTERCOM_E2E") != "1":
		t.Skip(pulse.err)
	default:
		t.Fatal(pulse.err)
	}
}

// pulseScript sets up the server. The speaker is the null sink spk; the
// microphone is the monitor of the null sink mic, into which module-sine
// plays. A null sink starts rendering in 2 s blocks, and a stream opened
// on it gets its first audio only when such a block ends: the loopbacks
// into a third sink ask spk and mic for 20 ms blocks, and suspending and
// resuming each sink restarts its timer at that pace, so that no test
// waits. The socket comes last: once it accepts, all is set up.
const pulseScript = `load-module module-null-sink sink_name=spk
load-module module-null-sink sink_name=mic
load-module module-sine sink=mic frequency=440
set-default-sink spk
set-default-source mic.monitor
load-module module-null-sink sink_name=warm
load-module module-loopback source=mic.monitor sink=warm latency_msec=20
load-module module-loopback source=spk.monitor sink=warm latency_msec=20
suspend-sink spk 1
suspend-sink spk 0
suspend-sink mic 1
suspend-sink mic 0
suspend-sink warm 1
suspend-sink warm 0
load-module module-native-protocol-unix auth-anonymous=1 socket=`

// startPulse starts the server in a temporary directory and points this
// process's environment at it. missing reports a tool not installed.
func startPulse() (missing bool, err error) {
	for _, tool := range []string{"pulseaudio", "pactl", "parecord"} {
		if _, err := exec.LookPath(tool); err != nil {
			return true, fmt.Errorf("%s not found; %s", tool, pulseHint)
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so"); len(m) == 0 {
		return true, fmt.Errorf("ALSA's pulse plugin not found; %s", pulseHint)
	}
	dir, err := os.MkdirTemp("", "intercom-pulse-")
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil && pulse.stop == nil {
			os.RemoveAll(dir)
		}
	}()
	home, run, sock := filepath.Join(dir, "home"), filepath.Join(dir, "run"), filepath.Join(dir, "native")
	for path, text := range map[string]string{
		filepath.Join(home, ".asoundrc"): "pcm.!default { type pulse }\nctl.!default { type pulse }\n",
		// Never start a user's real server if ours is gone.
		filepath.Join(home, ".config/pulse/client.conf"): "autospawn = no\n",
		filepath.Join(dir, "test.pa"):                    pulseScript + sock + "\n",
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return false, err
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return false, err
		}
	}
	if err := os.Mkdir(run, 0o700); err != nil {
		return false, err
	}
	// pulseaudio writes to HOME and XDG_RUNTIME_DIR. As root (here and in
	// CI) it only warns "not intended to be run as root" and runs as a
	// per-user daemon, since --system is not given.
	env := []string{"LC_ALL=C", "HOME=" + home, "XDG_RUNTIME_DIR=" + run, "PULSE_SERVER=unix:" + sock}
	cmd := exec.Command("pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1", "--use-pid-file=no",
		"--realtime=no", "--high-priority=no", "--log-target=stderr", "-F", filepath.Join(dir, "test.pa"))
	cmd.Env = append(os.Environ(), env...)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	// If the test binary dies (say, on a test timeout), so does the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return false, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	pulse.stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			return false, fmt.Errorf("pulseaudio exited: %s", log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return false, errors.New("pulseaudio did not open its socket within 10s")
		}
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			return false, err
		}
	}
	pulse.env = os.Environ()
	return false, waitWarm()
}

// waitWarm waits until every sink renders in small blocks (see
// pulseScript), which the loopbacks then keep up.
func waitWarm() error {
	var out []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		pactl := exec.Command("pactl", "list", "sinks")
		pactl.Env = pulse.env
		var err error
		if out, err = pactl.Output(); err != nil {
			return fmt.Errorf("pactl list sinks: %w", err)
		}
		warm := 0
		for line := range strings.Lines(string(out)) {
			var usec int
			if _, err := fmt.Sscanf(strings.TrimSpace(line), "Latency: %d usec", &usec); err == nil && usec < 100000 {
				warm++
			}
		}
		if warm == 3 {
			return nil
		}
	}
	return fmt.Errorf("pulseaudio sinks still slow after 10s:\n%s", out)
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
	tone, other := mediatest.Goertzel(tail, 8000, 440), mediatest.Goertzel(tail, 8000, 1000)
	if tone < 0.1 || other > tone/10 {
		t.Errorf("440 Hz level %.3f, 1000 Hz level %.3f: want the microphone's 440 Hz tone", tone, other)
	}
	t.Logf("440 Hz level %.3f, 1000 Hz %.4f, overflows %d", tone, other, src.(*paSource).Overflows())
}

// recorder captures what a PulseAudio source hears, as 8 kHz mono samples.
type recorder struct {
	mu      sync.Mutex
	samples []int16
}

func (r *recorder) snapshot() []int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int16(nil), r.samples...)
}

func record(t *testing.T, device string) *recorder {
	t.Helper()
	cmd := exec.Command("parecord", "--raw", "--device="+device, "--rate=8000", "--channels=1",
		"--format=s16le", "--latency-msec=20")
	cmd.Env = pulse.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1024)
		for {
			n, err := io.ReadFull(out, buf)
			r.mu.Lock()
			for i := 0; i+1 < n; i += 2 {
				r.samples = append(r.samples, int16(binary.LittleEndian.Uint16(buf[i:])))
			}
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		cmd.Wait()
	})
	// Wait until parecord is connected, so that it hears everything played.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		pactl := exec.Command("pactl", "list", "short", "source-outputs")
		pactl.Env = pulse.env
		if o, err := pactl.Output(); err == nil && len(strings.TrimSpace(string(o))) > 0 {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("parecord did not connect: %s", stderr.String())
		}
	}
}

func TestPortAudioSinkPlaysToTheSpeaker(t *testing.T) {
	b := openPA(t, "default", "default")
	rec := record(t, "spk.monitor")
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
		got := rec.snapshot()
		loud = 0
		for i := 0; i+window <= len(got); i += window {
			w := got[i : i+window]
			if mediatest.Goertzel(w, 8000, 1000) > 0.3 && mediatest.Goertzel(w, 8000, 440) < 0.05 {
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
	src, err := b.OpenSource(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sink, err := b.OpenSink(fmt20ms)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
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
