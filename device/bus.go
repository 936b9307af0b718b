package device

import (
	"sync"
	"sync/atomic"

	"intercom/device/api"
)

// subscriberBuffer is how many events a slow subscriber may lag behind
// before events are dropped for it; the state machine never waits on one.
const subscriberBuffer = 64

// Bus fans the station's events out to API subscribers. main keeps one
// for the life of the process, so that subscribers stay connected while
// the station is rebuilt for a new configuration.
type Bus struct {
	mu      sync.Mutex
	subs    map[chan api.Event]struct{}
	closed  bool
	dropped atomic.Uint64
}

// NewBus returns a bus with no subscribers.
func NewBus() *Bus { return &Bus{subs: map[chan api.Event]struct{}{}} }

// Subscribe returns a channel of events and a function that ends the
// subscription; the channel is closed when the bus is.
func (b *Bus) Subscribe() (<-chan api.Event, func()) {
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

func (b *Bus) publish(ev api.Event) {
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

// Close ends every subscription.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}
