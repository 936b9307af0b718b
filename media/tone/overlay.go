package tone

import (
	"math"
	"sync"
)

// Overlay mixes a tone over a stream of frames, e.g. the door-opened
// confirmation over the far end's voice on its way to the speaker. The
// zero value is ready and silent. Play and Stop may be called from any
// goroutine while another one calls Mix; to overlay a tone on two streams
// (speaker and microphone), use two Overlays with a Generator each.
type Overlay struct {
	mu  sync.Mutex
	gen *Generator
	buf []int16 // the tone's samples for the frame being mixed
}

// Play starts mixing g, replacing any tone already playing. The Overlay
// owns g from now on; nil stops.
func (o *Overlay) Play(g *Generator) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if g != nil && g.Done() {
		g = nil
	}
	o.gen = g
}

// Stop ends the tone at once.
func (o *Overlay) Stop() { o.Play(nil) }

// Playing reports whether a tone is being mixed: false after Stop and
// once a tone without Repeat has been mixed to its end.
func (o *Overlay) Playing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.gen != nil
}

// Mix adds the tone's next len(frame) samples to frame, saturating at full
// scale rather than wrapping around. Without a tone it leaves frame as it
// is. Only the first call with a longer frame allocates.
func (o *Overlay) Mix(frame []int16) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gen == nil {
		return
	}
	if cap(o.buf) < len(frame) {
		o.buf = make([]int16, len(frame))
	}
	tone := o.buf[:len(frame)]
	o.gen.fill(tone)
	for i, t := range tone {
		frame[i] = int16(min(max(int32(frame[i])+int32(t), math.MinInt16), math.MaxInt16))
	}
	if o.gen.Done() {
		o.gen = nil
	}
}
