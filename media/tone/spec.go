// Package tone generates the call-progress and feedback tones a door station
// plays (ringback, busy, unreachable, door opened, code rejected) as 8 kHz
// int16 frames, and mixes them over a stream of frames. A tone is described
// by a Spec and synthesised, or is a recording the caller has already
// decoded to 8 kHz samples; this package reads no files.
package tone

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SampleRate is the rate of every generated sample: G.711's 8 kHz.
const SampleRate = 8000

// Levels, in dBFS: the peak of a tone relative to a full-scale sine.
const (
	DefaultLevel = -12.0 // what the presets and ParseCadence use
	MinLevel     = -90.0 // quieter is below 16-bit resolution
)

// MaxStep bounds each On and Off duration: a longer step is a typo, and the
// bound keeps sample counts far from overflowing a 32-bit int.
const MaxStep = time.Minute

// sampleTime is the duration of one sample; On and Off are multiples of it.
const sampleTime = time.Second / SampleRate

// Step is one element of a cadence: Freqs sound together for On, then
// silence follows for Off.
type Step struct {
	Freqs   []float64 // Hz, each above 0 and below SampleRate/2; at least one
	On, Off time.Duration
}

// Spec describes a tone: its steps, or its recorded samples, play in
// order, once or, with Repeat, until the tone is stopped. A Spec has
// either Steps or Samples, never both.
type Spec struct {
	Steps []Step
	// Samples is a recording at SampleRate, mono, played as it is: a
	// prompt that replaces a generated tone. Players only read it, so
	// one slice may back many Generators.
	Samples []int16
	// Level is the tone's peak in dBFS, from MinLevel to 0. The
	// frequencies of a step share it equally, so their sum never clips.
	// It applies to Steps only.
	Level  float64
	Repeat bool
}

// Validate reports the first thing in s that cannot be played.
func (s Spec) Validate() error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("tone: %w", err)
	}
	return nil
}

func (s Spec) validate() error {
	if math.IsNaN(s.Level) || s.Level > 0 || s.Level < MinLevel {
		return fmt.Errorf("level %g dBFS is outside %g..0", s.Level, MinLevel)
	}
	switch {
	case len(s.Steps) > 0 && len(s.Samples) > 0:
		return errors.New("both steps and samples")
	case len(s.Samples) > 0:
		return nil
	case len(s.Steps) == 0:
		return errors.New("no steps")
	}
	for i, st := range s.Steps {
		if err := st.validate(); err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
	}
	return nil
}

func (st Step) validate() error {
	if len(st.Freqs) == 0 {
		return errors.New("no frequency")
	}
	for _, f := range st.Freqs {
		if !(f > 0 && f < SampleRate/2) { // also rejects NaN
			return fmt.Errorf("frequency %g Hz is outside 0..%d Hz (exclusive)", f, SampleRate/2)
		}
	}
	if st.On <= 0 {
		return fmt.Errorf("on %v is not positive", st.On)
	}
	if st.Off < 0 {
		return fmt.Errorf("off %v is negative", st.Off)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"on", st.On}, {"off", st.Off}} {
		if d.v > MaxStep {
			return fmt.Errorf("%s %v is longer than %v", d.name, d.v, MaxStep)
		}
		if d.v%sampleTime != 0 {
			return fmt.Errorf("%s %v is not a whole number of samples at %d Hz", d.name, d.v, SampleRate)
		}
	}
	return nil
}

// String returns the steps in ParseCadence syntax, e.g. "425@1s/4s"; a
// recording as its length, e.g. "recording 1.5s".
func (s Spec) String() string {
	if len(s.Samples) > 0 {
		return fmt.Sprintf("recording %v", time.Duration(len(s.Samples))*sampleTime)
	}
	var b strings.Builder
	for i, st := range s.Steps {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, f := range st.Freqs {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		}
		fmt.Fprintf(&b, "@%v/%v", st.On, st.Off)
	}
	return b.String()
}

// ParseCadence parses a repeating tone at DefaultLevel from comma-separated
// steps FREQS@ON/OFF, where FREQS is one frequency in Hz or several joined
// by "+", and ON and OFF are Go durations. A step without FREQS@ reuses the
// previous step's frequencies. Examples: "425@1s/4s" (European ringback),
// "440+480@2s/4s" (US ringback), "400+450@400ms/200ms,400ms/2s" (UK).
func ParseCadence(text string) (Spec, error) {
	s, err := parseCadence(text)
	if err != nil {
		return Spec{}, fmt.Errorf("tone: cadence %q: %w", text, err)
	}
	return s, nil
}

func parseCadence(text string) (Spec, error) {
	if strings.TrimSpace(text) == "" {
		return Spec{}, errors.New("empty")
	}
	s := Spec{Level: DefaultLevel, Repeat: true}
	var freqs []float64
	for i, part := range strings.Split(text, ",") {
		timing := part
		if fs, t, ok := strings.Cut(part, "@"); ok {
			var err error
			if freqs, err = parseFreqs(fs); err != nil {
				return Spec{}, fmt.Errorf("step %d: %w", i+1, err)
			}
			timing = t
		} else if freqs == nil {
			return Spec{}, fmt.Errorf("step %d: %q has no frequency (want FREQ@ON/OFF)", i+1, strings.TrimSpace(part))
		}
		on, off, ok := strings.Cut(timing, "/")
		if !ok {
			return Spec{}, fmt.Errorf("step %d: %q is not ON/OFF", i+1, strings.TrimSpace(timing))
		}
		onD, err := time.ParseDuration(strings.TrimSpace(on))
		if err != nil {
			return Spec{}, fmt.Errorf("step %d: on: %w", i+1, err)
		}
		offD, err := time.ParseDuration(strings.TrimSpace(off))
		if err != nil {
			return Spec{}, fmt.Errorf("step %d: off: %w", i+1, err)
		}
		s.Steps = append(s.Steps, Step{Freqs: slices.Clone(freqs), On: onD, Off: offD})
	}
	return s, s.validate()
}

func parseFreqs(text string) ([]float64, error) {
	var freqs []float64
	for f := range strings.SplitSeq(text, "+") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, fmt.Errorf("frequency %q is not a number", strings.TrimSpace(f))
		}
		freqs = append(freqs, v)
	}
	return freqs, nil
}

// The presets. Each call returns a fresh Spec the caller may change.

// Ringback is the European ringing tone: 425 Hz, 1 s on, 4 s off.
func Ringback() Spec { return cadence(425, time.Second, 4*time.Second) }

// RingbackUS is the North American ringing tone: 440+480 Hz, 2 s on, 4 s
// off.
func RingbackUS() Spec {
	return Spec{Level: DefaultLevel, Repeat: true,
		Steps: []Step{{Freqs: []float64{440, 480}, On: 2 * time.Second, Off: 4 * time.Second}}}
}

// Busy is the European busy tone: 425 Hz, 0.5 s on, 0.5 s off.
func Busy() Spec { return cadence(425, 500*time.Millisecond, 500*time.Millisecond) }

// Congestion is the European congestion tone: 425 Hz, 0.25 s on, 0.25 s off.
func Congestion() Spec { return cadence(425, 250*time.Millisecond, 250*time.Millisecond) }

// Unreachable is the special information tone of ITU-T E.180: 950,
// 1400 and 1800 Hz for 330 ms each, then 1 s of silence.
func Unreachable() Spec {
	const seg = 330 * time.Millisecond
	return Spec{Level: DefaultLevel, Repeat: true, Steps: []Step{
		{Freqs: []float64{950}, On: seg},
		{Freqs: []float64{1400}, On: seg},
		{Freqs: []float64{1800}, On: seg, Off: time.Second},
	}}
}

// DoorOpened confirms an unlocked door: two short rising beeps, played once.
func DoorOpened() Spec {
	return Spec{Level: DefaultLevel, Steps: []Step{
		{Freqs: []float64{880}, On: 100 * time.Millisecond, Off: 60 * time.Millisecond},
		{Freqs: []float64{1320}, On: 150 * time.Millisecond},
	}}
}

// Rejected answers a wrong code: a low falling pair of tones, played once.
func Rejected() Spec {
	return Spec{Level: DefaultLevel, Steps: []Step{
		{Freqs: []float64{480}, On: 250 * time.Millisecond, Off: 50 * time.Millisecond},
		{Freqs: []float64{320}, On: 500 * time.Millisecond},
	}}
}

func cadence(freq float64, on, off time.Duration) Spec {
	return Spec{Level: DefaultLevel, Repeat: true, Steps: []Step{{Freqs: []float64{freq}, On: on, Off: off}}}
}
