package gpio

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"intercom/gpio/sim"
	"intercom/internal/clock/clocktest"
)

const maxOn = 10 * time.Second

type relayRig struct {
	clk    *clocktest.Fake
	pin    *sim.Pin
	r      *Relay
	mu     sync.Mutex
	events []bool
}

func newRelayRig(t *testing.T, activeLow bool) *relayRig {
	t.Helper()
	rr := &relayRig{clk: clocktest.New(t0), pin: sim.NewBank().Pin("GPIO27")}
	r, err := NewRelay(RelayConfig{Name: "door", Pin: rr.pin, ActiveLow: activeLow, MaxOn: maxOn, Clock: rr.clk,
		OnChange: func(active bool) {
			rr.mu.Lock()
			rr.events = append(rr.events, active)
			rr.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	rr.r = r
	return rr
}

func (rr *relayRig) seen() []bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return slices.Clone(rr.events)
}

// check asserts the relay's state, the line level that goes with it and
// the transitions reported so far.
func (rr *relayRig) check(t *testing.T, active bool, line gpio.Level, events ...bool) {
	t.Helper()
	if rr.r.Active() != active || rr.pin.Level() != line {
		t.Fatalf("at %s: Active/line = %v/%s, want %v/%s", rr.clk.Now().Sub(t0), rr.r.Active(), rr.pin.Level(), active, line)
	}
	if got := rr.seen(); !slices.Equal(got, events) {
		t.Fatalf("OnChange calls = %v, want %v", got, events)
	}
}

func TestNewRelayDrivesInactive(t *testing.T) {
	for _, activeLow := range []bool{false, true} {
		pin := sim.NewBank().Pin("GPIO27")
		inactive := gpio.Level(activeLow)
		if err := pin.Out(!inactive); err != nil { // left energised, e.g. by a crash
			t.Fatal(err)
		}
		r, err := NewRelay(RelayConfig{Name: "door", Pin: pin, ActiveLow: activeLow, MaxOn: maxOn})
		if err != nil {
			t.Fatal(err)
		}
		if pin.Level() != inactive || r.Active() || r.Cycles() != 0 {
			t.Errorf("activeLow=%v: line/Active/Cycles = %s/%v/%d", activeLow, pin.Level(), r.Active(), r.Cycles())
		}
	}
}

func TestNewRelayErrors(t *testing.T) {
	pin := sim.NewBank().Pin("x")
	for _, cfg := range []RelayConfig{
		{Name: "nil pin", MaxOn: maxOn},
		{Name: "zero max", Pin: pin},
		{Name: "negative max", Pin: pin, MaxOn: -time.Second},
	} {
		if _, err := NewRelay(cfg); err == nil {
			t.Errorf("%s: accepted", cfg.Name)
		}
	}
	bad := &faultyPin{Pin: pin, broken: true}
	if _, err := NewRelay(RelayConfig{Name: "door", Pin: bad, MaxOn: maxOn}); !errors.Is(err, errPin) {
		t.Errorf("err = %v, want it to wrap the pin error", err)
	}
}

func TestSetOnDropsAtMaxOn(t *testing.T) {
	rr := newRelayRig(t, false)
	if err := rr.r.Set(true); err != nil {
		t.Fatal(err)
	}
	rr.check(t, true, gpio.High, true)
	rr.clk.Advance(maxOn / 2)
	if err := rr.r.Set(true); err != nil { // must not extend the limit
		t.Fatal(err)
	}
	rr.clk.Advance(maxOn/2 - time.Nanosecond)
	rr.check(t, true, gpio.High, true)
	rr.clk.Advance(time.Nanosecond)
	rr.check(t, false, gpio.Low, true, false)
	if rr.clk.Pending() != 0 {
		t.Fatalf("%d timers pending while off", rr.clk.Pending())
	}
}

func TestPulse(t *testing.T) {
	rr := newRelayRig(t, true)
	if err := rr.r.Pulse(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	rr.check(t, true, gpio.Low, true)
	rr.clk.Advance(3*time.Second - time.Nanosecond)
	rr.check(t, true, gpio.Low, true)
	rr.clk.Advance(time.Nanosecond)
	rr.check(t, false, gpio.High, true, false)
}

func TestPulseIsCappedAtMaxOn(t *testing.T) {
	rr := newRelayRig(t, false)
	if err := rr.r.Pulse(time.Hour); err != nil {
		t.Fatal(err)
	}
	rr.clk.Advance(maxOn - time.Nanosecond)
	rr.check(t, true, gpio.High, true)
	rr.clk.Advance(time.Nanosecond)
	rr.check(t, false, gpio.Low, true, false)
}

func TestPulseRestarts(t *testing.T) {
	rr := newRelayRig(t, false)
	if err := rr.r.Pulse(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	rr.clk.Advance(2 * time.Second)
	if err := rr.r.Pulse(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	rr.clk.Advance(3*time.Second - time.Nanosecond)
	rr.check(t, true, gpio.High, true)
	rr.clk.Advance(time.Nanosecond)
	rr.check(t, false, gpio.Low, true, false)
	if rr.r.Cycles() != 1 {
		t.Fatalf("Cycles = %d, want 1", rr.r.Cycles())
	}
}

func TestRepeatedPulsesStillDropAtMaxOn(t *testing.T) {
	rr := newRelayRig(t, false)
	for i := range 4 { // 3 s pulses at 0, 2.5, 5 and 7.5 s: the last would end at 10.5 s
		if err := rr.r.Pulse(3 * time.Second); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			rr.clk.Advance(2500 * time.Millisecond)
		}
	}
	rr.clk.Advance(2500*time.Millisecond - time.Nanosecond)
	rr.check(t, true, gpio.High, true)
	rr.clk.Advance(time.Nanosecond)
	rr.check(t, false, gpio.Low, true, false)
}

func TestPulseRejectsNonPositive(t *testing.T) {
	rr := newRelayRig(t, false)
	for _, d := range []time.Duration{0, -time.Second} {
		if err := rr.r.Pulse(d); err == nil {
			t.Errorf("Pulse(%s) accepted", d)
		}
	}
	rr.check(t, false, gpio.Low)
}

func TestCycles(t *testing.T) {
	rr := newRelayRig(t, false)
	steps := []func() error{
		func() error { return rr.r.Pulse(time.Second) },
		func() error { return rr.r.Set(true) }, // already on: no new cycle
		func() error { return rr.r.Set(false) },
		func() error { return rr.r.Set(false) }, // already off: no event
		func() error { return rr.r.Set(true) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	rr.clk.Advance(maxOn)
	if err := rr.r.Pulse(time.Second); err != nil {
		t.Fatal(err)
	}
	if rr.r.Cycles() != 3 {
		t.Fatalf("Cycles = %d, want 3", rr.r.Cycles())
	}
	rr.check(t, true, gpio.High, true, false, true, false, true)
}

func TestSetOffStopsTimer(t *testing.T) {
	rr := newRelayRig(t, false)
	if err := rr.r.Pulse(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := rr.r.Set(false); err != nil {
		t.Fatal(err)
	}
	if rr.clk.Pending() != 0 {
		t.Fatalf("%d timers pending after Set(false)", rr.clk.Pending())
	}
	rr.check(t, false, gpio.Low, true, false)
}

func TestClose(t *testing.T) {
	rr := newRelayRig(t, true)
	if err := rr.r.Set(true); err != nil {
		t.Fatal(err)
	}
	if err := rr.r.Close(); err != nil {
		t.Fatal(err)
	}
	rr.check(t, false, gpio.High, true, false)
	if rr.clk.Pending() != 0 {
		t.Fatalf("%d timers pending after Close", rr.clk.Pending())
	}
	if err := rr.r.Pulse(time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pulse after Close = %v, want ErrClosed", err)
	}
	if err := rr.r.Set(false); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close = %v, want ErrClosed", err)
	}
	if err := rr.r.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	rr.check(t, false, gpio.High, true, false)
}

func TestPinErrors(t *testing.T) {
	clk := clocktest.New(t0)
	pin := &faultyPin{Pin: sim.NewBank().Pin("GPIO27")}
	var events []bool
	r, err := NewRelay(RelayConfig{Name: "door", Pin: pin, MaxOn: maxOn, Clock: clk,
		OnChange: func(a bool) { events = append(events, a) }})
	if err != nil {
		t.Fatal(err)
	}

	pin.setBroken(true)
	if err := r.Pulse(time.Second); !errors.Is(err, errPin) {
		t.Fatalf("Pulse = %v, want the pin error", err)
	}
	if r.Active() || r.Cycles() != 0 || clk.Pending() != 0 {
		t.Fatal("a failed switch-on changed the relay")
	}

	pin.setBroken(false)
	if err := r.Set(true); err != nil {
		t.Fatal(err)
	}
	pin.setBroken(true)
	if err := r.Set(false); !errors.Is(err, errPin) {
		t.Fatalf("Set(false) = %v, want the pin error", err)
	}
	// The line is still on, so the relay keeps reporting on and the MaxOn
	// backstop stays armed; it retries until the pin obeys.
	clk.Advance(maxOn + 2*offRetry)
	if !r.Active() || pin.Level() != gpio.High {
		t.Fatal("relay reported off although the pin refused")
	}
	pin.setBroken(false)
	clk.Advance(offRetry)
	if r.Active() || pin.Level() != gpio.Low || !slices.Equal(events, []bool{true, false}) {
		t.Fatalf("after recovery Active/line/events = %v/%s/%v", r.Active(), pin.Level(), events)
	}
	if at := clk.Now().Sub(t0); at != maxOn+3*offRetry {
		t.Fatalf("test clock at %s", at)
	}

	if err := r.Set(true); err != nil {
		t.Fatal(err)
	}
	pin.setBroken(true)
	if err := r.Close(); !errors.Is(err, errPin) {
		t.Fatalf("Close = %v, want the pin error", err)
	}
	pin.setBroken(false)
	clk.Advance(maxOn)
	if r.Active() || pin.Level() != gpio.Low {
		t.Fatal("MaxOn did not switch off a relay whose Close failed")
	}
}

func TestOnChangeMayCallTheRelay(t *testing.T) {
	clk := clocktest.New(t0)
	var r *Relay
	var calls []string
	r, err := NewRelay(RelayConfig{Name: "door", Pin: sim.NewBank().Pin("x"), MaxOn: maxOn, Clock: clk,
		OnChange: func(active bool) {
			calls = append(calls, fmt.Sprintf("begin %v (Active %v)", active, r.Active()))
			if active {
				if err := r.Set(false); err != nil {
					t.Error(err)
				}
			}
			calls = append(calls, fmt.Sprintf("end %v", active))
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Pulse(time.Second); err != nil {
		t.Fatal(err)
	}
	// The second transition is delivered after the first callback returns.
	want := []string{"begin true (Active true)", "end true", "begin false (Active false)", "end false"}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls = %q, want %q", calls, want)
	}
}

func TestRelayConcurrentUse(t *testing.T) {
	clk := clocktest.New(t0)
	r, err := NewRelay(RelayConfig{Name: "door", Pin: sim.NewBank().Pin("x"), MaxOn: maxOn, Clock: clk,
		OnChange: func(bool) {}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 100 {
				switch (i + j) % 4 {
				case 0:
					_ = r.Pulse(time.Second)
				case 1:
					_ = r.Set(j%2 == 0)
				case 2:
					clk.Advance(300 * time.Millisecond)
				default:
					_, _ = r.Active(), r.Cycles()
				}
			}
		})
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if r.Active() {
		t.Fatal("active after Close")
	}
}

func TestToggleLatchesAndStillDropsAtMaxOn(t *testing.T) {
	rr := newRelayRig(t, false)
	if err := rr.r.Toggle(); err != nil {
		t.Fatal(err)
	}
	rr.check(t, true, gpio.High, true)
	rr.clk.Advance(time.Second)
	if err := rr.r.Toggle(); err != nil {
		t.Fatal(err)
	}
	rr.check(t, false, gpio.Low, true, false)
	if rr.clk.Pending() != 0 {
		t.Fatalf("%d timers pending while off", rr.clk.Pending())
	}
	// Latched open and forgotten: the driver releases it at max_on.
	if err := rr.r.Toggle(); err != nil {
		t.Fatal(err)
	}
	rr.clk.Advance(maxOn - time.Nanosecond)
	rr.check(t, true, gpio.High, true, false, true)
	rr.clk.Advance(time.Nanosecond)
	rr.check(t, false, gpio.Low, true, false, true, false)
	if got := rr.r.Cycles(); got != 2 {
		t.Fatalf("Cycles = %d, want 2 (switch-ons)", got)
	}
}

func TestToggleErrors(t *testing.T) {
	pin := &faultyPin{Pin: sim.NewBank().Pin("GPIO27")}
	r, err := NewRelay(RelayConfig{Name: "door", Pin: pin, MaxOn: maxOn, Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	pin.setBroken(true)
	if err := r.Toggle(); !errors.Is(err, errPin) || r.Active() || r.Cycles() != 0 {
		t.Fatalf("Toggle on a broken pin = %v, Active %v, Cycles %d", err, r.Active(), r.Cycles())
	}
	pin.setBroken(false)
	if err := r.Toggle(); err != nil {
		t.Fatal(err)
	}
	pin.setBroken(true)
	if err := r.Toggle(); !errors.Is(err, errPin) || !r.Active() {
		t.Fatalf("Toggle off on a broken pin = %v, Active %v", err, r.Active())
	}
	pin.setBroken(false)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Toggle(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Toggle after Close = %v, want ErrClosed", err)
	}
}
