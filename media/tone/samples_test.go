package tone_test

import (
	"slices"
	"strings"
	"testing"

	"intercom/media/tone"
)

// recording is a short distinct ramp, so that any sample out of place shows.
func recording(n int) []int16 {
	r := make([]int16, n)
	for i := range r {
		r[i] = int16(100 + i)
	}
	return r
}

func TestSamplesPlayOnce(t *testing.T) {
	rec := recording(250)
	g, err := tone.New(tone.Spec{Samples: rec})
	if err != nil {
		t.Fatal(err)
	}
	// Frames of 160 cut the recording mid-frame, as a player would.
	got := make([]int16, 320)
	if err := g.Read(got[:160]); err != nil {
		t.Fatal(err)
	}
	if g.Done() {
		t.Fatal("Done after 160 of 250 samples")
	}
	if err := g.Read(got[160:]); err != nil {
		t.Fatal(err)
	}
	if !g.Done() {
		t.Fatal("not Done after the recording")
	}
	want := append(slices.Clone(rec), make([]int16, 70)...)
	if !slices.Equal(got, want) {
		t.Fatalf("played %v, want the recording then silence", got)
	}
	after := []int16{1, 2}
	if err := g.Read(after); err != nil || !slices.Equal(after, []int16{0, 0}) {
		t.Fatalf("after the end: %v, %v; want silence", after, err)
	}
	if !slices.Equal(rec, recording(250)) {
		t.Fatal("the Generator changed the Spec's samples")
	}
	g.Reset()
	again := make([]int16, 250)
	if err := g.Read(again); err != nil || !slices.Equal(again, rec) || !g.Done() {
		t.Fatalf("after Reset: %v, Done %t; want the recording again", err, g.Done())
	}
}

func TestSamplesRepeat(t *testing.T) {
	rec := recording(7)
	got := render(t, tone.Spec{Samples: rec, Repeat: true}, 7*5+3, 4)
	for i, v := range got {
		if v != rec[i%len(rec)] {
			t.Fatalf("sample %d = %d, want %d: the loop is not seamless", i, v, rec[i%len(rec)])
		}
	}
	g, err := tone.New(tone.Spec{Samples: rec, Repeat: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Read(make([]int16, 1000)); err != nil || g.Done() {
		t.Fatalf("repeating recording: err %v, Done %t", err, g.Done())
	}
}

func TestSamplesOverlay(t *testing.T) {
	var o tone.Overlay
	g, err := tone.New(tone.Spec{Samples: []int16{10, 20, 30}})
	if err != nil {
		t.Fatal(err)
	}
	o.Play(g)
	frame := []int16{1, 1, 1, 1}
	o.Mix(frame)
	if !slices.Equal(frame, []int16{11, 21, 31, 1}) || o.Playing() {
		t.Fatalf("mixed %v, playing %t; want the recording once over the frame", frame, o.Playing())
	}
}

func TestSamplesValidate(t *testing.T) {
	if err := (tone.Spec{Samples: []int16{1}}).Validate(); err != nil {
		t.Fatalf("samples only: %v", err)
	}
	both := tone.DoorOpened()
	both.Samples = []int16{1}
	if err := both.Validate(); err == nil || !strings.Contains(err.Error(), "both steps and samples") {
		t.Fatalf("steps and samples: %v", err)
	}
	if err := (tone.Spec{}).Validate(); err == nil || !strings.Contains(err.Error(), "no steps") {
		t.Fatalf("empty: %v", err)
	}
	if got := (tone.Spec{Samples: make([]int16, 12000)}).String(); got != "recording 1.5s" {
		t.Fatalf("String() = %q", got)
	}
}
