package gpio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

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

// deafPin never reports edges, like a driver that missed them; it still
// waits as a working driver would, so the input keeps using edges.
type deafPin struct{ *sim.Pin }

func (p deafPin) WaitForEdge(timeout time.Duration) bool {
	p.Pin.WaitForEdge(timeout)
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

func newRig(t *testing.T) *rig { return newLongRig(t, 0) }

func newLongRig(t *testing.T, longPress time.Duration) *rig {
	t.Helper()
	clk := clocktest.New(t0)
	pin := newSyncPin(sim.NewBank().Pin("GPIO17"))
	in, err := NewInput(InputConfig{Name: "bell", Pin: pin, ActiveLow: true, Pull: gpio.PullUp,
		Debounce: debounce, LongPress: longPress, Clock: clk})
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
	if c := recv(t, out); c != (Change{Name: "door_contact", Active: true, At: t0.Add(DefaultDebounce)}) {
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
	if _, err := NewInput(InputConfig{Name: "x", Pin: sim.NewBank().Pin("x"), LongPress: -time.Millisecond}); err == nil {
		t.Error("negative long press accepted")
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
	in, err := NewInput(InputConfig{Name: "x", Pin: pin, Pull: gpio.PullDown, LongPress: time.Second, Clock: clk})
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

const longPress = time.Second

func TestLongPress(t *testing.T) {
	r := newLongRig(t, longPress)
	r.drive(gpio.Low)
	r.clk.Advance(debounce)
	r.expect(true, debounce)
	r.clk.Advance(longPress - time.Millisecond)
	if !r.in.Active() {
		t.Fatal("held button not active")
	}
	r.clk.Advance(time.Millisecond)
	want := Change{Name: "bell", Active: true, Long: true, At: t0.Add(debounce + longPress)}
	if got := recv(t, r.out); got != want {
		t.Fatalf("change = %+v, want %+v", got, want)
	}
	// Held on: no second long press; the release comes next.
	r.clk.Advance(5 * longPress)
	r.drive(gpio.High)
	release := r.now()
	r.clk.Advance(debounce)
	r.expect(false, release+debounce)
}

func TestReleaseBeforeLongPressSendsNothingExtra(t *testing.T) {
	r := newLongRig(t, longPress)
	r.drive(gpio.Low)
	r.clk.Advance(longPress - time.Millisecond) // held just short of it
	r.drive(gpio.High)
	r.clk.Advance(debounce)
	r.expect(true, debounce)
	r.expect(false, longPress-time.Millisecond+debounce)
	if r.clk.Pending() != 0 {
		t.Fatalf("%d timers pending after the release", r.clk.Pending())
	}
	r.clk.Advance(5 * longPress)
	r.drive(gpio.Low)
	press := r.now()
	r.clk.Advance(debounce)
	// A long press from the first one would arrive before this.
	r.expect(true, press+debounce)
}

// recv receives from c, failing the test if nothing comes.
func recv[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
	}
	var zero T
	return zero
}

// logSink collects the messages logged through it.
type logSink struct{ msgs chan string }

func (l logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l logSink) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logSink) WithGroup(string) slog.Handler            { return l }
func (l logSink) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		msg += " " + a.String()
		return true
	})
	l.msgs <- msg
	return nil
}

func TestInputWithoutEdgeDetectionPolls(t *testing.T) {
	// gpiotest.Pin refuses edge detection without an edge channel, as a
	// line without an interrupt does.
	pin := &gpiotest.Pin{N: "GPIO5"}
	clk := clocktest.New(t0)
	logs := logSink{msgs: make(chan string, 4)}
	in, err := NewInput(InputConfig{Name: "door_contact", Pin: pin, ActiveLow: true, Pull: gpio.PullUp,
		Clock: clk, Logger: slog.New(logs)})
	if err != nil {
		t.Fatalf("NewInput = %v, want a polled input", err)
	}
	if msg := recv(t, logs.msgs); !strings.Contains(msg, "polling") || !strings.Contains(msg, "door_contact") {
		t.Fatalf("log %q, want it to say the input is polled", msg)
	}
	if pin.Pull() != gpio.PullUp || in.Active() {
		t.Fatalf("pull %s, active %v: want pulled up and inactive", pin.Pull(), in.Active())
	}
	out := make(chan Change, 4)
	startRun(t, in, out)
	if err := pin.Out(gpio.Low); err != nil { // pressed
		t.Fatal(err)
	}
	clk.WaitForTimers(1) // a poll saw it and opened the debounce window
	clk.Advance(DefaultDebounce)
	if c := recv(t, out); c != (Change{Name: "door_contact", Active: true, At: t0.Add(DefaultDebounce)}) {
		t.Fatalf("change = %+v", c)
	}
	if len(logs.msgs) != 0 {
		t.Fatalf("logged again: %q", <-logs.msgs)
	}
}

// brokenEdgePin fails every edge wait at once, as periph's gpioioctl does
// when it cannot set a read deadline.
type brokenEdgePin struct {
	*sim.Pin
	mu    sync.Mutex
	waits int
}

func (p *brokenEdgePin) WaitForEdge(time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waits++
	return false
}

func (p *brokenEdgePin) calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waits
}

func TestFailingEdgeWaitsFallBackToPolling(t *testing.T) {
	pin := &brokenEdgePin{Pin: sim.NewBank().Pin("GPIO17")}
	clk := clocktest.New(t0)
	logs := logSink{msgs: make(chan string, 4)}
	in, err := NewInput(InputConfig{Name: "bell", Pin: pin, ActiveLow: true, Pull: gpio.PullUp,
		Debounce: debounce, Clock: clk, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan Change, 4)
	startRun(t, in, out)
	if msg := recv(t, logs.msgs); !strings.Contains(msg, "polling") || !strings.Contains(msg, "bell") {
		t.Fatalf("log %q, want it to say the input is polled", msg)
	}
	if got := pin.calls(); got != edgeFailures {
		t.Fatalf("%d edge waits, want %d before falling back", got, edgeFailures)
	}
	// A 50 ms press, seen by polling alone.
	pin.Drive(gpio.Low)
	clk.WaitForTimers(1)
	clk.Advance(debounce)
	if c := recv(t, out); c != (Change{Name: "bell", Active: true, At: t0.Add(debounce)}) {
		t.Fatalf("change = %+v", c)
	}
	clk.Advance(20 * time.Millisecond)
	pin.Drive(gpio.High)
	clk.WaitForTimers(1)
	release := clk.Now().Sub(t0)
	clk.Advance(debounce)
	if c := recv(t, out); c != (Change{Name: "bell", Active: false, At: t0.Add(release + debounce)}) {
		t.Fatalf("change = %+v", c)
	}
	if got := pin.calls(); got != edgeFailures {
		t.Fatalf("%d edge waits after falling back, want none", got-edgeFailures)
	}
	if len(logs.msgs) != 0 {
		t.Fatalf("logged again: %q", <-logs.msgs)
	}
}
