package resample

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"intercom/media/measure"
)

func tone(freq, amp float64, rate, n int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
	}
	return out
}

func mustNew(t testing.TB, in, out int) *Resampler {
	t.Helper()
	r, err := New(in, out)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run converts src in frames of frame samples, as a stream.
func run(t testing.TB, r *Resampler, src []int16, frame int) []int16 {
	t.Helper()
	var out []int16
	buf := make([]int16, r.OutLen(frame)+1)
	for len(src) > 0 {
		n := min(frame, len(src))
		w, err := r.Process(buf, src[:n])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:w]...)
		src = src[n:]
	}
	return out
}

func db(x float64) float64 { return 20 * math.Log10(x) }

func TestToneSurvivesRoundTrip(t *testing.T) {
	for _, rate := range []int{16000, 44100, 48000} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			src := tone(1000, 0.5, 8000, 8000)
			up := run(t, mustNew(t, 8000, rate), src, 160)
			if len(up) != rate {
				t.Fatalf("1 s at 8 kHz became %d samples at %d Hz", len(up), rate)
			}
			// Skip the filter's start-up; compare whole periods.
			if got := measure.Goertzel(up[rate/10:], float64(rate), 1000); math.Abs(db(got/0.5)) > 0.5 {
				t.Errorf("1 kHz at %d Hz: level %.4f (%.2f dB), want 0.5 within 0.5 dB", rate, got, db(got/0.5))
			}
			// Images of the 8 kHz spectrum (7 and 9 kHz) must be filtered out.
			if rate > 16000 {
				for _, f := range []float64{7000, 9000} {
					if got := measure.Goertzel(up[rate/10:], float64(rate), f); db(got/0.5) > -40 {
						t.Errorf("image at %v Hz: %.1f dB, want below -40 dB", f, db(got/0.5))
					}
				}
			}
			back := run(t, mustNew(t, rate, 8000), up, rate/50)
			if len(back) != 8000 {
				t.Fatalf("round trip gave %d samples, want 8000", len(back))
			}
			got := measure.Goertzel(back[800:], 8000, 1000)
			if math.Abs(db(got/0.5)) > 0.5 {
				t.Errorf("1 kHz after 8k->%d->8k: level %.4f (%.2f dB), want 0.5 within 0.5 dB", rate, got, db(got/0.5))
			}
		})
	}
}

func TestAntiAliasing(t *testing.T) {
	for _, rate := range []int{44100, 48000} {
		r := mustNew(t, rate, 8000)
		// 6 kHz would fold to 2 kHz at 8 kHz; 4.5 kHz to 3.5 kHz.
		for _, c := range []struct{ f, alias float64 }{{6000, 2000}, {4500, 3500}, {10000, 2000}} {
			r.Reset()
			out := run(t, r, tone(c.f, 0.5, rate, rate), rate/50)
			rms, _ := measure.Level(out[800:])
			alias := measure.Goertzel(out[800:], 8000, c.alias)
			// A 0.5 sine has an RMS of 0.354 and a Goertzel level of 0.5.
			if db(rms/0.354) > -40 || db(alias/0.5) > -40 {
				t.Errorf("%v Hz at %d Hz to 8 kHz: RMS %.1f dB, alias at %v Hz %.1f dB, want both below -40 dB",
					c.f, rate, db(rms/0.354), c.alias, db(alias/0.5))
			}
		}
	}
}

func TestNoDriftOverLongStreams(t *testing.T) {
	// 44.1 kHz is the rate whose frames do not divide evenly at every
	// size; the others run shorter to keep the test fast under -race.
	for _, c := range []struct{ in, out, frame, frames int }{
		{8000, 44100, 80, 10000}, {44100, 8000, 44, 10000}, {8000, 44100, 7, 10000}, {44100, 8000, 1000, 1000},
		{8000, 48000, 160, 1000}, {8000, 22050, 80, 1000}, {8000, 16000, 80, 1000},
		{48000, 8000, 960, 1000}, {16000, 8000, 1, 1000}, {44100, 48000, 441, 1000},
	} {
		r := mustNew(t, c.in, c.out)
		src := make([]int16, c.frame)
		dst := make([]int16, r.OutLen(c.frame)+1)
		var total int
		for i := range c.frames {
			want := r.OutLen(c.frame)
			n, err := r.Process(dst, src)
			if err != nil {
				t.Fatal(err)
			}
			if n != want {
				t.Fatalf("%d->%d frame %d: wrote %d, OutLen said %d", c.in, c.out, i, n, want)
			}
			total += n
		}
		in := c.frames * c.frame
		if want := int((int64(in)*int64(c.out) + int64(c.in) - 1) / int64(c.in)); total != want {
			t.Errorf("%d->%d: %d inputs gave %d outputs, want %d", c.in, c.out, in, total, want)
		}
	}
}

func TestInLenGivesExactFramesWhenDownsampling(t *testing.T) {
	for _, in := range []int{16000, 22050, 44100, 48000, 96000} {
		r := mustNew(t, in, 8000)
		src := make([]int16, in/10)
		dst := make([]int16, 160)
		for i := range 200 {
			n := r.InLen(160)
			if r.OutLen(n) != 160 || r.OutLen(n-1) != 159 {
				t.Fatalf("%d Hz frame %d: InLen(160) = %d, OutLen of it %d, of one less %d", in, i, n, r.OutLen(n), r.OutLen(n-1))
			}
			if w, err := r.Process(dst, src[:n]); err != nil || w != 160 {
				t.Fatalf("%d Hz frame %d: Process = %d, %v", in, i, w, err)
			}
		}
	}
	if n := mustNew(t, 48000, 8000).InLen(0); n != 0 {
		t.Errorf("InLen(0) = %d", n)
	}
}

// A stream cut into frames of any lengths comes out the same as whole: the
// state carries over, so frame boundaries cannot click.
func TestFramingDoesNotMatter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := make([]int16, 20000)
	for i := range src {
		src[i] = int16(rng.IntN(20000) - 10000)
	}
	for _, c := range [][2]int{{8000, 44100}, {48000, 8000}, {44100, 8000}, {8000, 16000}} {
		whole := run(t, mustNew(t, c[0], c[1]), src, len(src))
		r := mustNew(t, c[0], c[1])
		var cut []int16
		buf := make([]int16, r.OutLen(200)+1)
		for rest := src; len(rest) > 0; {
			n := min(rng.IntN(200), len(rest))
			w, err := r.Process(buf, rest[:n])
			if err != nil {
				t.Fatal(err)
			}
			cut = append(cut, buf[:w]...)
			rest = rest[n:]
		}
		if !slices.Equal(whole, cut) {
			t.Errorf("%d->%d: output in random frames differs from the whole", c[0], c[1])
		}
	}
}

func TestLoudInputClipsWithoutWrapping(t *testing.T) {
	r := mustNew(t, 8000, 48000)
	// A full-scale square wave overshoots through a low-pass filter.
	src := make([]int16, 800)
	for i := range src {
		src[i] = math.MaxInt16
		if i/4%2 == 1 {
			src[i] = math.MinInt16
		}
	}
	out := run(t, r, src, 160)
	for i := 1; i < len(out); i++ {
		if d := int(out[i]) - int(out[i-1]); d > 40000 || d < -40000 {
			t.Fatalf("jump of %d at %d: the output wrapped around", d, i)
		}
	}
}

func TestEqualRatesCopy(t *testing.T) {
	r := mustNew(t, 8000, 8000)
	src := []int16{1, -2, 3}
	dst := make([]int16, 3)
	if n, err := r.Process(dst, src); n != 3 || err != nil || !slices.Equal(dst, src) {
		t.Errorf("Process = %d, %v, %v", n, err, dst)
	}
	if r.OutLen(5) != 5 || r.InLen(5) != 5 || r.Delay() != 0 {
		t.Errorf("OutLen %d InLen %d Delay %v", r.OutLen(5), r.InLen(5), r.Delay())
	}
	if _, err := r.Process(dst[:2], src); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("short copy: %v", err)
	}
}

func TestShortBufferChangesNothing(t *testing.T) {
	r := mustNew(t, 8000, 48000)
	src := tone(1000, 0.5, 8000, 160)
	ref := run(t, mustNew(t, 8000, 48000), src, 160)
	if _, err := r.Process(make([]int16, 959), src); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("Process into 959 samples: %v, want ErrShortBuffer", err)
	}
	if got := run(t, r, src, 160); !slices.Equal(got, ref) {
		t.Error("a refused Process changed the state")
	}
}

func TestReset(t *testing.T) {
	r := mustNew(t, 44100, 8000)
	src := tone(1000, 0.5, 44100, 1000)
	first := run(t, r, src, 1000)
	r.Reset()
	if again := run(t, r, src, 1000); !slices.Equal(first, again) {
		t.Error("after Reset the same input gave a different output")
	}
}

func TestNewRefusesOddRates(t *testing.T) {
	for _, c := range [][2]int{{0, 8000}, {8000, -1}, {4000, 8000}, {8000, 1000000}} {
		if _, err := New(c[0], c[1]); err == nil {
			t.Errorf("New(%d, %d) succeeded", c[0], c[1])
		}
	}
	r := mustNew(t, 8000, 48000)
	if in, out := r.Rates(); in != 8000 || out != 48000 {
		t.Errorf("Rates() = %d, %d", in, out)
	}
	// 48 taps at 8 kHz: 3 ms, less a half-sample at 48 kHz.
	if d := r.Delay(); math.Abs(d-0.003) > 0.0001 {
		t.Errorf("Delay() = %v, want about 3 ms", d)
	}
}

func TestProcessDoesNotAllocate(t *testing.T) {
	r := mustNew(t, 8000, 44100)
	src, dst := make([]int16, 160), make([]int16, 883)
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Process(dst, src) }); n != 0 {
		t.Errorf("Process allocates %v times per frame", n)
	}
}

func benchmark(b *testing.B, in, out, frame int) {
	r := mustNew(b, in, out)
	src := tone(1000, 0.5, in, frame)
	dst := make([]int16, r.OutLen(frame)+1)
	b.ReportAllocs()
	b.SetBytes(int64(2 * frame))
	for b.Loop() {
		if _, err := r.Process(dst, src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUp8kTo48k(b *testing.B)    { benchmark(b, 8000, 48000, 160) }
func BenchmarkUp8kTo44k1(b *testing.B)   { benchmark(b, 8000, 44100, 160) }
func BenchmarkDown48kTo8k(b *testing.B)  { benchmark(b, 48000, 8000, 960) }
func BenchmarkDown44k1To8k(b *testing.B) { benchmark(b, 44100, 8000, 882) }
func BenchmarkDown16kTo8k(b *testing.B)  { benchmark(b, 16000, 8000, 320) }
