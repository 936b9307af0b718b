package media

import (
	"sync"
	"time"

	"intercom/internal/clock"
)

// maxLag is how far behind schedule a pacer may fall before it gives up
// catching up and restarts its schedule from now, as a sound card does
// after an overrun: a stalled caller must not be followed by a burst.
const maxLag = 100 * time.Millisecond

// pacerSlack is how early a frame may be released rather than waited for.
// A timer would not wake much closer to the due time than that anyway,
// and when one loop drives a Source and a Sink on the same schedule (the
// session's frame loop), the second of them would otherwise sleep a few
// microseconds every frame: a wake-up for nothing. The schedule itself
// does not move, so early releases never add up.
const pacerSlack = 2 * time.Millisecond

// pacer releases frames on a steady schedule derived from a sample count,
// so that rounding never accumulates into drift. It backs every backend
// that has no hardware clock of its own.
type pacer struct {
	clk   clock.Clock
	rate  time.Duration // samples per second
	timer clock.Timer

	start   time.Time // time of sample 0 of the schedule
	samples int64     // samples released since start

	done      chan struct{}
	closeOnce sync.Once
}

func newPacer(clk clock.Clock, rate int) *pacer {
	return &pacer{clk: clk, rate: time.Duration(rate), done: make(chan struct{})}
}

// wait blocks until a frame of n samples is due: the first at once, each
// next one when the previous one's duration has elapsed.
func (p *pacer) wait(n int) error {
	select {
	case <-p.done:
		return ErrClosed
	default:
	}
	now := p.clk.Now()
	due := p.start.Add(time.Duration(p.samples) * time.Second / p.rate)
	if p.start.IsZero() || now.Sub(due) > maxLag {
		p.start, p.samples, due = now, 0, now
	}
	if d := due.Sub(now); d > pacerSlack {
		if p.timer == nil {
			p.timer = p.clk.NewTimer(d)
		} else {
			p.timer.Reset(d)
		}
		select {
		case <-p.timer.C():
		case <-p.done:
			p.timer.Stop()
			return ErrClosed
		}
	}
	p.samples += int64(n)
	// Fold whole seconds into start so that samples*time.Second cannot
	// overflow however long the stream runs.
	if r := int64(p.rate); p.samples >= r {
		p.start = p.start.Add(time.Duration(p.samples/r) * time.Second)
		p.samples %= r
	}
	return nil
}

// close makes pending and future waits return ErrClosed.
func (p *pacer) close() {
	p.closeOnce.Do(func() { close(p.done) })
}

func (p *pacer) isClosed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
