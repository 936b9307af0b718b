package mediatest

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"intercom/media/wav"
)

func sine(freq, amp float64, n int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i)/8000))
	}
	return out
}

func TestReadWAV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.wav")
	w, err := wav.Create(path, 8000)
	if err != nil {
		t.Fatal(err)
	}
	in := sine(440, 0.5, 400)
	w.Write(in)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, rate, err := ReadWAV(path)
	if err != nil || rate != 8000 || !slices.Equal(got, in) {
		t.Fatalf("ReadWAV = %d samples, %d Hz, %v", len(got), rate, err)
	}
	if _, _, err := ReadWAV(filepath.Join(t.TempDir(), "none.wav")); err == nil {
		t.Fatal("ReadWAV of a missing file succeeded")
	}
}
