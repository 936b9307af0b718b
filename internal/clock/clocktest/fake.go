// Package clocktest provides a manually advanced clock for deterministic tests.
package clocktest

import (
	"sort"
	"sync"
	"time"

	"intercom/internal/clock"
)

// Fake is a clock that only moves when Advance is called. AfterFunc
// callbacks run synchronously inside Advance, in deadline order.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{}
}

var _ clock.Clock = (*Fake)(nil)

// New returns a fake clock set to start.
func New(start time.Time) *Fake {
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// AfterFunc schedules fn to run during the Advance that passes d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) clock.Timer {
	return f.add(d, fn, nil)
}

// NewTimer returns a timer whose channel receives during the Advance that passes d.
func (f *Fake) NewTimer(d time.Duration) clock.Timer {
	return f.add(d, nil, make(chan time.Time, 1))
}

func (f *Fake) add(d time.Duration, fn func(), c chan time.Time) *fakeTimer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{clock: f, fn: fn, c: c}
	f.scheduleLocked(t, d)
	return t
}

func (f *Fake) scheduleLocked(t *fakeTimer, d time.Duration) {
	t.when = f.now.Add(d)
	t.active = true
	f.timers = append(f.timers, t)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *Fake) removeLocked(t *fakeTimer) bool {
	for i, x := range f.timers {
		if x == t {
			f.timers = append(f.timers[:i], f.timers[i+1:]...)
			t.active = false
			return true
		}
	}
	return false
}

// Advance moves the clock forward by d, firing every timer that falls due,
// earliest first, with the clock set to each timer's deadline as it fires.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	end := f.now.Add(d)
	for {
		sort.SliceStable(f.timers, func(i, j int) bool { return f.timers[i].when.Before(f.timers[j].when) })
		if len(f.timers) == 0 || f.timers[0].when.After(end) {
			break
		}
		t := f.timers[0]
		f.timers = f.timers[1:]
		t.active = false
		if t.when.After(f.now) {
			f.now = t.when
		}
		f.mu.Unlock()
		if t.fn != nil {
			t.fn()
		} else {
			select {
			case t.c <- f.Now():
			default:
			}
		}
		f.mu.Lock()
	}
	f.now = end
	f.mu.Unlock()
}

// Pending returns the number of timers that have not fired or been stopped.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// Next returns how long until the earliest pending timer is due, and false
// when none is pending. Advancing by exactly that much keeps a timer that
// the fired one's owner re-arms measured from the deadline, not from a
// later point the clock jumped to.
func (f *Fake) Next() (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.timers) == 0 {
		return 0, false
	}
	first := f.timers[0].when
	for _, t := range f.timers[1:] {
		if t.when.Before(first) {
			first = t.when
		}
	}
	return first.Sub(f.now), true
}

// WaitForTimers blocks until at least n timers are pending, so a test can
// advance the clock only after the code under test has armed its timers.
func (f *Fake) WaitForTimers(n int) {
	for {
		f.mu.Lock()
		if len(f.timers) >= n {
			f.mu.Unlock()
			return
		}
		ch := f.changed
		f.mu.Unlock()
		<-ch
	}
}

type fakeTimer struct {
	clock  *Fake
	when   time.Time
	fn     func()
	c      chan time.Time
	active bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	return t.clock.removeLocked(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.clock.removeLocked(t)
	t.clock.scheduleLocked(t, d)
	return was
}
