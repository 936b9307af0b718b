//go:build linux

package e2e

// The station on the real portaudio backend (PortAudio's ALSA host API, as
// on a Pi), through a private PulseAudio server that stands in for the
// sound card: ALSA's default PCM goes to it (issue 3, acceptance 1).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"intercom/media/measure"
	"intercom/media/mediatest"
)

// startPulse starts the private PulseAudio server and points this process
// and every process it starts at it. The variables stay set until the test
// ends, so the test must not run in parallel with others.
func startPulse(t *testing.T) *mediatest.Pulse {
	t.Helper()
	// Built first: go build must see the real HOME (module and build caches).
	intercomBinary(t)
	p, err := mediatest.StartPulse()
	if err != nil {
		mediatest.PulseFailed(t, err)
	}
	t.Cleanup(p.Stop)
	for _, kv := range p.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return p
}

// intercomOutput runs the intercom binary and returns its stdout, failing
// the test unless it exits 0.
func intercomOutput(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(intercomBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("intercom %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	t.Logf("intercom %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

var (
	rmsLine       = regexp.MustCompile(`RMS (-?[0-9.]+) dBFS, peak (-?[0-9.]+) dBFS`)
	roundTripLine = regexp.MustCompile(`round trip: ([0-9]+) ms`)
)

// TestPortAudioAudioCommands: `intercom audio devices` lists ALSA's default
// and pulse devices; `intercom audio test` reports the microphone's level,
// and the round trip when the microphone is the speaker's monitor.
func TestPortAudioAudioCommands(t *testing.T) {
	skipShort(t)
	startPulse(t)

	out := intercomOutput(t, nil, "audio", "devices")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^default +ALSA +[1-9][0-9]* +[1-9][0-9]* +[0-9]+ +input, output$`),
		regexp.MustCompile(`(?m)^pulse +ALSA +[1-9]`),
	} {
		if !want.MatchString(out) {
			t.Errorf("audio devices: no line matching %s", want)
		}
	}

	cfg := filepath.Join(t.TempDir(), "intercom.yaml")
	yaml := "device:\n  name: e2e door\naudio:\n  backend: portaudio\n  input: default\n  output: default\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// The microphone is the server's sine: a level, but not the test tone.
	out = intercomOutput(t, nil, "audio", "test", "-config", cfg, "-duration", "1s")
	m := rmsLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("audio test: no level in the output")
	}
	if rms, _ := strconv.ParseFloat(m[1], 64); rms < -40 || rms > 0 {
		t.Errorf("audio test: microphone at RMS %s dBFS, want the sine's level", m[1])
	}
	if !strings.Contains(out, "round trip: not measured") {
		t.Errorf("audio test: a round trip measured without a path from speaker to microphone")
	}

	// With the speaker's monitor as the microphone, the tone comes back.
	out = intercomOutput(t, []string{"PULSE_SOURCE=spk.monitor"}, "audio", "test", "-config", cfg, "-duration", "1s")
	m = roundTripLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("audio test with the speaker as microphone: no round trip in the output")
	}
	if ms, _ := strconv.Atoi(m[1]); ms <= 0 || ms > 400 {
		t.Errorf("audio test: round trip %d ms, want 1..400", ms)
	}
}

// TestPortAudioCallWithPhone: a phone calls the station, whose microphone
// and speaker are PulseAudio's through PortAudio; each hears the other's
// tone.
func TestPortAudioCallWithPhone(t *testing.T) {
	requirePeers(t)
	p := startPulse(t)
	speaker := p.Record(t, "spk.monitor")
	k, st := startRegisteredStation(t, stationOptions{PortAudio: true})
	phone := startPhone(t, phoneOptions{User: "201", Registrar: k, AutoAnswer: true, ToneHz: 1000})

	mp := phoneCallsStation(t, st, phone, k)
	from := speaker.Len()

	eventually(t, 10*time.Second, "201 hears the door for 2s", phone.heard(2*time.Second))
	played := speaker.Samples()[from:]
	phone.Hangup(t)
	phone.Events.waitFor(t, mp, "CALL_CLOSED", 5*time.Second)
	eventually(t, 5*time.Second, "station idle after the phone's BYE", st.callIs("idle"))

	rec, err := phone.decRecording()
	if err != nil {
		t.Fatal(err)
	}
	assertTone(t, "201 hears the door's microphone", rec, mediatest.PulseMicHz, 650)
	if err := samplesTone(played, 1000, 1300); err != nil {
		t.Errorf("the door's speaker plays 201's microphone: %v", err)
	}
}

// samplesTone checks 8 kHz samples as heardTone checks a WAV.
func samplesTone(samples []int16, freq, other float64) error {
	if len(samples) < 4000 {
		return fmt.Errorf("only %d samples", len(samples))
	}
	level, ref := measure.Goertzel(samples, 8000, freq), measure.Goertzel(samples, 8000, other)
	if level < minToneLevel || level < toneContrast*ref {
		return fmt.Errorf("%.0f Hz at %.4f of full scale, %.0f Hz at %.4f; want at least %.2f and %.0fx",
			freq, level, other, ref, minToneLevel, toneContrast)
	}
	return nil
}
