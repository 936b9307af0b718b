package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"intercom/device/config"
	"intercom/media/wav"
)

// writeWAV writes a PCM WAV header of any shape followed by samples, for
// files wav.Create cannot make (stereo, other widths).
func writeWAV(t *testing.T, path string, rate, channels, bits int, samples []int16) {
	t.Helper()
	data := make([]byte, 2*len(samples))
	for i, v := range samples {
		binary.LittleEndian.PutUint16(data[2*i:], uint16(v))
	}
	h := make([]byte, 44)
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+len(data)))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1)
	binary.LittleEndian.PutUint16(h[22:], uint16(channels))
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(rate*channels*bits/8))
	binary.LittleEndian.PutUint16(h[32:], uint16(channels*bits/8))
	binary.LittleEndian.PutUint16(h[34:], uint16(bits))
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(len(data)))
	if err := os.WriteFile(path, append(h, data...), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadPrompts(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.wav")
	w, err := wav.Create(open, 8000)
	if err != nil {
		t.Fatal(err)
	}
	rec := []int16{1, -2, 3, -4, 5}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := loadPrompts(config.Prompts{DoorOpened: open})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.DoorOpened.Samples, rec) || p.DoorOpened.Repeat {
		t.Fatalf("door_opened %+v, want the recording played once", p.DoorOpened)
	}
	if p.Rejected.Samples != nil || p.Rejected.Steps != nil || p.Busy.Steps != nil || p.Unreachable.Steps != nil {
		t.Fatalf("unset prompts %+v, want zero Specs (the device's generated tones)", p)
	}
}

func TestLoadPromptsRefusesOtherFormats(t *testing.T) {
	dir := t.TempDir()
	const sox = "prompts must be 8 kHz mono 16-bit PCM, convert with: sox in.wav -r 8000 -c 1 -b 16 out.wav"
	for _, c := range []struct {
		name                 string
		rate, channels, bits int
		samples              int
		want                 string
	}{
		{"cd.wav", 44100, 1, 16, 100, "audio.prompts.busy: " + filepath.Join(dir, "cd.wav") + " is 44100 Hz, 1 channels, 16 bits; " + sox},
		{"stereo.wav", 8000, 2, 16, 100, "is 8000 Hz, 2 channels, 16 bits; " + sox},
		{"wide.wav", 8000, 1, 32, 100, "is 8000 Hz, 1 channels, 32 bits; " + sox},
		{"empty.wav", 8000, 1, 16, 0, "empty.wav holds no audio"},
		{"long.wav", 8000, 1, 16, 8000*10 + 1, "long.wav: 10.000125s long, at most 10s (trim it, e.g. sox in.wav out.wav trim 0 10)"},
	} {
		path := filepath.Join(dir, c.name)
		writeWAV(t, path, c.rate, c.channels, c.bits, make([]int16, c.samples))
		_, err := loadPrompts(config.Prompts{Busy: path})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	ok := filepath.Join(dir, "ten.wav")
	writeWAV(t, ok, 8000, 1, 16, make([]int16, 8000*10))
	if _, err := loadPrompts(config.Prompts{Busy: ok}); err != nil {
		t.Errorf("a 10 s prompt: %v", err)
	}
	_, err := loadPrompts(config.Prompts{Rejected: filepath.Join(dir, "missing.wav")})
	if err == nil || !strings.HasPrefix(err.Error(), "audio.prompts.rejected: open ") {
		t.Errorf("missing file: %v", err)
	}
}

func TestDoctorChecksPrompts(t *testing.T) {
	if got := checkPrompts(config.Prompts{}); got != nil {
		t.Errorf("no prompts: %+v", got)
	}
	dir := t.TempDir()
	good, cd := filepath.Join(dir, "good.wav"), filepath.Join(dir, "cd.wav")
	writeWAV(t, good, 8000, 1, 16, make([]int16, 800))
	writeWAV(t, cd, 44100, 1, 16, make([]int16, 4410))
	if got := checkPrompts(config.Prompts{DoorOpened: good}); len(got) != 1 || got[0].status != ok {
		t.Errorf("good prompt: %+v", got)
	}
	got := checkPrompts(config.Prompts{DoorOpened: good, Busy: cd})
	if len(got) != 1 || got[0].status != fail || !strings.Contains(got[0].what, "audio.prompts.busy") || !strings.Contains(got[0].what, "sox") {
		t.Errorf("44.1 kHz prompt: %+v", got)
	}
}
