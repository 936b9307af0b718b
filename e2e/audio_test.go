package e2e

import (
	"fmt"
	"intercom/media/measure"
	"intercom/media/wav"
	"testing"
)

// Tone checks: a tone counts as heard when its Goertzel amplitude is above
// minToneLevel of full scale and toneContrast times the level at a
// neighbouring frequency. The test WAVs are sines at half scale.
const (
	minToneLevel = 0.1
	toneContrast = 10.0
)

// toneLevels returns the Goertzel amplitudes of freq and other in a WAV.
func toneLevels(path string, freq, other float64) (level, ref float64, err error) {
	samples, rate, err := wav.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	if len(samples) < rate/2 {
		return 0, 0, fmt.Errorf("%s: only %d samples", path, len(samples))
	}
	return measure.Goertzel(samples, float64(rate), freq), measure.Goertzel(samples, float64(rate), other), nil
}

// heardTone is a condition: the WAV at path carries freq, clearly above
// other. It fails while the file is missing or still too short.
func heardTone(path string, freq, other float64) func() error {
	return func() error {
		level, ref, err := toneLevels(path, freq, other)
		if err != nil {
			return err
		}
		if level < minToneLevel || level < toneContrast*ref {
			return fmt.Errorf("%s: %.0f Hz at %.4f of full scale, %.0f Hz at %.4f; want at least %.2f and %.0fx",
				path, freq, level, other, ref, minToneLevel, toneContrast)
		}
		return nil
	}
}

// assertTone fails the test unless the WAV at path carries freq.
func assertTone(t testing.TB, what, path string, freq, other float64) {
	t.Helper()
	if err := heardTone(path, freq, other)(); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	level, ref, _ := toneLevels(path, freq, other)
	t.Logf("%s: %.0f Hz at %.3f of full scale, %.0f Hz at %.4f", what, freq, level, other, ref)
}
