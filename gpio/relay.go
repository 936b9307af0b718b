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
	// Cycles is where the cycle count starts: the count of the relay
	// this one replaces, when the station is rebuilt for a new config.
	Cycles uint64
}

// Relay is a relay output with pulses and a hard maximum on-time.
type Relay struct {
	name      string
	pin       gpio.PinOut
	activeLow bool
	maxOn     time.Duration
	clock     clock.Clock
	log       *slog.Logger
	events    notifier

	mu      sync.Mutex
	active  bool
	onSince time.Time
	cycles  uint64
	closed  bool
	timer   clock.Timer // switches the relay off; nil while off
	gen     uint64      // identifies the current timer, so stale ones do nothing
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
		log:       cfg.Logger,
		events:    notifier{fn: cfg.OnChange},
		cycles:    cfg.Cycles,
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

// Toggle switches an active relay off and an inactive one on, for at most
// MaxOn: a bistable (latched) lock driven through Toggle still cannot stay
// open past MaxOn.
func (r *Relay) Toggle() error {
	r.mu.Lock()
	var err error
	switch {
	case r.closed:
		err = fmt.Errorf("%w: %q", ErrClosed, r.name)
	case r.active:
		if err = r.switchOffLocked(); err != nil {
			err = fmt.Errorf("gpio: relay %q: switch off: %w", r.name, err)
		}
	default:
		err = r.onLocked(r.maxOn)
	}
	r.mu.Unlock()
	r.events.deliver()
	return err
}

// Active reports whether the relay is on.
func (r *Relay) Active() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active
}

// Cycles returns the number of off-to-on transitions since NewRelay, plus
// RelayConfig.Cycles.
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
	r.events.deliver()
	if err != nil {
		return fmt.Errorf("gpio: relay %q: close: %w", r.name, err)
	}
	return nil
}

func (r *Relay) on(d time.Duration) error {
	r.mu.Lock()
	var err error
	if r.closed {
		err = fmt.Errorf("%w: %q", ErrClosed, r.name)
	} else {
		err = r.onLocked(d)
	}
	r.mu.Unlock()
	r.events.deliver()
	return err
}

func (r *Relay) onLocked(d time.Duration) error {
	now := r.clock.Now()
	if !r.active {
		if err := r.pin.Out(r.lineLevel(true)); err != nil {
			return fmt.Errorf("gpio: relay %q: switch on: %w", r.name, err)
		}
		r.active = true
		r.onSince = now
		r.cycles++
		r.events.add(true)
	}
	// Counting from the moment the relay came on means no sequence of calls
	// keeps it on past MaxOn, e.g. to protect a lock's coil.
	r.armLocked(min(d, r.maxOn-now.Sub(r.onSince)))
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
	r.events.deliver()
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
		r.events.add(false)
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
	r.events.deliver()
}

// notifier passes on/off transitions to a callback in order, outside its
// owner's lock: the owner adds them while holding its lock, so they queue in
// the order they happened, and calls deliver after unlocking.
type notifier struct {
	fn func(active bool) // may be nil

	mu    sync.Mutex
	queue []bool // transitions not yet passed to fn
	busy  bool   // a goroutine is delivering
}

func (n *notifier) add(active bool) {
	if n.fn == nil {
		return
	}
	n.mu.Lock()
	n.queue = append(n.queue, active)
	n.mu.Unlock()
}

// deliver passes queued transitions to fn, one goroutine at a time so they
// arrive in order; a call from inside fn leaves its transitions to the
// goroutine already delivering.
func (n *notifier) deliver() {
	n.mu.Lock()
	if n.busy {
		n.mu.Unlock()
		return
	}
	n.busy = true
	for len(n.queue) > 0 {
		active := n.queue[0]
		n.queue = n.queue[1:]
		n.mu.Unlock()
		n.fn(active)
		n.mu.Lock()
	}
	n.busy = false
	n.mu.Unlock()
}

// ErrClosed is returned (wrapped) by a relay used after Close.
var ErrClosed = errors.New("gpio: relay closed")
