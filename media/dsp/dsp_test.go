package dsp_test

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"intercom/media/dsp"
	"intercom/media/measure"
)

// sine returns n samples of a freq Hz sine whose peak is at level dBFS.
func sine(n int, freq, level float64) []int16 {
	out := make([]int16, n)
	amp := 32767 * math.Pow(10, level/20)
	for k := range out {
		out[k] = int16(math.Round(amp * math.Sin(2*math.Pi*freq/8000*float64(k))))
	}
	return out
}

func dB(x float64) float64 { return 20 * math.Log10(x) }

func level(frame []int16) float64 { return dB(measure.Goertzel(frame, 8000, 1000)) }

func mustGain(t testing.TB, db float64) dsp.Gain {
	t.Helper()
	g, err := dsp.NewGain(db)
	if err != nil {
		t.Fatalf("NewGain(%g): %v", db, err)
	}
	return g
}

func TestNewGainRange(t *testing.T) {
	for _, db := range []float64{dsp.MinGainDB, 0, dsp.MaxGainDB} {
		if _, err := dsp.NewGain(db); err != nil {
			t.Errorf("NewGain(%g): %v", db, err)
		}
	}
	for _, db := range []float64{dsp.MinGainDB - 0.1, dsp.MaxGainDB + 0.1, math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := dsp.NewGain(db); err == nil || !strings.HasPrefix(err.Error(), "dsp: gain ") {
			t.Errorf("NewGain(%g) = %v, want a dsp: gain error", db, err)
		}
	}
}

func TestUnityGainIsExact(t *testing.T) {
	in := []int16{math.MinInt16, -1, 0, 1, 23170, math.MaxInt16}
	for _, g := range []dsp.Gain{{}, mustGain(t, 0)} {
		frame := slices.Clone(in)
		g.Apply(frame)
		if !slices.Equal(frame, in) {
			t.Errorf("%+v changed %v into %v", g, in, frame)
		}
	}
	dsp.Gain{}.Apply(nil)
	mustGain(t, 6).Apply([]int16{})
}

// TestGainBelowKnee: where the amplified signal stays under the knee, the
// limiter is not there: every sample is the scaled input, and the measured
// gain is the one asked for.
func TestGainBelowKnee(t *testing.T) {
	for _, db := range []float64{0.5, 3, 6, 20, 40} {
		in := sine(800, 1000, dsp.KneeDB-db-0.2)
		out := slices.Clone(in)
		mustGain(t, db).Apply(out)
		lin := math.Pow(10, db/20)
		for k := range in {
			if want := math.Round(float64(in[k]) * lin); float64(out[k]) != want {
				t.Fatalf("%g dB: sample %d: %d, want %g", db, k, out[k], want)
			}
		}
		if got := level(out) - level(in); math.Abs(got-db) > 0.1 {
			t.Errorf("%g dB: measured %.3f dB", db, got)
		}
	}
	in := sine(800, 1000, -12)
	out := slices.Clone(in)
	mustGain(t, 6).Apply(out)
	if r := measure.Goertzel(out, 8000, 1000) / measure.Goertzel(in, 8000, 1000); r < 1.98 || r > 2.01 {
		t.Errorf("+6 dB: amplitude ratio %.4f, want 2", r)
	}
}

func TestAttenuation(t *testing.T) {
	frame := []int16{math.MinInt16, -1001, 1000, math.MaxInt16}
	mustGain(t, -20*math.Log10(2)).Apply(frame)
	if want := []int16{-16384, -501, 500, 16384}; !slices.Equal(frame, want) {
		t.Errorf("-6.02 dB: %v, want %v", frame, want)
	}
}

// TestLimiter sweeps every input value through high gains: the output is
// monotonic, keeps its sign, never reaches full scale's wrap-around, never
// exceeds the linear result, and bends without a kink at the knee.
func TestLimiter(t *testing.T) {
	for _, db := range []float64{3, 12, 40} {
		g := mustGain(t, db)
		lin := math.Pow(10, db/20)
		in := make([]int16, 65536)
		for i := range in {
			in[i] = int16(i - 32768)
		}
		out := slices.Clone(in)
		g.Apply(out)
		knee := 32768 * math.Pow(10, dsp.KneeDB/20)
		for i := range in {
			x, y := float64(in[i]), float64(out[i])
			if i > 0 && out[i] < out[i-1] {
				t.Fatalf("%g dB: not monotonic at %d: %d after %d", db, in[i], out[i], out[i-1])
			}
			if math.Signbit(x) != math.Signbit(y) && y != 0 {
				t.Fatalf("%g dB: %d became %d", db, in[i], out[i])
			}
			if math.Abs(y) > math.Abs(x*lin)+0.5 {
				t.Fatalf("%g dB: %d became %d, above the linear %.1f", db, in[i], out[i], x*lin)
			}
			if i > 0 && y-float64(out[i-1]) > lin+1 {
				t.Fatalf("%g dB: jump of %d at %d", db, out[i]-out[i-1], in[i])
			}
			if a := math.Abs(x * lin); a > knee && a < knee+100 && math.Abs(y-x*lin) > 1 {
				t.Fatalf("%g dB: %d just above the knee became %d, want about %.1f", db, in[i], out[i], x*lin)
			}
		}
		if out[0] != -out[65535] {
			t.Errorf("%g dB: extremes %d, %d are not symmetric", db, out[0], out[65535])
		}
		// Where the linear result is full scale, a hard clipper would give
		// full scale; the knee gives tanh(1) of the way from knee to it.
		x := int16(math.Round(32768 / lin))
		y := []int16{x}
		g.Apply(y)
		want := knee + (32768-knee)*math.Tanh((float64(x)*lin-knee)/(32768-knee))
		if math.Abs(float64(y[0])-want) > 1 || y[0] > 32000 {
			t.Errorf("%g dB: %d became %d, want %.0f", db, x, y[0], want)
		}
	}
}

func mustEcho(t testing.TB, cfg dsp.EchoConfig) *dsp.EchoSuppressor {
	t.Helper()
	e, err := dsp.NewEchoSuppressor(cfg)
	if err != nil {
		t.Fatalf("NewEchoSuppressor(%+v): %v", cfg, err)
	}
	return e
}

// TestEchoSuppressor follows the attenuation frame by frame through far-end
// talk, the hold, and the release, on a constant microphone signal where
// each sample shows the gain applied to it.
func TestEchoSuppressor(t *testing.T) {
	cfg := dsp.EchoConfig{Attenuation: 20, Threshold: -40, Attack: 2, Hold: 3, Release: 4}
	e := mustEcho(t, cfg)
	talk := sine(160, 400, -20)
	quiet := sine(160, 400, -60)
	// far-end frames: 2 quiet, 6 talking, then quiet; want the attenuation
	// after each frame.
	want := []float64{0, 0, 10, 20, 20, 20, 20, 20, 20, 20, 20, 15, 10, 5, 0, 0}
	const mic = 10000
	prev := 1.0
	for f, w := range want {
		far := quiet
		if f >= 2 && f < 8 {
			far = talk
		}
		e.FarEnd(far)
		frame := make([]int16, 160)
		for i := range frame {
			frame[i] = mic
		}
		e.Apply(frame)
		if got := e.Attenuation(); math.Abs(got-w) > 1e-9 {
			t.Fatalf("frame %d: attenuation %g dB, want %g", f, got, w)
		}
		gain := math.Pow(10, -w/20)
		if last := frame[len(frame)-1]; last != int16(math.Round(mic*gain)) {
			t.Fatalf("frame %d: last sample %d, want %g", f, last, math.Round(mic*gain))
		}
		// The gain glides from the last frame's to this one's.
		maxStep := mic*math.Abs(gain-prev)/160 + 1
		p := mic * prev
		for i, v := range frame {
			if math.Abs(float64(v)-p) > maxStep {
				t.Fatalf("frame %d sample %d: jump from %.0f to %d", f, i, p, v)
			}
			p = float64(v)
		}
		prev = gain
	}
}

func TestEchoThreshold(t *testing.T) {
	cfg := dsp.EchoConfig{Attenuation: 12, Threshold: -40, Attack: 1, Hold: 0, Release: 1}
	e := mustEcho(t, cfg)
	e.FarEnd(sine(160, 1000, -41))
	frame := sine(160, 1000, -10)
	orig := slices.Clone(frame)
	e.Apply(frame)
	if !slices.Equal(frame, orig) || e.Attenuation() != 0 {
		t.Fatalf("far end below the threshold attenuated the microphone by %g dB", e.Attenuation())
	}
	e.FarEnd(sine(160, 1000, -39))
	e.Apply(frame)
	if e.Attenuation() != 12 {
		t.Fatalf("far end above the threshold: attenuation %g dB, want 12", e.Attenuation())
	}
	// Talk is noted once: without more of it, Hold 0 releases at once.
	e.Apply(frame)
	if e.Attenuation() != 0 {
		t.Fatalf("attenuation %g dB one frame after talk, want 0", e.Attenuation())
	}
	// Empty frames change nothing.
	e.FarEnd(nil)
	e.Apply(nil)
	e.Apply(frame[:0])
	if e.Attenuation() != 0 {
		t.Fatal("empty frames changed the attenuation")
	}
	e.FarEnd(sine(160, 1000, -20))
	e.Apply(nil)
	e.Apply(frame)
	if e.Attenuation() != 12 {
		t.Fatal("an empty microphone frame consumed the far end's talk")
	}
}

func TestEchoConfigValidation(t *testing.T) {
	if _, err := dsp.NewEchoSuppressor(dsp.DefaultEchoConfig()); err != nil {
		t.Fatalf("default: %v", err)
	}
	cases := []struct {
		edit func(*dsp.EchoConfig)
		msg  string
	}{
		{func(c *dsp.EchoConfig) { c.Attenuation = 0 }, "attenuation 0 dB"},
		{func(c *dsp.EchoConfig) { c.Attenuation = 61 }, "attenuation 61 dB"},
		{func(c *dsp.EchoConfig) { c.Attenuation = math.NaN() }, "attenuation NaN"},
		{func(c *dsp.EchoConfig) { c.Threshold = 0 }, "threshold 0 dBFS"},
		{func(c *dsp.EchoConfig) { c.Threshold = -91 }, "threshold -91 dBFS"},
		{func(c *dsp.EchoConfig) { c.Attack = 0 }, "attack 0 frames"},
		{func(c *dsp.EchoConfig) { c.Hold = -1 }, "hold -1 frames"},
		{func(c *dsp.EchoConfig) { c.Release = 0 }, "release 0 frames"},
	}
	for _, c := range cases {
		cfg := dsp.DefaultEchoConfig()
		c.edit(&cfg)
		e, err := dsp.NewEchoSuppressor(cfg)
		if err == nil || e != nil || !strings.HasPrefix(err.Error(), "dsp: echo suppressor: ") || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: %v, want an error saying %q", cfg, err, c.msg)
		}
	}
}

// TestEchoConcurrent is for -race: playout and capture run on their own
// goroutines.
func TestEchoConcurrent(t *testing.T) {
	e := mustEcho(t, dsp.DefaultEchoConfig())
	far := sine(160, 1000, -10)
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 1000 {
			e.FarEnd(far)
		}
	})
	mic := make([]int16, 160)
	for range 1000 {
		e.Apply(mic)
	}
	wg.Wait()
}

func TestNoAllocs(t *testing.T) {
	frame := sine(160, 1000, -6)
	g := mustGain(t, 12)
	if n := testing.AllocsPerRun(500, func() { g.Apply(frame) }); n != 0 {
		t.Errorf("Gain.Apply: %v allocs per frame", n)
	}
	e := mustEcho(t, dsp.DefaultEchoConfig())
	if n := testing.AllocsPerRun(500, func() { e.FarEnd(frame); e.Apply(frame) }); n != 0 {
		t.Errorf("EchoSuppressor: %v allocs per frame", n)
	}
}

func BenchmarkGain(b *testing.B) {
	g := mustGain(b, 12)
	src := sine(160, 1000, -6) // mostly above the knee once amplified
	frame := make([]int16, 160)
	b.ReportAllocs()
	for b.Loop() {
		copy(frame, src)
		g.Apply(frame)
	}
}

func BenchmarkEchoSuppressor(b *testing.B) {
	e := mustEcho(b, dsp.EchoConfig{Attenuation: 18, Threshold: -40, Attack: 1, Hold: 0, Release: 1})
	talk := sine(160, 1000, -10)
	frame := make([]int16, 160)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%2 == 0 { // alternate, so every frame is attenuated or released
			e.FarEnd(talk)
		}
		i++
		e.Apply(frame)
	}
}
