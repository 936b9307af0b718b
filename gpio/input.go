// Package gpio drives the door station's pins through periph.io: debounced
// inputs (buttons, door contacts), relays with a hard maximum on-time, and
// status LEDs with blink patterns. Pins are periph gpio.PinIn / gpio.PinOut,
// so real lines, the sim driver and periph's gpiotest all fit.
package gpio

import (
	"context"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"intercom/internal/clock"
)

// DefaultDebounce is used when InputConfig.Debounce is zero.
const DefaultDebounce = 30 * time.Millisecond

// edgeWait bounds each WaitForEdge call, so Run notices cancellation and
// polls the level in case the driver missed an edge.
const edgeWait = 100 * time.Millisecond

// InputConfig describes one input pin.
type InputConfig struct {
	Name      string
	Pin       gpio.PinIn
	ActiveLow bool      // the input is active when the line reads Low
	Pull      gpio.Pull // passed to Pin.In
	// Debounce is how long the line must stay quiet after an edge before its
	// level is accepted. Zero means DefaultDebounce.
	Debounce time.Duration
	Clock    clock.Clock // nil means clock.Real{}
}

// Change is a debounced transition of an input.
type Change struct {
	Name   string
	Active bool
	At     time.Time // when the new level was accepted
}

// Input is a debounced input pin.
type Input struct {
	name      string
	pin       gpio.PinIn
	activeLow bool
	debounce  time.Duration
	clock     clock.Clock
	notify    chan struct{} // capacity 1: queue has changes for Run

	mu      sync.Mutex
	level   gpio.Level  // debounced level
	running bool        // Run is active
	window  clock.Timer // open debounce window; nil when the line is settled
	gen     uint64      // identifies the current window, so stale timers do nothing
	queue   []Change    // accepted changes not yet sent by Run
}

// NewInput configures the pin as an input with edge detection on both edges
// and reads its initial level as the debounced state.
func NewInput(cfg InputConfig) (*Input, error) {
	if cfg.Pin == nil {
		return nil, fmt.Errorf("gpio: input %q: no pin", cfg.Name)
	}
	if cfg.Debounce < 0 {
		return nil, fmt.Errorf("gpio: input %q: negative debounce %s", cfg.Name, cfg.Debounce)
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if err := cfg.Pin.In(cfg.Pull, gpio.BothEdges); err != nil {
		return nil, fmt.Errorf("gpio: input %q: configure %s: %w", cfg.Name, cfg.Pin, err)
	}
	return &Input{
		name:      cfg.Name,
		pin:       cfg.Pin,
		activeLow: cfg.ActiveLow,
		debounce:  cfg.Debounce,
		clock:     cfg.Clock,
		notify:    make(chan struct{}, 1),
		level:     cfg.Pin.Read(),
	}, nil
}

// Active returns the debounced state.
func (in *Input) Active() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.isActive(in.level)
}

func (in *Input) isActive(l gpio.Level) bool { return (l == gpio.High) != in.activeLow }

// Run watches the pin and sends each debounced change to out, in order,
// until ctx is done; then it returns nil. Only one Run may be active.
//
// Debouncing: every edge (re)starts a window of Debounce on the clock; when
// a window closes without a further edge the level is sampled, and a Change
// is sent only if it differs from the debounced state. A bounce train of any
// length therefore yields one change, and a glitch shorter than Debounce
// that ends where it started yields none.
func (in *Input) Run(ctx context.Context, out chan<- Change) error {
	if out == nil {
		return fmt.Errorf("gpio: input %q: nil output channel", in.name)
	}
	in.mu.Lock()
	if in.running {
		in.mu.Unlock()
		return fmt.Errorf("gpio: input %q: already running", in.name)
	}
	in.running = true
	in.mu.Unlock()
	defer in.stop()

	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		in.watch(ctx)
	}()
	// Runs before stop, so the watcher cannot open a window after it.
	defer func() { <-watcher }()

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-in.notify:
		}
		for c, ok := in.pop(); ok; c, ok = in.pop() {
			select {
			case out <- c:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// watch turns pin edges into debounce windows. It runs in a goroutine owned
// by Run and returns within edgeWait of ctx being done.
func (in *Input) watch(ctx context.Context) {
	for ctx.Err() == nil {
		edge := in.pin.WaitForEdge(edgeWait)
		in.mu.Lock()
		// Without an edge, only a level that differs from the debounced state
		// while no window is open needs attention: an edge was missed.
		if edge || (in.window == nil && in.pin.Read() != in.level) {
			in.openWindowLocked()
		}
		in.mu.Unlock()
	}
}

func (in *Input) openWindowLocked() {
	if in.window != nil {
		in.window.Stop()
	}
	in.gen++
	gen := in.gen
	in.window = in.clock.AfterFunc(in.debounce, func() { in.settle(gen) })
}

// settle samples the level when the debounce window gen closes.
func (in *Input) settle(gen uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if gen != in.gen {
		return
	}
	in.window = nil
	l := in.pin.Read()
	if l == in.level {
		return
	}
	in.level = l
	in.queue = append(in.queue, Change{Name: in.name, Active: in.isActive(l), At: in.clock.Now()})
	select {
	case in.notify <- struct{}{}:
	default:
	}
}

func (in *Input) pop() (Change, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.queue) == 0 {
		return Change{}, false
	}
	c := in.queue[0]
	in.queue = in.queue[1:]
	return c, true
}

// stop closes any open window and drops undelivered changes, so a later Run
// starts clean.
func (in *Input) stop() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.window != nil {
		in.window.Stop()
		in.window = nil
	}
	in.gen++
	in.queue = nil
	select {
	case <-in.notify:
	default:
	}
	in.running = false
}
