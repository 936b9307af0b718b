package config

import (
	"strings"
	"testing"
)

func TestPrompts(t *testing.T) {
	cfg := mustParse(t, "audio:\n  prompts:\n    door_opened: /etc/intercom/open.wav\n    busy: busy.WAV\n")
	want := Prompts{DoorOpened: "/etc/intercom/open.wav", Busy: "busy.WAV"}
	if cfg.Audio.Prompts != want {
		t.Fatalf("prompts %+v, want %+v", cfg.Audio.Prompts, want)
	}
	if got := Default().Audio.Prompts; got != (Prompts{}) {
		t.Fatalf("default prompts %+v, want none (the generated tones)", got)
	}
	for _, c := range []struct{ doc, want string }{
		{"audio:\n  prompts:\n    rejected: wrong.mp3\n",
			`t.yaml:3: audio.prompts.rejected: must be the path of a .wav file (8 kHz mono 16-bit) or empty for the generated tone, got "wrong.mp3"`},
		{"audio:\n  prompts:\n    unreachable: yes\n", `t.yaml:3: audio.prompts.unreachable: must be the path of a .wav file`},
		{"audio:\n  prompts:\n    ringback: r.wav\n", `audio.prompts.ringback`},
	} {
		if got := parseErr(t, c.doc); !strings.Contains(got, c.want) {
			t.Errorf("error %q lacks %q", got, c.want)
		}
	}
}
