// Package mediatest analyses audio in tests: the level of a tone in a
// signal, and the samples of a WAV file a peer recorded.
package mediatest

import (
	"math"

	"intercom/media/wav"
)

// Goertzel returns the amplitude of the freq component of samples taken at
// rate Hz, as a fraction of full scale: a full-scale sine at freq gives
// about 1, one at half scale about 0.5, silence 0. Frequencies far from
// freq (more than rate/len(samples)) contribute little.
func Goertzel(samples []int16, rate, freq float64) float64 {
	if len(samples) == 0 || rate <= 0 {
		return 0
	}
	w := 2 * math.Pi * freq / rate
	coeff := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range samples {
		s0 := float64(x)/32768 + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * math.Sqrt(max(power, 0)) / float64(len(samples))
}

// ReadWAV returns the samples of a 16-bit PCM WAV file (its first channel)
// and its sample rate.
func ReadWAV(path string) ([]int16, int, error) {
	return wav.ReadFile(path)
}
