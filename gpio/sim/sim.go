// Package sim provides virtual GPIO pins, so the door station runs and is
// tested on machines without GPIO hardware: inputs are driven from outside
// (tests, the HTTP simulation API) and outputs are observed by name.
package sim

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"
)

var errPWM = errors.New("sim: pwm not supported")

// Bank is a set of virtual pins addressed by name.
type Bank struct {
	mu   sync.Mutex
	pins map[string]*Pin
}

// NewBank returns an empty bank.
func NewBank() *Bank {
	return &Bank{pins: make(map[string]*Pin)}
}

// Pin returns the pin called name, creating it on first use. A new pin is a
// floating input that reads Low.
func (b *Bank) Pin(name string) *Pin {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.pins[name]; ok {
		return p
	}
	p := &Pin{name: name, number: len(b.pins), pull: gpio.Float, wake: make(chan struct{})}
	b.pins[name] = p
	return p
}

// Lookup returns the pin called name if it has been created.
func (b *Bank) Lookup(name string) (*Pin, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.pins[name]
	return p, ok
}

// Pin is a virtual GPIO pin.
type Pin struct {
	name   string
	number int

	mu     sync.Mutex
	output bool       // set by Out, cleared by In
	out    gpio.Level // level written by Out
	pull   gpio.Pull
	edge   gpio.Edge
	driven bool       // Drive has been called
	ext    gpio.Level // level applied by Drive
	edges  int        // detected edges not yet returned by WaitForEdge
	epoch  uint64     // bumped by In and Halt to release waiters
	wake   chan struct{}
}

var _ gpio.PinIO = (*Pin)(nil)

// Drive applies level l to the pin from outside, as a button or a sensor
// would. While the pin is an input with edge detection, a level change that
// matches the configured edge is queued for WaitForEdge.
func (p *Pin) Drive(l gpio.Level) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before := p.inputLevelLocked()
	p.driven, p.ext = true, l
	if p.output || l == before {
		return
	}
	if (l == gpio.High && p.edge&gpio.RisingEdge != 0) || (l == gpio.Low && p.edge&gpio.FallingEdge != 0) {
		p.edges++
		p.notifyLocked()
	}
}

// Level returns what the pin is at now: the level written by Out for an
// output, otherwise the driven level, or the pull level if never driven.
func (p *Pin) Level() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.output {
		return p.out
	}
	return p.inputLevelLocked()
}

func (p *Pin) inputLevelLocked() gpio.Level {
	if p.driven {
		return p.ext
	}
	return p.pull == gpio.PullUp
}

func (p *Pin) notifyLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// String implements conn.Resource.
func (p *Pin) String() string { return fmt.Sprintf("sim:%s", p.name) }

// Halt implements conn.Resource: it releases goroutines blocked in WaitForEdge.
func (p *Pin) Halt() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.epoch++
	p.notifyLocked()
	return nil
}

// Name implements pin.Pin.
func (p *Pin) Name() string { return p.name }

// Number implements pin.Pin: the order in which the bank created the pin.
func (p *Pin) Number() int { return p.number }

// Function implements pin.Pin.
func (p *Pin) Function() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.output:
		return string(gpio.IN)
	case p.out == gpio.High:
		return string(gpio.OUT_HIGH)
	default:
		return string(gpio.OUT_LOW)
	}
}

// In implements gpio.PinIn. Like real drivers it discards queued edges and
// releases pending WaitForEdge calls, which return false.
func (p *Pin) In(pull gpio.Pull, edge gpio.Edge) error {
	if pull > gpio.PullUp {
		return fmt.Errorf("sim: %s: invalid pull %s", p.name, pull)
	}
	if edge < gpio.NoEdge || edge > gpio.BothEdges {
		return fmt.Errorf("sim: %s: invalid edge %s", p.name, edge)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pull != gpio.PullNoChange {
		p.pull = pull
	}
	p.output = false
	p.edge = edge
	p.edges = 0
	p.epoch++
	p.notifyLocked()
	return nil
}

// Read implements gpio.PinIn.
func (p *Pin) Read() gpio.Level { return p.Level() }

// WaitForEdge implements gpio.PinIn. Edges are queued, so none is lost
// between calls; each call consumes one. A negative timeout waits forever.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	var expired <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	p.mu.Lock()
	epoch := p.epoch
	for {
		if p.edges > 0 {
			p.edges--
			p.mu.Unlock()
			return true
		}
		if p.epoch != epoch {
			p.mu.Unlock()
			return false
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-expired:
			return false
		}
		p.mu.Lock()
	}
}

// Pull implements gpio.PinIn.
func (p *Pin) Pull() gpio.Pull {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pull
}

// DefaultPull implements gpio.PinIn: virtual pins start floating.
func (p *Pin) DefaultPull() gpio.Pull { return gpio.Float }

// Out implements gpio.PinOut.
func (p *Pin) Out(l gpio.Level) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.output, p.out = true, l
	return nil
}

// PWM implements gpio.PinOut; virtual pins have no PWM.
func (p *Pin) PWM(gpio.Duty, physic.Frequency) error { return errPWM }
