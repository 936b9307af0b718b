package gpio

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"intercom/internal/clock"
)

// Pattern is what a status LED shows.
type Pattern string

// The LED patterns. Blinking patterns start with the LED on.
const (
	PatternOff          Pattern = "off"
	PatternOn           Pattern = "on"
	PatternRegistered   Pattern = "registered"   // steady on
	PatternUnregistered Pattern = "unregistered" // slow blink: 1 s on, 1 s off
	PatternCalling      Pattern = "calling"      // fast blink: 250 ms on, 250 ms off
	PatternInCall       Pattern = "in_call"      // on, off for 100 ms every 2 s
	PatternDoorOpen     Pattern = "door_open"    // 100 ms on, 100 ms off
	PatternError        Pattern = "error"        // double blink once a second
)

// step is one phase of a pattern; a zero duration holds it forever.
type step struct {
	on bool
	d  time.Duration
}

var patterns = map[Pattern][]step{
	PatternOff:          {{false, 0}},
	PatternOn:           {{true, 0}},
	PatternRegistered:   {{true, 0}},
	PatternUnregistered: {{true, time.Second}, {false, time.Second}},
	PatternCalling:      {{true, 250 * time.Millisecond}, {false, 250 * time.Millisecond}},
	PatternInCall:       {{true, 1900 * time.Millisecond}, {false, 100 * time.Millisecond}},
	PatternDoorOpen:     {{true, 100 * time.Millisecond}, {false, 100 * time.Millisecond}},
	PatternError: {
		{true, 100 * time.Millisecond}, {false, 100 * time.Millisecond},
		{true, 100 * time.Millisecond}, {false, 700 * time.Millisecond},
	},
}

// Valid reports whether p is one of the defined patterns.
func (p Pattern) Valid() bool {
	_, ok := patterns[p]
	return ok
}

// LEDConfig describes one LED output.
type LEDConfig struct {
	Name      string
	Pin       gpio.PinOut
	ActiveLow bool         // the LED lights when the line is Low
	Clock     clock.Clock  // nil means clock.Real{}
	Logger    *slog.Logger // reports pin errors while blinking; nil discards
}

// LED is a status LED that shows a Pattern.
type LED struct {
	name      string
	pin       gpio.PinOut
	activeLow bool
	clock     clock.Clock
	log       *slog.Logger

	mu      sync.Mutex
	pattern Pattern
	idx     int         // current step of the pattern
	timer   clock.Timer // moves to the next step; nil for steady patterns
	gen     uint64      // identifies the current timer, so stale ones do nothing
	closed  bool
}

// NewLED switches the LED off and returns it showing PatternOff.
func NewLED(cfg LEDConfig) (*LED, error) {
	if cfg.Pin == nil {
		return nil, fmt.Errorf("gpio: led %q: no pin", cfg.Name)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &LED{
		name:      cfg.Name,
		pin:       cfg.Pin,
		activeLow: cfg.ActiveLow,
		clock:     cfg.Clock,
		log:       cfg.Logger,
		pattern:   PatternOff,
	}
	if err := l.pin.Out(l.lineLevel(false)); err != nil {
		return nil, fmt.Errorf("gpio: led %q: switch off: %w", l.name, err)
	}
	return l, nil
}

func (l *LED) lineLevel(on bool) gpio.Level { return gpio.Level(on != l.activeLow) }

// Set shows p from now on, starting at its first step. Setting the pattern
// already shown changes nothing, so a blink keeps its rhythm. An unknown
// pattern shows PatternError. After Close, Set does nothing.
func (l *LED) Set(p Pattern) {
	if !p.Valid() {
		l.log.Error("gpio: unknown led pattern", "led", l.name, "pattern", string(p))
		p = PatternError
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || p == l.pattern {
		return
	}
	l.pattern = p
	l.stopLocked()
	l.idx = 0
	l.showLocked()
}

// Pattern returns the pattern shown.
func (l *LED) Pattern() Pattern {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pattern
}

// Close stops blinking and switches the LED off.
func (l *LED) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.pattern = PatternOff
	l.stopLocked()
	if err := l.pin.Out(l.lineLevel(false)); err != nil {
		return fmt.Errorf("gpio: led %q: switch off: %w", l.name, err)
	}
	return nil
}

func (l *LED) stopLocked() {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.gen++
}

// showLocked drives the current step and schedules the next one. A pin
// error is reported but the pattern keeps going, so the LED recovers if
// the pin does.
func (l *LED) showLocked() {
	s := patterns[l.pattern][l.idx]
	if err := l.pin.Out(l.lineLevel(s.on)); err != nil {
		l.log.Error("gpio: led pin failed", "led", l.name, "pattern", string(l.pattern), "err", err)
	}
	if s.d == 0 {
		return
	}
	gen := l.gen
	l.timer = l.clock.AfterFunc(s.d, func() { l.next(gen) })
}

func (l *LED) next(gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.gen {
		return
	}
	l.idx = (l.idx + 1) % len(patterns[l.pattern])
	l.showLocked()
}
