package gpio

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"intercom/internal/clock"
)

// offRetry is how soon a relay retries to switch off after the pin refused,
// because a relay stuck on (e.g. an unlocked door) is the failure that
// matters most.
const offRetry = time.Second

// RelayConfig describes one relay output.
type RelayConfig struct {
	Name      string
	Pin       gpio.PinOut
	ActiveLow bool // the relay is energised when the line is Low
	// MaxOn is the longest the relay stays on continuously, whatever the
	// callers do. It must be positive.
	MaxOn    time.Duration
	Clock    clock.Clock       // nil means clock.Real{}
	OnChange func(active bool) // called on each transition, in order, outside the relay's lock; may be nil
	Logger   *slog.Logger      // reports timer-driven switch-off failures; nil discards
}

// Relay is a relay output with pulses and a hard maximum on-time.
type Relay struct {
	name      string
	pin       gpio.PinOut
	activeLow bool
	maxOn     time.Duration
	clock     clock.Clock
	onChange  func(bool)
	log       *slog.Logger

	mu        sync.Mutex
	active    bool
	onSince   time.Time
	cycles    uint64
	closed    bool
	timer     clock.Timer // switches the relay off; nil while off
	gen       uint64      // identifies the current timer, so stale ones do nothing
	events    []bool      // transitions not yet passed to onChange
	notifying bool        // a goroutine is delivering events
}

// NewRelay drives the pin inactive before anything else, so a relay left on
// by a crash or a reset is released at start.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Pin == nil {
		return nil, fmt.Errorf("gpio: relay %q: no pin", cfg.Name)
	}
	if cfg.MaxOn <= 0 {
		return nil, fmt.Errorf("gpio: relay %q: max on-time %s must be positive", cfg.Name, cfg.MaxOn)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		name:      cfg.Name,
		pin:       cfg.Pin,
		activeLow: cfg.ActiveLow,
		maxOn:     cfg.MaxOn,
		clock:     cfg.Clock,
		onChange:  cfg.OnChange,
		log:       cfg.Logger,
	}
	if err := r.pin.Out(r.lineLevel(false)); err != nil {
		return nil, fmt.Errorf("gpio: relay %q: drive inactive: %w", r.name, err)
	}
	return r, nil
}

func (r *Relay) lineLevel(active bool) gpio.Level { return gpio.Level(active != r.activeLow) }

// Pulse switches the relay on for d, capped so that it is never on for more
// than MaxOn in a row. A pulse while on restarts the timer from now.
func (r *Relay) Pulse(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("gpio: relay %q: pulse duration %s must be positive", r.name, d)
	}
	return r.on(d)
}

// Set switches the relay on or off. On is still limited to MaxOn.
func (r *Relay) Set(active bool) error {
	if active {
		return r.on(r.maxOn)
	}
	return r.off()
}

// Active reports whether the relay is on.
func (r *Relay) Active() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active
}

// Cycles returns the number of off-to-on transitions since NewRelay.
func (r *Relay) Cycles() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cycles
}

// Close switches the relay off and stops its timer; later calls fail. If the
// pin refuses, the MaxOn timer stays armed as a last resort.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	err := r.switchOffLocked()
	r.mu.Unlock()
	r.deliver()
	if err != nil {
		return fmt.Errorf("gpio: relay %q: close: %w", r.name, err)
	}
	return nil
}

func (r *Relay) on(d time.Duration) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrClosed, r.name)
	}
	now := r.clock.Now()
	if !r.active {
		if err := r.pin.Out(r.lineLevel(true)); err != nil {
			r.mu.Unlock()
			return fmt.Errorf("gpio: relay %q: switch on: %w", r.name, err)
		}
		r.active = true
		r.onSince = now
		r.cycles++
		r.eventLocked(true)
	}
	// Counting from the moment the relay came on means no sequence of calls
	// keeps it on past MaxOn, e.g. to protect a lock's coil.
	r.armLocked(min(d, r.maxOn-now.Sub(r.onSince)))
	r.mu.Unlock()
	r.deliver()
	return nil
}

func (r *Relay) off() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrClosed, r.name)
	}
	err := r.switchOffLocked()
	r.mu.Unlock()
	r.deliver()
	if err != nil {
		return fmt.Errorf("gpio: relay %q: switch off: %w", r.name, err)
	}
	return nil
}

// switchOffLocked drives the line inactive. Only on success does it cancel
// the timer, which otherwise remains the backstop.
func (r *Relay) switchOffLocked() error {
	if err := r.pin.Out(r.lineLevel(false)); err != nil {
		return err
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.gen++
	if r.active {
		r.active = false
		r.eventLocked(false)
	}
	return nil
}

func (r *Relay) armLocked(d time.Duration) {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.gen++
	gen := r.gen
	r.timer = r.clock.AfterFunc(d, func() { r.expire(gen) })
}

// expire runs when the on-time of timer gen is over.
func (r *Relay) expire(gen uint64) {
	r.mu.Lock()
	if gen != r.gen {
		r.mu.Unlock()
		return
	}
	r.timer = nil
	if err := r.switchOffLocked(); err != nil {
		r.log.Error("gpio: relay stuck on, retrying", "relay", r.name, "retry", offRetry, "err", err)
		r.armLocked(offRetry)
	}
	r.mu.Unlock()
	r.deliver()
}

func (r *Relay) eventLocked(active bool) {
	if r.onChange != nil {
		r.events = append(r.events, active)
	}
}

// deliver passes queued transitions to onChange outside the lock, one
// goroutine at a time so they arrive in order; a call from inside onChange
// leaves its events to the goroutine already delivering.
func (r *Relay) deliver() {
	r.mu.Lock()
	if r.notifying {
		r.mu.Unlock()
		return
	}
	r.notifying = true
	for len(r.events) > 0 {
		active := r.events[0]
		r.events = r.events[1:]
		r.mu.Unlock()
		r.onChange(active)
		r.mu.Lock()
	}
	r.notifying = false
	r.mu.Unlock()
}

// ErrClosed is returned (wrapped) by a relay used after Close.
var ErrClosed = errors.New("gpio: relay closed")
