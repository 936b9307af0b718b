package device

import (
	"sync"
	"sync/atomic"

	"intercom/device/api"
)

// subscriberBuffer is how many events a slow subscriber may lag behind
// before events are dropped for it; the state machine never waits on one.
const subscriberBuffer = 64

// bus fans events out to API subscribers.
type bus struct {
	mu      sync.Mutex
	subs    map[chan api.Event]struct{}
	closed  bool
	dropped atomic.Uint64
}

func newBus() *bus { return &bus{subs: map[chan api.Event]struct{}{}} }

func (b *bus) subscribe() (<-chan api.Event, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan api.Event, subscriberBuffer)
	if b.closed {
		close(ch)
		return ch, func() {}
	}
	b.subs[ch] = struct{}{}
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	}
}

func (b *bus) publish(ev api.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default:
			b.dropped.Add(1)
		}
	}
}

func (b *bus) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}
