package media

import (
	"errors"
	"math"
	"strings"
	"testing"

	"intercom/media/measure"
)

func TestChooseRate(t *testing.T) {
	only := func(rates ...int) func(int) bool {
		return func(r int) bool {
			for _, x := range rates {
				if r == x {
					return true
				}
			}
			return false
		}
	}
	for _, c := range []struct {
		name       string
		devDefault float64
		supports   func(int) bool
		want       int
		err        string
	}{
		{"takes 8 kHz", 48000, only(8000, 48000), 8000, ""},
		{"USB card at 48 kHz", 48000, only(48000), 48000, ""},
		{"44.1 kHz card", 44100, only(44100), 44100, ""},
		{"rounds a fractional default", 44099.9, only(44100), 44100, ""},
		{"default refused too", 48000, only(44100), 0, "supports neither 8000 Hz nor its default rate 48000 Hz"},
		{"slower than a call", 4000, only(4000), 0, "does not support 8000 Hz (its default rate is 4000 Hz)"},
		{"no resampler for it", 384000, only(384000), 0, "does not support 8000 Hz (its default rate is 384000 Hz): resample:"},
	} {
		got, err := chooseRate(8000, c.devDefault, c.supports)
		if got != c.want || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: chooseRate = %d, %v; want %d, %q", c.name, got, err, c.want, c.err)
		}
	}
}

func TestDeviceFrames(t *testing.T) {
	for _, c := range [][4]int{{160, 8000, 48000, 960}, {160, 8000, 44100, 882}, {80, 8000, 44100, 441}, {80, 8000, 22050, 221}, {160, 8000, 8000, 160}} {
		if got := deviceFrames(c[0], c[1], c[2]); got != c[3] {
			t.Errorf("deviceFrames(%d, %d, %d) = %d, want %d", c[0], c[1], c[2], got, c[3])
		}
	}
}

// fakeCard stands in for a device stream at its own rate: it serves a tone
// and records what is played, and counts the samples moved.
type fakeCard struct {
	rate     int
	n        int
	played   []int16
	transfer []int
	err      error
}

func (c *fakeCard) read(b []int16) error {
	if c.err != nil {
		return c.err
	}
	for i := range b {
		b[i] = int16(16000 * math.Sin(2*math.Pi*440*float64(c.n)/float64(c.rate)))
		c.n++
	}
	c.transfer = append(c.transfer, len(b))
	return nil
}

func (c *fakeCard) write(b []int16) error {
	if c.err != nil {
		return c.err
	}
	c.played = append(c.played, b...)
	c.transfer = append(c.transfer, len(b))
	return nil
}

func TestRateConvCapture(t *testing.T) {
	card := &fakeCard{rate: 44100}
	conv, err := newRateConv(44100, 8000, 160)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]int16, 160)
	var got []int16
	for range 100 {
		if err := conv.read(frame, card.read); err != nil {
			t.Fatal(err)
		}
		got = append(got, frame...)
	}
	// Every call frame takes the card's frame of the same duration, give
	// or take a sample; the first is a few short because the first output
	// sample needs only the first input.
	for i, n := range card.transfer[1:] {
		if n < 881 || n > 883 {
			t.Fatalf("transfer %d read %d samples from the card, want about 882", i+1, n)
		}
	}
	if card.n > 100*882 || card.n < 100*882-6 {
		t.Errorf("2 s of call audio read %d samples from a 44.1 kHz card, want 88200 less the filter's phase", card.n)
	}
	if lvl := measure.Goertzel(got[800:], 8000, 440); math.Abs(measure.DBFS(lvl/(16000.0/32768))) > 0.5 {
		t.Errorf("440 Hz level %.3f after conversion, want %.3f", lvl, 16000.0/32768)
	}
	if n := testing.AllocsPerRun(50, func() { _ = conv.read(frame, card.readNoRecord) }); n != 0 {
		t.Errorf("read allocates %v times per frame", n)
	}
	card.err = errors.New("gone")
	if err := conv.read(frame, card.read); !errors.Is(err, card.err) {
		t.Errorf("read from a failing card: %v", err)
	}
}

func (c *fakeCard) readNoRecord(b []int16) error { clear(b); return nil }

func TestRateConvPlayback(t *testing.T) {
	card := &fakeCard{rate: 48000}
	conv, err := newRateConv(8000, 48000, 80)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]int16, 80)
	for i := range 100 {
		for j := range frame {
			frame[j] = int16(16000 * math.Sin(2*math.Pi*1000*float64(i*80+j)/8000))
		}
		if err := conv.write(frame, card.write); err != nil {
			t.Fatal(err)
		}
	}
	if len(card.played) != 100*480 {
		t.Errorf("1 s played %d samples at 48 kHz", len(card.played))
	}
	if lvl := measure.Goertzel(card.played[4800:], 48000, 1000); math.Abs(measure.DBFS(lvl/(16000.0/32768))) > 0.5 {
		t.Errorf("1 kHz level %.3f on the card, want %.3f", lvl, 16000.0/32768)
	}
	// A frame longer than the stream's grows the buffer rather than fail.
	if err := conv.write(make([]int16, 800), card.write); err != nil || card.transfer[len(card.transfer)-1] != 4800 {
		t.Errorf("long frame: %v, played %d", err, card.transfer[len(card.transfer)-1])
	}
	card.err = errors.New("gone")
	if err := conv.write(frame, card.write); !errors.Is(err, card.err) {
		t.Errorf("write to a failing card: %v", err)
	}
}
