package tone

import (
	"math"
	"time"
)

// rampTime is the raised-cosine fade at each edge of a step's On part: an
// abrupt start or stop of a sine is heard as a click.
const rampTime = 5 * time.Millisecond

// oscillator is one frequency of a step: a rotation per sample and the
// amplitude it is heard at.
type oscillator struct {
	cos, sin, amp float64
}

// step is a Step in samples, with what synthesising it needs precomputed.
type step struct {
	on, off int
	osc     []oscillator
	ramp    []float64 // gain of the first samples of On, mirrored at its end
}

// Generator synthesises a Spec frame by frame. A sine is produced by
// rotating a unit phasor (a recurrence, renormalised every call), so its
// phase stays continuous however the output is cut into frames. It is not
// safe for concurrent use.
type Generator struct {
	steps   []step
	samples []int16 // a recording, played instead of steps
	repeat  bool

	// phasor of each oscillator of the current step
	re, im []float64

	cur  int // index of the current step
	pos  int // samples of it, or of the recording, already produced
	done bool
}

// New returns a Generator for s, positioned at its start.
func New(s Spec) (*Generator, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	g := &Generator{steps: make([]step, len(s.Steps)), samples: s.Samples, repeat: s.Repeat}
	peak := math.MaxInt16 * math.Pow(10, s.Level/20)
	maxFreqs := 0
	for i, st := range s.Steps {
		on := int(st.On / sampleTime)
		r := min(int(rampTime/sampleTime), on/2)
		ramp := make([]float64, r)
		for k := range ramp {
			x := math.Sin(math.Pi * (float64(k) + 0.5) / float64(2*r))
			ramp[k] = x * x
		}
		osc := make([]oscillator, len(st.Freqs))
		for j, f := range st.Freqs {
			w := 2 * math.Pi * f / SampleRate
			osc[j] = oscillator{cos: math.Cos(w), sin: math.Sin(w), amp: peak / float64(len(st.Freqs))}
		}
		g.steps[i] = step{on: on, off: int(st.Off / sampleTime), osc: osc, ramp: ramp}
		maxFreqs = max(maxFreqs, len(st.Freqs))
	}
	g.re = make([]float64, maxFreqs)
	g.im = make([]float64, maxFreqs)
	g.Reset()
	return g, nil
}

// Reset rewinds g to the start of its tone.
func (g *Generator) Reset() {
	g.cur, g.done = 0, false
	g.startStep()
}

// Done reports whether a tone without Repeat has been read to its end.
func (g *Generator) Done() bool { return g.done }

// Read fills frame with the next samples of the tone; once a tone without
// Repeat is done, with silence. It never fails: the error result lets a
// Generator stand where a media.Source-like reader is expected. Unlike a
// Source it is not paced; it returns at once.
func (g *Generator) Read(frame []int16) error {
	g.fill(frame)
	return nil
}

func (g *Generator) fill(out []int16) {
	if g.samples != nil {
		g.play(out)
		return
	}
	for len(out) > 0 && !g.done {
		st := &g.steps[g.cur]
		if g.pos < st.on {
			n := min(len(out), st.on-g.pos)
			g.synth(st, out[:n])
			out = out[n:]
		}
		if g.pos >= st.on {
			n := min(len(out), st.on+st.off-g.pos)
			clear(out[:n])
			out = out[n:]
			g.pos += n
		}
		if g.pos == st.on+st.off {
			g.next()
		}
	}
	clear(out)
}

// play copies the next len(out) samples of the recording, then silence
// once a recording without Repeat is done.
func (g *Generator) play(out []int16) {
	for len(out) > 0 && !g.done {
		n := copy(out, g.samples[g.pos:])
		out = out[n:]
		g.pos += n
		if g.pos == len(g.samples) {
			g.pos = 0
			g.done = !g.repeat
		}
	}
	clear(out)
}

// synth writes the next len(out) samples of st's On part.
func (g *Generator) synth(st *step, out []int16) {
	re, im := g.re[:len(st.osc)], g.im[:len(st.osc)]
	r := len(st.ramp)
	for i := range out {
		k := g.pos + i
		var v float64
		for j, o := range st.osc {
			v += o.amp * im[j]
			re[j], im[j] = re[j]*o.cos-im[j]*o.sin, im[j]*o.cos+re[j]*o.sin
		}
		if k < r {
			v *= st.ramp[k]
		} else if d := st.on - 1 - k; d < r {
			v *= st.ramp[d]
		}
		out[i] = int16(math.Round(v)) // |v| <= MaxInt16 by construction of amp
	}
	g.pos += len(out)
	// Rounding would otherwise make the phasor's length, and so the
	// level, creep over a long tone.
	for j := range re {
		n := 1 / math.Hypot(re[j], im[j])
		re[j] *= n
		im[j] *= n
	}
}

func (g *Generator) next() {
	g.cur++
	if g.cur == len(g.steps) {
		if !g.repeat {
			g.done = true
			return
		}
		g.cur = 0
	}
	g.startStep()
}

// startStep begins the current step with every sine at phase 0, where it
// is silent, beneath the ramp.
func (g *Generator) startStep() {
	g.pos = 0
	for j := range g.re {
		g.re[j], g.im[j] = 1, 0
	}
}
