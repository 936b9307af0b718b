package gpio

import (
	"errors"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"intercom/gpio/sim"
	"intercom/internal/clock/clocktest"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

var errPin = errors.New("pin broken")

// faultyPin is a sim pin whose In and Out fail while broken is set.
type faultyPin struct {
	*sim.Pin
	mu     sync.Mutex
	broken bool
}

func (p *faultyPin) setBroken(b bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.broken = b
}

func (p *faultyPin) fail() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken {
		return errPin
	}
	return nil
}

func (p *faultyPin) In(pull gpio.Pull, edge gpio.Edge) error {
	if err := p.fail(); err != nil {
		return err
	}
	return p.Pin.In(pull, edge)
}

func (p *faultyPin) Out(l gpio.Level) error {
	if err := p.fail(); err != nil {
		return err
	}
	return p.Pin.Out(l)
}

// transition is an output level written at a fake-clock time.
type transition struct {
	at    time.Duration // since t0
	level gpio.Level
}

// recordingPin logs every Out with the fake clock's time.
type recordingPin struct {
	*sim.Pin
	clk *clocktest.Fake
	mu  sync.Mutex
	log []transition
}

func (p *recordingPin) Out(l gpio.Level) error {
	p.mu.Lock()
	p.log = append(p.log, transition{p.clk.Now().Sub(t0), l})
	p.mu.Unlock()
	return p.Pin.Out(l)
}

func (p *recordingPin) outs() []transition {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]transition(nil), p.log...)
}
