// Package mediatest supports audio tests: the level of a tone in a signal,
// the samples of a WAV file a peer recorded, and a private PulseAudio
// server that stands in for a sound card.
package mediatest

import (
	"intercom/media/measure"
	"intercom/media/wav"
)

// Goertzel returns the amplitude of the freq component of samples taken at
// rate Hz, as a fraction of full scale (see measure.Goertzel).
func Goertzel(samples []int16, rate, freq float64) float64 {
	return measure.Goertzel(samples, rate, freq)
}

// ReadWAV returns the samples of a 16-bit PCM WAV file (its first channel)
// and its sample rate.
func ReadWAV(path string) ([]int16, int, error) {
	return wav.ReadFile(path)
}
