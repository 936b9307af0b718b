package dsp

import (
	"fmt"
	"math"
	"sync/atomic"
)

// EchoConfig tunes an EchoSuppressor. Frame counts are in frames of the
// microphone stream (20 ms each at the usual ptime).
type EchoConfig struct {
	// Attenuation is how far the microphone is turned down while the far
	// end talks, in dB: above 0, at most 60.
	Attenuation float64
	// Threshold is the far-end level that counts as talk, in dBFS RMS
	// (a full-scale sine is 0 dBFS), from -90 up to but not including 0.
	Threshold float64
	// Attack is how many frames the microphone takes to fall to full
	// attenuation once the far end talks; at least 1.
	Attack int
	// Hold is how many frames full attenuation lasts after the far end
	// falls silent, so the room's echo dies away first; 0 or more.
	Hold int
	// Release is how many frames the microphone then takes to come back to
	// full level; at least 1.
	Release int
}

// DefaultEchoConfig returns a setting for a door station whose speaker and
// microphone share a front panel: 18 dB down while the far end is above
// -40 dBFS, full attenuation within a frame, held 10 frames, released
// over 10.
func DefaultEchoConfig() EchoConfig {
	return EchoConfig{Attenuation: 18, Threshold: -40, Attack: 1, Hold: 10, Release: 10}
}

func (c EchoConfig) validate() error {
	switch {
	case !(c.Attenuation > 0 && c.Attenuation <= 60):
		return fmt.Errorf("attenuation %g dB is outside 0..60 dB", c.Attenuation)
	case !(c.Threshold >= -90 && c.Threshold < 0):
		return fmt.Errorf("threshold %g dBFS is outside -90..0 dBFS", c.Threshold)
	case c.Attack < 1:
		return fmt.Errorf("attack %d frames is less than 1", c.Attack)
	case c.Hold < 0:
		return fmt.Errorf("hold %d frames is negative", c.Hold)
	case c.Release < 1:
		return fmt.Errorf("release %d frames is less than 1", c.Release)
	}
	return nil
}

// EchoSuppressor turns the microphone down while the far end talks, so the
// far end does not hear itself come back through the station's speaker and
// microphone. It is half duplex by design: while the far end talks, the
// visitor is quieter too. The gain moves in steps of whole frames and is
// interpolated across each frame, so it never jumps audibly.
//
// FarEnd and Apply may run on different goroutines (playout and capture);
// each of them must not be called concurrently with itself.
type EchoSuppressor struct {
	cfg       EchoConfig
	threshold float64     // mean square of a far-end frame at Threshold
	talk      atomic.Bool // the far end talked since the last Apply

	hold  int     // frames of full attenuation left
	atten float64 // current attenuation, dB
	gain  float64 // current linear gain, 10^(-atten/20)
}

// NewEchoSuppressor returns a suppressor at full microphone level.
func NewEchoSuppressor(cfg EchoConfig) (*EchoSuppressor, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("dsp: echo suppressor: %w", err)
	}
	rms := fullScale * math.Pow(10, cfg.Threshold/20) / math.Sqrt2
	return &EchoSuppressor{cfg: cfg, threshold: rms * rms, gain: 1}, nil
}

// FarEnd takes note of a frame about to be played by the speaker.
func (e *EchoSuppressor) FarEnd(frame []int16) {
	if len(frame) == 0 {
		return
	}
	var sum int64
	for _, x := range frame {
		sum += int64(x) * int64(x)
	}
	if float64(sum)/float64(len(frame)) > e.threshold {
		e.talk.Store(true)
	}
}

// Apply attenuates a microphone frame in place as the far end's recent
// talk requires, and moves the attenuation one frame on. An empty frame
// is no frame: it changes nothing.
func (e *EchoSuppressor) Apply(mic []int16) {
	if len(mic) == 0 {
		return
	}
	target := 0.0
	switch {
	case e.talk.Swap(false):
		e.hold = e.cfg.Hold
		target = e.cfg.Attenuation
	case e.hold > 0:
		e.hold--
		target = e.cfg.Attenuation
	}
	from := e.gain
	if target > e.atten {
		e.atten = min(target, e.atten+e.cfg.Attenuation/float64(e.cfg.Attack))
	} else {
		e.atten = max(target, e.atten-e.cfg.Attenuation/float64(e.cfg.Release))
	}
	e.gain = 1
	if e.atten > 0 {
		e.gain = math.Pow(10, -e.atten/20)
	}
	if from == 1 && e.gain == 1 {
		return
	}
	step := (e.gain - from) / float64(len(mic))
	for i, x := range mic {
		mic[i] = int16(math.Round(float64(x) * (from + step*float64(i+1))))
	}
}

// Attenuation returns the attenuation reached by the last Apply, in dB.
func (e *EchoSuppressor) Attenuation() float64 { return e.atten }
