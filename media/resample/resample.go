// Package resample converts a stream of mono int16 audio between two sample
// rates, such as a call's 8 kHz and a sound card's 44.1 or 48 kHz, with a
// windowed-sinc low-pass filter so that nothing above the lower rate's band
// aliases or images into the call.
package resample

import (
	"errors"
	"fmt"
	"math"
)

// Rates outside this range are refused: they are not sound-card rates, and
// the filter tables grow with the rates' ratio.
const (
	MinRate = 8000
	MaxRate = 192000
)

const (
	// taps is the filter's length in samples of the lower rate: 48 at
	// 8 kHz is 6 ms, a transition band of about 600 Hz at 60 dB, for a
	// delay of 3 ms per conversion.
	taps = 48
	// cutoff is the filter's -6 dB point as a fraction of the lower
	// rate: 3.7 kHz at 8 kHz, so that the passband is flat to about
	// 3.4 kHz (the telephone band) and the stopband starts at 4 kHz.
	cutoff = 0.4625
	// beta shapes the Kaiser window for about 60 dB of stopband
	// attenuation (Kaiser's formula 0.1102*(A-8.7)).
	beta = 5.65
)

// Resampler converts one stream. It keeps the last input samples and the
// phase between frames, so a stream cut into frames of any length comes
// out as if it had been converted whole. It allocates nothing after New.
// It is not safe for concurrent use.
type Resampler struct {
	in, out int
	up      int       // L: the upsampling factor, out/gcd
	down    int       // M: the downsampling factor, in/gcd
	k       int       // coefficients per phase
	coef    []float32 // up phases of k coefficients, oldest input first
	hist    []float32 // 2k: each input stored twice so that a window is contiguous
	pos     int       // where the next input goes in hist[:k]
	acc     int       // next output's offset after the newest input, in samples of the common rate in*up
}

// New returns a resampler from inRate to outRate Hz. Equal rates give a
// resampler that copies.
func New(inRate, outRate int) (*Resampler, error) {
	for _, r := range []int{inRate, outRate} {
		if r < MinRate || r > MaxRate {
			return nil, fmt.Errorf("resample: rate %d Hz outside %d..%d Hz", r, MinRate, MaxRate)
		}
	}
	g := gcd(inRate, outRate)
	r := &Resampler{in: inRate, out: outRate, up: outRate / g, down: inRate / g}
	if r.up == 1 && r.down == 1 {
		return r, nil
	}
	// The prototype filter runs at the common rate in*up; its length is
	// taps at the lower rate, which is max(up, down) samples each.
	n := taps * max(r.up, r.down)
	r.k = (n + r.up - 1) / r.up
	fc := cutoff / float64(max(r.up, r.down)) // cycles per sample at the common rate
	mid := float64(n-1) / 2
	h := make([]float64, n)
	var sum float64
	for j := range h {
		t := float64(j) - mid
		h[j] = 2 * fc * sinc(2*fc*t) * kaiser(t, mid)
		sum += h[j]
	}
	// Zero-stuffing by up divides the level by up; the filter restores it.
	gain := float64(r.up) / sum
	r.coef = make([]float32, r.up*r.k)
	for p := range r.up {
		for i := range r.k {
			if j := p + i*r.up; j < n {
				r.coef[p*r.k+r.k-1-i] = float32(h[j] * gain)
			}
		}
	}
	r.hist = make([]float32, 2*r.k)
	return r, nil
}

// Rates returns the input and output rates.
func (r *Resampler) Rates() (in, out int) { return r.in, r.out }

// OutLen returns how many samples the next Process of n input samples
// writes. Over a stream, the outputs for N inputs add up to exactly
// ceil(N*out/in): the phase carries over, so no rounding accumulates.
func (r *Resampler) OutLen(n int) int {
	if r.coef == nil {
		return n
	}
	return max(0, ceilDiv(n*r.up-r.acc, r.down))
}

// InLen returns the fewest input samples after which the next Process
// writes at least n samples. When downsampling it writes exactly n.
func (r *Resampler) InLen(n int) int {
	if r.coef == nil || n <= 0 {
		return max(n, 0)
	}
	// Output n-1 (counting from 0) comes with the input i for which
	// acc+(n-1)*down < (i+1)*up.
	return (r.acc+(n-1)*r.down)/r.up + 1
}

// ErrShortBuffer is returned by Process when dst cannot hold OutLen(len(src)).
var ErrShortBuffer = errors.New("resample: output buffer too short")

// Process converts src into dst and returns how many samples it wrote,
// OutLen(len(src)). dst must hold that many; if not, Process changes
// nothing and returns ErrShortBuffer.
func (r *Resampler) Process(dst, src []int16) (int, error) {
	if r.coef == nil {
		if len(dst) < len(src) {
			return 0, ErrShortBuffer
		}
		return copy(dst, src), nil
	}
	if len(dst) < r.OutLen(len(src)) {
		return 0, ErrShortBuffer
	}
	k, w := r.k, 0
	for _, x := range src {
		v := float32(x)
		r.hist[r.pos], r.hist[r.pos+k] = v, v
		if r.pos++; r.pos == k {
			r.pos = 0
		}
		win := r.hist[r.pos : r.pos+k]
		for ; r.acc < r.up; r.acc += r.down {
			dst[w] = clamp(dot(r.coef[r.acc*k:(r.acc+1)*k], win))
			w++
		}
		r.acc -= r.up
	}
	return w, nil
}

// Reset forgets the stream, as after a gap: the next input starts from
// silence and phase zero.
func (r *Resampler) Reset() {
	clear(r.hist)
	r.pos, r.acc = 0, 0
}

// Delay returns the filter's delay in seconds: how late a sound comes out.
func (r *Resampler) Delay() float64 {
	if r.coef == nil {
		return 0
	}
	return float64(taps*max(r.up, r.down)-1) / 2 / float64(r.in*r.up)
}

func dot(c, x []float32) float32 {
	x = x[:len(c)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(c); i += 4 {
		s0 += c[i] * x[i]
		s1 += c[i+1] * x[i+1]
		s2 += c[i+2] * x[i+2]
		s3 += c[i+3] * x[i+3]
	}
	for ; i < len(c); i++ {
		s0 += c[i] * x[i]
	}
	return s0 + s1 + s2 + s3
}

func clamp(v float32) int16 {
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	}
	return int16(math.Round(float64(v)))
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// kaiser is the Kaiser window at t from the centre of a window of half
// length half.
func kaiser(t, half float64) float64 {
	if half == 0 {
		return 1
	}
	u := t / half
	return besselI0(beta*math.Sqrt(max(0, 1-u*u))) / besselI0(beta)
}

// besselI0 is the modified Bessel function of the first kind, order 0, by
// its power series, which converges fast for the window's arguments.
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; term > 1e-12*sum; k++ {
		f := x / (2 * float64(k))
		term *= f * f
		sum += term
	}
	return sum
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func ceilDiv(a, b int) int {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
