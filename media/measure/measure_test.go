package measure

import (
	"math"
	"testing"
)

func sine(freq, amp float64, n int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i)/8000))
	}
	return out
}

func TestGoertzel(t *testing.T) {
	tone := sine(440, 0.5, 8000)
	for _, tc := range []struct {
		samples  []int16
		freq     float64
		min, max float64
	}{
		{tone, 440, 0.48, 0.52},
		{tone, 1000, 0, 0.01},
		{tone, 480, 0, 0.01},
		{sine(440, 1, 800), 440, 0.95, 1.05},
		{make([]int16, 800), 440, 0, 0},
		{nil, 440, 0, 0},
	} {
		if got := Goertzel(tc.samples, 8000, tc.freq); got < tc.min || got > tc.max {
			t.Errorf("Goertzel(%d samples, %v Hz) = %.4f, want %.2f..%.2f", len(tc.samples), tc.freq, got, tc.min, tc.max)
		}
	}
	if got := Goertzel(tone, 0, 440); got != 0 {
		t.Errorf("Goertzel at rate 0 = %v, want 0", got)
	}
}

func TestLevel(t *testing.T) {
	for _, tc := range []struct {
		name      string
		samples   []int16
		rms, peak float64
	}{
		{"none", nil, 0, 0},
		{"silence", make([]int16, 100), 0, 0},
		{"half-scale sine", sine(1000, 0.5, 8000), 0.5 / math.Sqrt2, 0.5},
		{"full negative", []int16{-32768, -32768}, 1, 1},
		{"square", []int16{16384, -16384, 16384, -16384}, 0.5, 0.5},
	} {
		rms, peak := Level(tc.samples)
		if math.Abs(rms-tc.rms) > 0.001 || math.Abs(peak-tc.peak) > 0.001 {
			t.Errorf("%s: Level = %.4f, %.4f; want %.4f, %.4f", tc.name, rms, peak, tc.rms, tc.peak)
		}
	}
}

func TestDBFS(t *testing.T) {
	for _, tc := range []struct{ x, want float64 }{{1, 0}, {0.5, -6.02}, {0.1, -20}} {
		if got := DBFS(tc.x); math.Abs(got-tc.want) > 0.01 {
			t.Errorf("DBFS(%v) = %.2f, want %.2f", tc.x, got, tc.want)
		}
	}
	if got := DBFS(0); !math.IsInf(got, -1) {
		t.Errorf("DBFS(0) = %v, want -Inf", got)
	}
}

func TestOnset(t *testing.T) {
	for _, start := range []int{0, 1, 123, 800, 4000} {
		samples := make([]int16, 8000)
		copy(samples[start:], sine(1000, 0.5, 8000-start))
		// Another tone before and during does not move it.
		for i, v := range sine(440, 0.3, 8000) {
			samples[i] += v
		}
		got, ok := Onset(samples, 8000, 1000, 0.5)
		if !ok || got < start-8 || got > start+8 {
			t.Errorf("tone from %d: Onset = %d, %v; want within 1ms", start, got, ok)
		}
	}
	if _, ok := Onset(sine(440, 0.5, 8000), 8000, 1000, 0.5); ok {
		t.Error("Onset found a 1000 Hz tone in 440 Hz")
	}
	if _, ok := Onset(make([]int16, 10), 8000, 1000, 0.5); ok {
		t.Error("Onset found a tone in fewer samples than a window")
	}
}

func BenchmarkGoertzel(b *testing.B) {
	frame := sine(1000, 0.5, 160)
	b.ReportAllocs()
	for b.Loop() {
		Goertzel(frame, 8000, 1000)
	}
}
