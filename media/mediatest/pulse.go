//go:build linux

package mediatest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A Pulse is a private PulseAudio server that stands in for a sound card:
// there is none in CI. It has a null sink "spk" (the speaker, recorded
// through "spk.monitor") and, as the microphone, the monitor of a null
// sink "mic" that module-sine plays 440 Hz into; both are the server's
// defaults. Programs reach it through ALSA's default PCM, which the
// .asoundrc in the server's HOME routes to it, given Env.
// (module-sine-source would be simpler, but it delivers its audio in
// blocks of about a second, so a reader of it is not paced.)
type Pulse struct {
	env      []string
	stop     func()
	stopOnce sync.Once
}

// PulseMicHz is the frequency of the server's microphone.
const PulseMicHz = 440

// ErrPulseMissing marks a StartPulse failure caused by a tool that is not
// installed.
var ErrPulseMissing = errors.New("mediatest: pulseaudio not installed; " +
	"install with: apt-get install pulseaudio pulseaudio-utils libasound2-plugins")

// pulseScript sets up the server. A null sink starts rendering in 2 s
// blocks, and a stream opened on it gets its first audio only when such a
// block ends: the loopbacks into a third sink ask spk and mic for 20 ms
// blocks, and suspending and resuming each sink restarts its timer at that
// pace, so that no test waits. The socket comes last: once it accepts, all
// is set up.
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

// StartPulse starts a server in a temporary directory and waits until it
// plays in real time. An error wraps ErrPulseMissing when a tool is not
// installed. The caller stops the server with Stop.
func StartPulse() (p *Pulse, err error) {
	for _, tool := range []string{"pulseaudio", "pactl", "parecord"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: %w", tool, ErrPulseMissing)
		}
	}
	if m, _ := filepath.Glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so"); len(m) == 0 {
		return nil, fmt.Errorf("ALSA's pulse plugin not found: %w", ErrPulseMissing)
	}
	dir, err := os.MkdirTemp("", "intercom-pulse-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && p == nil {
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
			return nil, err
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(run, 0o700); err != nil {
		return nil, err
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
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p = &Pulse{env: env, stop: func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			p.Stop()
			return nil, fmt.Errorf("pulseaudio exited: %s", log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, errors.New("pulseaudio did not open its socket within 10s")
		}
	}
	if err := p.waitWarm(); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Stop stops the server and removes its directory; later calls do nothing.
func (p *Pulse) Stop() { p.stopOnce.Do(p.stop) }

// Env returns the variables (KEY=value) that point a client at the server:
// PULSE_SERVER for PulseAudio clients, HOME for ALSA's .asoundrc, and
// XDG_RUNTIME_DIR. A process that uses ALSA's default PCM needs them
// before it initialises ALSA (for PortAudio: before Pa_Initialize).
func (p *Pulse) Env() []string { return append([]string(nil), p.env...) }

// command runs a PulseAudio tool against the server.
func (p *Pulse) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), p.env...)
	return cmd
}

// waitWarm waits until every sink renders in small blocks (see
// pulseScript), which the loopbacks then keep up.
func (p *Pulse) waitWarm() error {
	var out []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		if out, err = p.command("pactl", "list", "sinks").Output(); err != nil {
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

// PulseFailed ends a test whose StartPulse failed: it skips when a tool is
// not installed, unless INTERCOM_E2E=1 (CI), and fails otherwise.
func PulseFailed(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrPulseMissing) && os.Getenv("INTERCOM_E2E") != "1" {
		t.Skip(err)
	}
	t.Fatal(err)
}

// A Recording captures what a PulseAudio source hears, as 8 kHz mono
// samples, until the test ends.
type Recording struct {
	mu      sync.Mutex
	samples []int16
}

// Samples returns a copy of what was recorded so far.
func (r *Recording) Samples() []int16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int16(nil), r.samples...)
}

// Len returns how many samples were recorded so far.
func (r *Recording) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.samples)
}

// Record starts parecord on a source of the server (such as "spk.monitor")
// and returns once it is connected, so that it hears everything from then
// on. It stops when the test ends.
func (p *Pulse) Record(t testing.TB, source string) *Recording {
	t.Helper()
	// The loopbacks of pulseScript are source outputs too: parecord is
	// connected when there is one more.
	before, err := p.sourceOutputs()
	if err != nil {
		t.Fatal(err)
	}
	cmd := p.command("parecord", "--raw", "--device="+source, "--rate=8000", "--channels=1",
		"--format=s16le", "--latency-msec=20")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &Recording{}
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
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, err := p.sourceOutputs(); err == nil && n > before {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("parecord did not connect: %s", stderr.String())
		}
	}
}

// sourceOutputs counts the streams recording from the server.
func (p *Pulse) sourceOutputs() (int, error) {
	out, err := p.command("pactl", "list", "short", "source-outputs").Output()
	if err != nil {
		return 0, fmt.Errorf("pactl list source-outputs: %w", err)
	}
	return strings.Count(string(out), "\n"), nil
}
