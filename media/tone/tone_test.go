package tone_test

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/media/measure"
	"intercom/media/tone"
)

const rampSamples = 40 // 5 ms at 8 kHz

// render reads n samples of s from a new Generator, frame samples at a time.
func render(t testing.TB, s tone.Spec, n, frame int) []int16 {
	t.Helper()
	g, err := tone.New(s)
	if err != nil {
		t.Fatalf("New(%v): %v", s, err)
	}
	out := make([]int16, n)
	for i := 0; i < n; i += frame {
		if err := g.Read(out[i:min(i+frame, n)]); err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	return out
}

// wantStep is a step of a preset as the contract states it, in samples.
type wantStep struct {
	freqs   []float64
	on, off int
}

var presets = []struct {
	name   string
	spec   func() tone.Spec
	repeat bool
	steps  []wantStep
}{
	{"ringback", tone.Ringback, true, []wantStep{{[]float64{425}, 8000, 32000}}},
	{"ringback_us", tone.RingbackUS, true, []wantStep{{[]float64{440, 480}, 16000, 32000}}},
	{"busy", tone.Busy, true, []wantStep{{[]float64{425}, 4000, 4000}}},
	{"congestion", tone.Congestion, true, []wantStep{{[]float64{425}, 2000, 2000}}},
	{"unreachable", tone.Unreachable, true, []wantStep{
		{[]float64{950}, 2640, 0}, {[]float64{1400}, 2640, 0}, {[]float64{1800}, 2640, 8000}}},
	{"door_opened", tone.DoorOpened, false, []wantStep{{[]float64{880}, 800, 480}, {[]float64{1320}, 1200, 0}}},
	{"rejected", tone.Rejected, false, []wantStep{{[]float64{480}, 2000, 400}, {[]float64{320}, 4000, 0}}},
}

func cycleLen(steps []wantStep) int {
	n := 0
	for _, st := range steps {
		n += st.on + st.off
	}
	return n
}

func dB(x float64) float64 { return 20 * math.Log10(x) }

// TestPresets checks each preset's frequencies and level with a Goertzel
// filter over the steady part of each step, and that its silences are
// silent, over two cycles.
func TestPresets(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			s := p.spec()
			if s.Repeat != p.repeat || s.Level != tone.DefaultLevel {
				t.Fatalf("Repeat %t Level %g, want %t %g", s.Repeat, s.Level, p.repeat, tone.DefaultLevel)
			}
			cycle := cycleLen(p.steps)
			out := render(t, s, 2*cycle, 160)
			var all []float64
			for _, st := range p.steps {
				all = append(all, st.freqs...)
			}
			cycles := 2
			if !p.repeat {
				cycles = 1
				if m := max(slices.Max(out[cycle:]), -slices.Min(out[cycle:])); m != 0 {
					t.Fatalf("a finite tone went on after its end: peak %d", m)
				}
			}
			for c := range cycles {
				at := c * cycle
				for i, st := range p.steps {
					steady := out[at+rampSamples : at+st.on-rampSamples]
					want := math.Pow(10, tone.DefaultLevel/20) / float64(len(st.freqs))
					for _, f := range all {
						got := measure.Goertzel(steady, tone.SampleRate, f)
						if slices.Contains(st.freqs, f) {
							if d := dB(got) - dB(want); math.Abs(d) > 0.1 {
								t.Errorf("cycle %d step %d: %g Hz at %.2f dB from %.2f dBFS", c, i+1, f, d, dB(want))
							}
						} else if dB(got) > dB(want)-40 {
							t.Errorf("cycle %d step %d: %g Hz leaks at %.1f dBFS", c, i+1, f, dB(got))
						}
					}
					for k, v := range out[at+st.on : at+st.on+st.off] {
						if v != 0 {
							t.Fatalf("cycle %d step %d: off sample %d is %d", c, i+1, k, v)
						}
					}
					at += st.on + st.off
				}
			}
		})
	}
}

// reference computes sample k of a step's On part from the definition: a
// sum of sines from phase 0 under 5 ms raised-cosine ramps.
func reference(level float64, freqs []float64, on, k int) float64 {
	amp := math.MaxInt16 * math.Pow(10, level/20) / float64(len(freqs))
	var v float64
	for _, f := range freqs {
		v += amp * math.Sin(2*math.Pi*f/tone.SampleRate*float64(k))
	}
	r := min(rampSamples, on/2)
	ramp := func(j int) float64 {
		x := math.Sin(math.Pi * (float64(j) + 0.5) / float64(2*r))
		return x * x
	}
	if k < r {
		v *= ramp(k)
	} else if d := on - 1 - k; d < r {
		v *= ramp(d)
	}
	return v
}

// TestCadenceExact compares every sample of three cycles with the
// reference: a cadence off by a single sample, or a phase that drifts,
// fails it.
func TestCadenceExact(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			cycle := cycleLen(p.steps)
			out := render(t, p.spec(), 3*cycle, 160)
			cycles := 3
			if !p.repeat {
				cycles = 1
			}
			k := 0
			for c := range cycles {
				for i, st := range p.steps {
					for j := range st.on + st.off {
						want := 0.0
						if j < st.on {
							want = reference(tone.DefaultLevel, st.freqs, st.on, j)
						}
						if math.Abs(float64(out[k])-want) > 1 {
							t.Fatalf("cycle %d step %d sample %d (%d overall): got %d, want %.1f", c, i+1, j, k, out[k], want)
						}
						k++
					}
				}
			}
			for ; k < len(out); k++ {
				if out[k] != 0 {
					t.Fatalf("sample %d after the end of a finite tone is %d", k, out[k])
				}
			}
		})
	}
}

func TestFrameSizeDoesNotMatter(t *testing.T) {
	for _, p := range presets {
		n := 2*cycleLen(p.steps) + 123
		want := render(t, p.spec(), n, 160)
		for _, frame := range []int{1, 7, 80, 441, 16000} {
			if got := render(t, p.spec(), n, frame); !slices.Equal(got, want) {
				t.Errorf("%s: %d-sample frames differ from 160-sample frames", p.name, frame)
			}
		}
	}
}

// TestNoClicks bounds the sample-to-sample step everywhere by what a sine
// under the ramp can do, and checks each On part starts and ends near 0.
func TestNoClicks(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			out := render(t, p.spec(), 2*cycleLen(p.steps), 160)
			peak := math.MaxInt16 * math.Pow(10, tone.DefaultLevel/20)
			wmax := 0.0
			for _, st := range p.steps {
				wmax = max(wmax, 2*math.Pi*slices.Max(st.freqs)/tone.SampleRate)
			}
			limit := peak*(wmax+math.Pi/(2*rampSamples)) + 1
			for k := 1; k < len(out); k++ {
				if d := math.Abs(float64(out[k]) - float64(out[k-1])); d > limit {
					t.Fatalf("step of %.0f at sample %d, limit %.0f", d, k, limit)
				}
			}
			edge := peak*math.Pow(math.Sin(math.Pi*3.5/(2*rampSamples)), 2) + 1
			at := 0
			for range 2 {
				for _, st := range p.steps {
					for _, k := range []int{0, 1, 2, 3, st.on - 4, st.on - 3, st.on - 2, st.on - 1} {
						if v := math.Abs(float64(out[at+k])); v > edge {
							t.Fatalf("sample %d of an On part (%d long) is %.0f, want <= %.0f", k, st.on, v, edge)
						}
					}
					at += st.on + st.off
				}
			}
		})
	}
}

func TestFullScale(t *testing.T) {
	s := tone.RingbackUS()
	s.Level = 0
	out := render(t, s, 16000, 160)
	steady := out[rampSamples : 16000-rampSamples]
	for _, f := range []float64{440, 480} {
		if got := dB(measure.Goertzel(steady, tone.SampleRate, f)); math.Abs(got-dB(0.5)) > 0.1 {
			t.Errorf("%g Hz at %.2f dBFS, want %.2f", f, got, dB(0.5))
		}
	}
	// The two sines meet in phase every 1/40 s: the sum comes close to full
	// scale without wrapping around.
	if m := slices.Max(steady); m < 32000 {
		t.Errorf("peak %d, want near full scale", m)
	}
}

func TestDoneAndReset(t *testing.T) {
	g, err := tone.New(tone.DoorOpened())
	if err != nil {
		t.Fatal(err)
	}
	total := 800 + 480 + 1200
	first := make([]int16, total)
	if err := g.Read(first[:total-1]); err != nil {
		t.Fatal(err)
	}
	if g.Done() {
		t.Fatal("Done one sample before the end")
	}
	if err := g.Read(first[total-1:]); err != nil {
		t.Fatal(err)
	}
	if !g.Done() {
		t.Fatal("not Done at the end")
	}
	after := []int16{1, 2, 3}
	if err := g.Read(after); err != nil || !slices.Equal(after, []int16{0, 0, 0}) {
		t.Fatalf("after the end: %v, %v; want silence", after, err)
	}
	g.Reset()
	if g.Done() {
		t.Fatal("Done after Reset")
	}
	again := make([]int16, total)
	if err := g.Read(again); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again, first) {
		t.Fatal("replay after Reset differs")
	}

	r, err := tone.New(tone.Ringback())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Read(make([]int16, 10*40000)); err != nil || r.Done() {
		t.Fatalf("repeating tone: err %v, Done %t after 10 cycles", err, r.Done())
	}
}

func TestEmptyRead(t *testing.T) {
	g, err := tone.New(tone.Busy())
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Read(nil); err != nil {
		t.Fatal(err)
	}
	if err := g.Read([]int16{}); err != nil {
		t.Fatal(err)
	}
	got := make([]int16, 8000)
	if err := g.Read(got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, render(t, tone.Busy(), 8000, 8000)) {
		t.Fatal("empty reads moved the tone on")
	}
}

func TestParseCadence(t *testing.T) {
	ok := []struct {
		in   string
		want []tone.Step
	}{
		{"425@1s/4s", tone.Ringback().Steps},
		{"440+480@2s/4s", tone.RingbackUS().Steps},
		{" 425 @ 500ms / 0.5s ", tone.Busy().Steps},
		{"950@330ms/0,1400@330ms/0s,1800@330ms/1s", tone.Unreachable().Steps},
		{"400+450@400ms/200ms,400ms/2s", []tone.Step{
			{Freqs: []float64{400, 450}, On: 400 * time.Millisecond, Off: 200 * time.Millisecond},
			{Freqs: []float64{400, 450}, On: 400 * time.Millisecond, Off: 2 * time.Second}}},
		{"1000@125us/0", []tone.Step{{Freqs: []float64{1000}, On: 125 * time.Microsecond}}},
		{"3999.5@1m/1m", []tone.Step{{Freqs: []float64{3999.5}, On: time.Minute, Off: time.Minute}}},
	}
	for _, c := range ok {
		s, err := tone.ParseCadence(c.in)
		if err != nil {
			t.Errorf("ParseCadence(%q): %v", c.in, err)
			continue
		}
		if !s.Repeat || s.Level != tone.DefaultLevel || !stepsEqual(s.Steps, c.want) {
			t.Errorf("ParseCadence(%q) = %+v, want repeating steps %+v at %g dBFS", c.in, s, c.want, tone.DefaultLevel)
		}
	}

	bad := []struct{ in, msg string }{
		{"", "empty"},
		{"   ", "empty"},
		{"425", "no frequency"},
		{"1s/4s", "no frequency"},
		{"425@1s", "not ON/OFF"},
		{"@1s/4s", `frequency "" is not a number`},
		{"425+@1s/4s", `frequency "" is not a number`},
		{"abc@1s/4s", `frequency "abc" is not a number`},
		{"425Hz@1s/4s", `frequency "425Hz" is not a number`},
		{"0@1s/4s", "frequency 0 Hz is outside"},
		{"-425@1s/4s", "outside"},
		{"4000@1s/4s", "frequency 4000 Hz is outside"},
		{"NaN@1s/4s", "outside"},
		{"Inf@1s/4s", "outside"},
		{"425@0/4s", "step 1: on 0s is not positive"},
		{"425@0s/0s", "on 0s is not positive"},
		{"425@-1s/4s", "not positive"},
		{"425@1s/-4s", "off -4s is negative"},
		{"425@1x/4s", "step 1: on: "},
		{"425@1s/", "step 1: off: "},
		{"425@1s/4s,", "step 2:"},
		{"425@1s/4s,,425@1s/1s", "step 2:"},
		{"425@1s/4s,425@100us/0", "step 2: on 100µs is not a whole number of samples at 8000 Hz"},
		{"425@61s/4s", "on 1m1s is longer than 1m0s"},
	}
	for _, c := range bad {
		s, err := tone.ParseCadence(c.in)
		if err == nil {
			t.Errorf("ParseCadence(%q) = %v, want an error", c.in, s)
			continue
		}
		if !strings.HasPrefix(err.Error(), "tone: cadence ") || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseCadence(%q): %q, want it to say %q", c.in, err, c.msg)
		}
	}
}

func stepsEqual(a, b []tone.Step) bool {
	return slices.EqualFunc(a, b, func(x, y tone.Step) bool {
		return slices.Equal(x.Freqs, y.Freqs) && x.On == y.On && x.Off == y.Off
	})
}

func TestStringRoundTrip(t *testing.T) {
	for _, p := range presets {
		s := p.spec()
		back, err := tone.ParseCadence(s.String())
		if err != nil || !stepsEqual(back.Steps, s.Steps) {
			t.Errorf("%s: ParseCadence(%q) = %+v, %v", p.name, s.String(), back.Steps, err)
		}
	}
	if got := tone.RingbackUS().String(); got != "440+480@2s/4s" {
		t.Errorf("RingbackUS().String() = %q", got)
	}
}

func TestValidate(t *testing.T) {
	good := tone.Ringback()
	if err := good.Validate(); err != nil {
		t.Fatalf("Ringback: %v", err)
	}
	cases := []struct {
		name string
		edit func(*tone.Spec)
		msg  string
	}{
		{"no steps", func(s *tone.Spec) { s.Steps = nil }, "tone: no steps"},
		{"loud", func(s *tone.Spec) { s.Level = 0.5 }, "level 0.5 dBFS is outside -90..0"},
		{"quiet", func(s *tone.Spec) { s.Level = -91 }, "outside"},
		{"nan level", func(s *tone.Spec) { s.Level = math.NaN() }, "outside"},
		{"no freqs", func(s *tone.Spec) { s.Steps[0].Freqs = nil }, "step 1: no frequency"},
		{"zero on", func(s *tone.Spec) { s.Steps[0].On = 0 }, "step 1: on 0s is not positive"},
		{"long off", func(s *tone.Spec) { s.Steps[0].Off = time.Hour }, "off 1h0m0s is longer"},
		{"odd off", func(s *tone.Spec) { s.Steps[0].Off = time.Second + 1 }, "not a whole number of samples"},
	}
	for _, c := range cases {
		s := tone.Ringback()
		c.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: Validate() = %v, want %q", c.name, err, c.msg)
		}
		if g, err := tone.New(s); err == nil || g != nil {
			t.Errorf("%s: New accepted it", c.name)
		}
	}
	// Level 0 and MinLevel are the inclusive bounds.
	for _, l := range []float64{0, tone.MinLevel} {
		s := tone.Ringback()
		s.Level = l
		if err := s.Validate(); err != nil {
			t.Errorf("Level %g: %v", l, err)
		}
	}
}

func TestShortStepRamps(t *testing.T) {
	// A step shorter than two ramps is faded over half its length each way,
	// and its single sample is still produced.
	s := tone.Spec{Steps: []tone.Step{{Freqs: []float64{1000}, On: 30 * sampleDur, Off: 10 * sampleDur}}}
	out := render(t, s, 40, 40)
	for k := range 30 {
		if want := reference(0, []float64{1000}, 30, k); math.Abs(float64(out[k])-want) > 1 {
			t.Fatalf("sample %d: %d, want %.1f", k, out[k], want)
		}
	}
	one := render(t, tone.Spec{Steps: []tone.Step{{Freqs: []float64{1000}, On: sampleDur}}}, 2, 2)
	if !slices.Equal(one, []int16{0, 0}) { // sin(0) = 0
		t.Fatalf("one-sample tone: %v", one)
	}
}

const sampleDur = time.Second / tone.SampleRate

func TestOverlay(t *testing.T) {
	var o tone.Overlay
	frame := []int16{5, -5, 7}
	o.Mix(frame)
	if !slices.Equal(frame, []int16{5, -5, 7}) || o.Playing() {
		t.Fatalf("zero Overlay changed the frame: %v", frame)
	}

	g, err := tone.New(tone.DoorOpened())
	if err != nil {
		t.Fatal(err)
	}
	o.Play(g)
	if !o.Playing() {
		t.Fatal("not playing after Play")
	}
	total := 800 + 480 + 1200
	ref := render(t, tone.DoorOpened(), total, total)
	// A loud voice under the tone: the sum saturates instead of wrapping.
	var mixed []int16
	for len(mixed) < total {
		f := make([]int16, 160)
		for i := range f {
			f[i] = 30000
			if i%2 == 1 {
				f[i] = -30000
			}
		}
		o.Mix(f)
		mixed = append(mixed, f...)
	}
	for k, v := range mixed {
		base := int32(30000)
		if k%2 == 1 {
			base = -30000
		}
		want := base
		if k < total {
			want = min(max(base+int32(ref[k]), math.MinInt16), math.MaxInt16)
		}
		if int32(v) != want {
			t.Fatalf("sample %d: %d, want %d", k, v, want)
		}
	}
	if o.Playing() {
		t.Fatal("still playing after the tone's end")
	}

	r, err := tone.New(tone.Ringback())
	if err != nil {
		t.Fatal(err)
	}
	o.Play(r)
	o.Mix(make([]int16, 160))
	o.Stop()
	silent := make([]int16, 160)
	o.Mix(silent)
	if o.Playing() || slices.Max(silent) != 0 {
		t.Fatal("tone continued after Stop")
	}

	g.Reset()
	if err := g.Read(make([]int16, total)); err != nil {
		t.Fatal(err)
	}
	o.Play(g) // already done
	if o.Playing() {
		t.Fatal("playing a finished tone")
	}
}

// TestOverlayConcurrent is for -race: the device starts and stops tones
// while the playout goroutine mixes.
func TestOverlayConcurrent(t *testing.T) {
	var o tone.Overlay
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		frame := make([]int16, 160)
		for {
			select {
			case <-stop:
				return
			default:
				o.Mix(frame)
				_ = o.Playing()
			}
		}
	})
	for range 100 {
		g, err := tone.New(tone.Busy())
		if err != nil {
			t.Fatal(err)
		}
		o.Play(g)
		o.Stop()
	}
	close(stop)
	wg.Wait()
}

func TestNoAllocs(t *testing.T) {
	g, err := tone.New(tone.Unreachable())
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]int16, 160)
	if n := testing.AllocsPerRun(500, func() { _ = g.Read(frame) }); n != 0 {
		t.Errorf("Generator.Read: %v allocs per frame", n)
	}
	var o tone.Overlay
	o.Play(g)
	o.Mix(frame)
	if n := testing.AllocsPerRun(500, func() { o.Mix(frame) }); n != 0 {
		t.Errorf("Overlay.Mix: %v allocs per frame", n)
	}
}

func BenchmarkGeneratorRead(b *testing.B) {
	for _, p := range []struct {
		name string
		spec tone.Spec
	}{{"425Hz", tone.Ringback()}, {"440+480Hz", tone.RingbackUS()}} {
		b.Run(p.name, func(b *testing.B) {
			s := p.spec
			s.Steps[0].Off = 0 // measure synthesis, not silence
			g, err := tone.New(s)
			if err != nil {
				b.Fatal(err)
			}
			frame := make([]int16, 160)
			b.ReportAllocs()
			for b.Loop() {
				_ = g.Read(frame)
			}
		})
	}
}

func BenchmarkOverlayMix(b *testing.B) {
	s := tone.Ringback()
	s.Steps[0].Off = 0
	g, err := tone.New(s)
	if err != nil {
		b.Fatal(err)
	}
	var o tone.Overlay
	o.Play(g)
	frame := make([]int16, 160)
	b.ReportAllocs()
	for b.Loop() {
		o.Mix(frame)
	}
}
