// Package dsp shapes the level of 8 kHz int16 audio frames in place: a gain
// with a soft limiter for microphone and speaker, and an echo suppressor for
// stations whose speaker and microphone sit close together.
package dsp

import (
	"fmt"
	"math"
)

// The range NewGain accepts, in dB.
const (
	MinGainDB = -60.0
	MaxGainDB = 40.0
)

// KneeDB is where the soft limiter starts bending the signal, in dBFS:
// below it an amplified signal is left exactly as scaled.
const KneeDB = -3.0

const fullScale = 32768.0

var knee = fullScale * math.Pow(10, KneeDB/20)

// Gain scales frames by a fixed number of dB. The zero Gain is 0 dB and
// leaves frames untouched. A Gain is immutable and safe for concurrent use.
type Gain struct {
	excess float64 // linear gain minus 1, so that the zero value is unity
}

// NewGain returns a gain of db decibels, from MinGainDB to MaxGainDB.
func NewGain(db float64) (Gain, error) {
	if !(db >= MinGainDB && db <= MaxGainDB) { // also rejects NaN
		return Gain{}, fmt.Errorf("dsp: gain %g dB is outside %g..%g dB", db, MinGainDB, MaxGainDB)
	}
	return Gain{excess: math.Pow(10, db/20) - 1}, nil
}

// Apply scales frame in place. An amplifying gain passes through a soft
// limiter: above KneeDB the level bends smoothly (a tanh curve whose slope
// matches at the knee) toward full scale, which only rounding reaches, so
// loud input is compressed instead of clipped. An attenuating gain cannot
// overflow and is applied as it is.
func (g Gain) Apply(frame []int16) {
	lin := 1 + g.excess
	switch {
	case lin == 1:
	case lin < 1:
		for i, x := range frame {
			frame[i] = int16(math.Round(float64(x) * lin))
		}
	default:
		for i, x := range frame {
			frame[i] = limit(float64(x) * lin)
		}
	}
}

// limit maps v, in sample units and of any size, into int16 through the
// soft knee, symmetrically: -32768 is never produced.
func limit(v float64) int16 {
	a := math.Abs(v)
	if a <= knee {
		return int16(math.Round(v))
	}
	a = knee + (fullScale-knee)*math.Tanh((a-knee)/(fullScale-knee))
	return int16(math.Copysign(min(math.Round(a), math.MaxInt16), v))
}
