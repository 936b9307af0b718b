// Package gpio drives the door station's pins through periph.io: debounced
// inputs (buttons, door contacts), relays with a hard maximum on-time, and
// status LEDs with blink patterns. Pins are periph gpio.PinIn / gpio.PinOut,
// so real lines, the sim driver and periph's gpiotest all fit.
package gpio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"intercom/internal/clock"
)

// DefaultDebounce is used when InputConfig.Debounce is zero.
const DefaultDebounce = 30 * time.Millisecond

// edgeWait bounds each WaitForEdge call, so Run notices cancellation where
// Halt cannot end the wait, and reads the level in case the driver missed
// an edge. It is long because each wait that ends wakes an idle station.
const edgeWait = time.Second

// pollInterval paces reading the level of a line without edge detection:
// a 50 ms press is still seen at least four times, and again once the
// debounce window closes.
const pollInterval = 10 * time.Millisecond

// edgeFailures is how many WaitForEdge calls in a row may return false well
// before edgeWait before the input gives up on edges: periph's gpioioctl
// returns at once when it cannot set a read deadline ("file type does not
// support deadline"), which would otherwise spin.
const edgeFailures = 5

// InputConfig describes one input pin.
type InputConfig struct {
	Name      string
	Pin       gpio.PinIn
	ActiveLow bool      // the input is active when the line reads Low
	Pull      gpio.Pull // passed to Pin.In
	// Debounce is how long the line must stay quiet after an edge before its
	// level is accepted. Zero means DefaultDebounce.
	Debounce time.Duration
	// LongPress, if positive, is how long the input must stay active after
	// an accepted press for Run to send one extra Change with Long set.
	LongPress time.Duration
	Clock     clock.Clock // nil means clock.Real{}
	// Logger reports, once, that the input fell back to polling because the
	// line cannot report edges; nil discards.
	Logger *slog.Logger
}

// Change is a debounced transition of an input.
type Change struct {
	Name   string
	Active bool
	// Long marks the extra change sent when a press has lasted LongPress;
	// Active is true with it.
	Long bool
	At   time.Time // when the new level was accepted, or the press became long
}

// Input is a debounced input pin.
type Input struct {
	name      string
	pin       gpio.PinIn
	activeLow bool
	debounce  time.Duration
	longPress time.Duration
	clock     clock.Clock
	log       *slog.Logger
	notify    chan struct{} // capacity 1: queue has changes for Run

	mu      sync.Mutex
	level   gpio.Level  // debounced level
	running bool        // Run is active
	polling bool        // the line cannot report edges; read it every pollInterval
	window  clock.Timer // open debounce window; nil when the line is settled
	gen     uint64      // identifies the current window, so stale timers do nothing
	long    clock.Timer // runs while an accepted press may still become long
	longGen uint64      // identifies the current long-press timer
	queue   []Change    // accepted changes not yet sent by Run
}

// NewInput configures the pin as an input with edge detection on both edges
// and reads its initial level as the debounced state. A line that refuses
// edge detection is configured without it and polled.
func NewInput(cfg InputConfig) (*Input, error) {
	if cfg.Pin == nil {
		return nil, fmt.Errorf("gpio: input %q: no pin", cfg.Name)
	}
	if cfg.Debounce < 0 {
		return nil, fmt.Errorf("gpio: input %q: negative debounce %s", cfg.Name, cfg.Debounce)
	}
	if cfg.LongPress < 0 {
		return nil, fmt.Errorf("gpio: input %q: negative long press %s", cfg.Name, cfg.LongPress)
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	in := &Input{
		name:      cfg.Name,
		pin:       cfg.Pin,
		activeLow: cfg.ActiveLow,
		debounce:  cfg.Debounce,
		longPress: cfg.LongPress,
		clock:     cfg.Clock,
		log:       cfg.Logger,
		notify:    make(chan struct{}, 1),
	}
	if err := cfg.Pin.In(cfg.Pull, gpio.BothEdges); err != nil {
		// Lines behind some GPIO expanders have no interrupt; their level
		// can still be read.
		if err2 := cfg.Pin.In(cfg.Pull, gpio.NoEdge); err2 != nil {
			return nil, fmt.Errorf("gpio: input %q: configure %s: %w", cfg.Name, cfg.Pin.Name(), errors.Join(err, err2))
		}
		in.fallBack(err)
	}
	in.level = cfg.Pin.Read()
	return in, nil
}

// fallBack switches the input to polling for good and says so once.
func (in *Input) fallBack(cause error) {
	in.mu.Lock()
	in.polling = true
	in.mu.Unlock()
	in.log.Warn("gpio: edge detection unavailable, polling the line instead",
		"input", in.name, "pin", in.pin.Name(), "every", pollInterval, "err", cause)
}

func (in *Input) isPolling() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.polling
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
	defer func() {
		// Halt releases a WaitForEdge in progress; where the driver cannot,
		// edgeWait still bounds the wait, so its error changes nothing.
		_ = in.pin.Halt()
		<-watcher
	}()

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
// by Run and returns within edgeWait of ctx being done. When the driver's
// edge waits keep failing, it polls instead.
func (in *Input) watch(ctx context.Context) {
	if in.isPolling() {
		in.poll(ctx)
		return
	}
	fails := 0
	for ctx.Err() == nil {
		// Wall time, not the injected clock: this judges the driver's wait.
		start := time.Now()
		edge := in.pin.WaitForEdge(edgeWait)
		if !edge && time.Since(start) < edgeWait/2 {
			fails++
		} else {
			fails = 0
		}
		in.mu.Lock()
		// Without an edge, only a level that differs from the debounced state
		// while no window is open needs attention: an edge was missed.
		if edge || (in.window == nil && in.pin.Read() != in.level) {
			in.openWindowLocked()
		}
		in.mu.Unlock()
		if fails == edgeFailures && ctx.Err() == nil {
			in.fallBack(errors.New("edge waits keep failing at once"))
			in.poll(ctx)
			return
		}
	}
}

// poll reads the level every pollInterval and treats each change between
// two readings as an edge. The interval is wall time, like edgeWait: it
// paces reading the hardware, while the debounce runs on the clock.
func (in *Input) poll(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	last := in.pin.Read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l := in.pin.Read()
		in.mu.Lock()
		if l != last || (in.window == nil && l != in.level) {
			in.openWindowLocked()
		}
		in.mu.Unlock()
		last = l
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
	active := in.isActive(l)
	in.stopLongLocked()
	if active && in.longPress > 0 {
		longGen := in.longGen
		in.long = in.clock.AfterFunc(in.longPress, func() { in.longPressed(longGen) })
	}
	in.sendLocked(Change{Name: in.name, Active: active, At: in.clock.Now()})
}

// longPressed runs when the press of long-press timer gen has lasted
// LongPress; a release in between stopped it.
func (in *Input) longPressed(gen uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if gen != in.longGen {
		return
	}
	in.long = nil
	in.sendLocked(Change{Name: in.name, Active: true, Long: true, At: in.clock.Now()})
}

func (in *Input) stopLongLocked() {
	if in.long != nil {
		in.long.Stop()
		in.long = nil
	}
	in.longGen++
}

func (in *Input) sendLocked(c Change) {
	in.queue = append(in.queue, c)
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
	in.stopLongLocked()
	in.queue = nil
	select {
	case <-in.notify:
	default:
	}
	in.running = false
}
