// Package measure analyses 16-bit audio as installers and tests need it:
// its level in dBFS, the amplitude of a tone (Goertzel), and where a tone
// starts. It is plain arithmetic on samples, with no I/O.
package measure

import "math"

// fullScale is the magnitude that counts as 1 (0 dBFS).
const fullScale = 32768

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
		s0 := float64(x)/fullScale + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * math.Sqrt(max(power, 0)) / float64(len(samples))
}

// Level returns the RMS and the peak magnitude of samples as fractions of
// full scale (0 for no samples).
func Level(samples []int16) (rms, peak float64) {
	if len(samples) == 0 {
		return 0, 0
	}
	var sum float64
	for _, x := range samples {
		v := float64(x) / fullScale
		sum += v * v
		peak = max(peak, math.Abs(v))
	}
	return math.Sqrt(sum / float64(len(samples))), peak
}

// DBFS converts a fraction of full scale to decibels; silence is -Inf.
func DBFS(x float64) float64 { return 20 * math.Log10(x) }

// Onset returns the index of the first sample of the freq tone in samples:
// where its Goertzel amplitude over a sliding window first reaches half of
// level. A window of about 10 ms resolves the onset to about 1 ms (the
// step). A tone already sounding in the first window starts at 0. It
// returns false when the tone never reaches that amplitude.
func Onset(samples []int16, rate, freq, level float64) (int, bool) {
	window := max(int(rate/100), 1)
	step := max(window/10, 1)
	for i := 0; i+window <= len(samples); i += step {
		if Goertzel(samples[i:i+window], rate, freq) < level/2 {
			continue
		}
		if i == 0 {
			return 0, true
		}
		// The amplitude over the window grows with the part of it the tone
		// fills: half the level means the tone fills half.
		return i + window/2, true
	}
	return 0, false
}
