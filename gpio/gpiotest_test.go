package gpio

import (
	"context"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"intercom/internal/clock/clocktest"
)

// These tests drive the drivers through periph's own fake pin, the one its
// users know, to show nothing here depends on the sim driver's quirks.

func TestRelayOnPeriphFakePin(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO27", L: gpio.High}
	clk := clocktest.New(t0)
	r, err := NewRelay(RelayConfig{Name: "door", Pin: pin, MaxOn: 10 * time.Second, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if pin.Read() != gpio.Low {
		t.Fatal("an active-high relay left high at start")
	}
	if err := r.Set(true); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10*time.Second - time.Millisecond)
	if pin.Read() != gpio.High {
		t.Fatal("relay dropped before max_on")
	}
	clk.Advance(time.Millisecond)
	if pin.Read() != gpio.Low || r.Active() {
		t.Fatal("relay commanded on forever still on at max_on")
	}
	if err := r.Pulse(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if pin.Read() != gpio.Low {
		t.Fatal("relay active after Close")
	}
}

func TestInputOnPeriphFakePin(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO17", L: gpio.High, EdgesChan: make(chan gpio.Level)}
	clk := clocktest.New(t0)
	in, err := NewInput(InputConfig{Name: "bell", Pin: pin, ActiveLow: true, Pull: gpio.PullUp, Debounce: 30 * time.Millisecond, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Change, 4)
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, out) }()
	// gpiotest's WaitForEdge sets the level it receives, like a real line.
	pin.EdgesChan <- gpio.Low
	clk.WaitForTimers(1)
	clk.Advance(30 * time.Millisecond)
	select {
	case c := <-out:
		if !c.Active || c.Name != "bell" {
			t.Fatalf("change %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("press not reported")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
