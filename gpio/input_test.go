package gpio

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"intercom/gpio/sim"
	"intercom/internal/clock/clocktest"
)

// syncPin lets a test wait until the Input has fully handled the edges it
// drove: the Input re-enters WaitForEdge only after handling an edge.
type syncPin struct {
	*sim.Pin
	mu       sync.Mutex
	cond     *sync.Cond
	waiting  bool
	consumed int // WaitForEdge calls that returned true
}

func newSyncPin(p *sim.Pin) *syncPin {
	s := &syncPin{Pin: p}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (p *syncPin) WaitForEdge(timeout time.Duration) bool {
	p.mu.Lock()
	p.waiting = true
	p.cond.Broadcast()
	p.mu.Unlock()
	ok := p.Pin.WaitForEdge(timeout)
	p.mu.Lock()
	p.waiting = false
	if ok {
		p.consumed++
	}
	p.mu.Unlock()
	return ok
}

// waitHandled blocks until n edges were returned and the caller is back in
// WaitForEdge, i.e. it has finished handling all n.
func (p *syncPin) waitHandled(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.waiting || p.consumed < n {
		p.cond.Wait()
	}
}

// deafPin never reports edges, like a driver that missed them.
type deafPin struct{ *sim.Pin }

func (p deafPin) WaitForEdge(time.Duration) bool {
	p.Pin.WaitForEdge(time.Millisecond)
	return false
}

const debounce = 30 * time.Millisecond

// rig runs an active-low, pulled-up button (the bell wiring) on a fake clock.
type rig struct {
	t     *testing.T
	clk   *clocktest.Fake
	pin   *syncPin
	in    *Input
	out   chan Change
	edges int
}

func newRig(t *testing.T) *rig {
	t.Helper()
	clk := clocktest.New(t0)
	pin := newSyncPin(sim.NewBank().Pin("GPIO17"))
	in, err := NewInput(InputConfig{Name: "bell", Pin: pin, ActiveLow: true, Pull: gpio.PullUp,
		Debounce: debounce, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, clk: clk, pin: pin, in: in, out: make(chan Change, 16)}
	startRun(t, in, r.out)
	return r
}

// startRun runs in.Run until the test ends and checks it returns nil.
func startRun(t *testing.T, in *Input, out chan Change) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

// drive sets the line and waits until the Input has handled the edge.
func (r *rig) drive(l gpio.Level) {
	if r.pin.Level() != l {
		r.edges++
	}
	r.pin.Drive(l)
	r.pin.waitHandled(r.edges)
}

// expect receives the next change and checks it exactly.
func (r *rig) expect(active bool, at time.Duration) {
	r.t.Helper()
	want := Change{Name: "bell", Active: active, At: t0.Add(at)}
	select {
	case got := <-r.out:
		if got != want {
			r.t.Fatalf("change = %+v, want %+v", got, want)
		}
	case <-time.After(10 * time.Second):
		r.t.Fatalf("no change, want %+v", want)
	}
}

func (r *rig) now() time.Duration { return r.clk.Now().Sub(t0) }

// bounce plays a bounce train that lasts length and ends at level final,
// with random gaps of 1-8 ms between edges.
func (r *rig) bounce(rng *rand.Rand, final gpio.Level, length time.Duration) {
	start := r.now()
	l := final
	r.drive(l)
	for {
		gap := time.Duration(1+rng.IntN(8)) * time.Millisecond
		if r.now()+gap >= start+length {
			break
		}
		r.clk.Advance(gap)
		l = !l
		r.drive(l)
	}
	r.clk.Advance(start + length - r.now())
	if l == final {
		// The last bounce must land on the end of the train.
		r.drive(!l)
	}
	r.drive(final)
}

func TestBounceTrainsGiveOnePressAndOneRelease(t *testing.T) {
	for _, ms := range []int{5, 10, 20, 29, 30, 31, 40} {
		length := time.Duration(ms) * time.Millisecond
		for seed := range uint64(5) {
			t.Run(fmt.Sprintf("%s/seed%d", length, seed), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(seed, 42))
				r := newRig(t)
				if r.in.Active() {
					t.Fatal("pulled-up active-low button starts active")
				}
				r.bounce(rng, gpio.Low, length)
				end := r.now()
				r.clk.Advance(debounce - time.Millisecond)
				if r.in.Active() {
					t.Fatal("press accepted before the line was quiet for the debounce time")
				}
				r.clk.Advance(time.Millisecond)
				if !r.in.Active() {
					t.Fatal("press not accepted after the debounce time")
				}
				r.expect(true, end+debounce)

				r.clk.Advance(200 * time.Millisecond)
				r.bounce(rng, gpio.High, length)
				end = r.now()
				r.clk.Advance(debounce)
				// Any extra change would arrive before this one.
				r.expect(false, end+debounce)
				if r.in.Active() {
					t.Fatal("still active after release")
				}
			})
		}
	}
}

func TestCleanShortPressIsReported(t *testing.T) {
	r := newRig(t)
	r.drive(gpio.Low)
	r.clk.Advance(50 * time.Millisecond)
	r.drive(gpio.High)
	r.clk.Advance(debounce)
	r.expect(true, debounce)
	r.expect(false, 50*time.Millisecond+debounce)
}

func TestGlitchIsIgnored(t *testing.T) {
	r := newRig(t)
	r.drive(gpio.Low)
	r.clk.Advance(debounce - time.Millisecond)
	r.drive(gpio.High)
	r.clk.Advance(time.Second)
	if r.in.Active() {
		t.Fatal("glitch shorter than the debounce time was accepted")
	}
	r.drive(gpio.Low)
	r.clk.Advance(debounce)
	// A change caused by the glitch would arrive before this one.
	r.expect(true, time.Second+2*debounce-time.Millisecond)
}

func TestMissedEdgeIsCaughtByPolling(t *testing.T) {
	clk := clocktest.New(t0)
	pin := sim.NewBank().Pin("GPIO5")
	in, err := NewInput(InputConfig{Name: "door_contact", Pin: deafPin{pin}, Pull: gpio.PullDown, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Change, 1)
	startRun(t, in, out)
	pin.Drive(gpio.High)
	clk.WaitForTimers(1) // the poll opened a debounce window
	clk.Advance(DefaultDebounce)
	if c := <-out; c != (Change{Name: "door_contact", Active: true, At: t0.Add(DefaultDebounce)}) {
		t.Fatalf("change = %+v", c)
	}
}

func TestInitialStateAndPolarity(t *testing.T) {
	tests := []struct {
		pull      gpio.Pull
		drive     *gpio.Level
		activeLow bool
		want      bool
	}{
		{gpio.PullUp, nil, true, false},
		{gpio.PullUp, nil, false, true},
		{gpio.PullDown, nil, false, false},
		{gpio.PullUp, ptr(gpio.Low), true, true},
		{gpio.PullDown, ptr(gpio.High), true, false},
	}
	for i, tt := range tests {
		pin := sim.NewBank().Pin("x")
		if tt.drive != nil {
			pin.Drive(*tt.drive)
		}
		in, err := NewInput(InputConfig{Name: "x", Pin: pin, Pull: tt.pull, ActiveLow: tt.activeLow})
		if err != nil {
			t.Fatal(err)
		}
		if in.Active() != tt.want {
			t.Errorf("case %d: Active = %v, want %v", i, in.Active(), tt.want)
		}
		if pin.Pull() != tt.pull {
			t.Errorf("case %d: pin pull = %s, want %s", i, pin.Pull(), tt.pull)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestNewInputErrors(t *testing.T) {
	if _, err := NewInput(InputConfig{Name: "x"}); err == nil {
		t.Error("nil pin accepted")
	}
	if _, err := NewInput(InputConfig{Name: "x", Pin: sim.NewBank().Pin("x"), Debounce: -time.Millisecond}); err == nil {
		t.Error("negative debounce accepted")
	}
	bad := &faultyPin{Pin: sim.NewBank().Pin("x"), broken: true}
	if _, err := NewInput(InputConfig{Name: "x", Pin: bad}); !errors.Is(err, errPin) {
		t.Errorf("err = %v, want it to wrap the pin error", err)
	}
}

func TestRunArguments(t *testing.T) {
	pin := newSyncPin(sim.NewBank().Pin("x"))
	in, err := NewInput(InputConfig{Name: "x", Pin: pin})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Run(context.Background(), nil); err == nil {
		t.Error("nil channel accepted")
	}
	startRun(t, in, make(chan Change))
	pin.waitHandled(0) // the first Run is watching the pin
	if err := in.Run(context.Background(), make(chan Change)); err == nil {
		t.Error("second concurrent Run accepted")
	}
}

func TestRunStopsWhileConsumerIsAway(t *testing.T) {
	clk := clocktest.New(t0)
	pin := newSyncPin(sim.NewBank().Pin("x"))
	in, err := NewInput(InputConfig{Name: "x", Pin: pin, Pull: gpio.PullDown, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, make(chan Change)) }() // nobody reads
	pin.Drive(gpio.High)
	pin.waitHandled(1)
	clk.Advance(DefaultDebounce)
	pin.Drive(gpio.Low)
	pin.waitHandled(2)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if clk.Pending() != 0 {
		t.Fatalf("%d timers left after Run returned", clk.Pending())
	}
}
