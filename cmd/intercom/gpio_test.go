package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"intercom/gpio/sim"
	"intercom/internal/clock/clocktest"
)

var gpioT0 = time.Date(2025, 1, 1, 7, 0, 0, 0, time.UTC)

// fakeBoard stands in for the real board.
type fakeBoard struct {
	infos []pinInfo
	pins  map[string]pgpio.PinIO
}

func (f fakeBoard) list() ([]pinInfo, error) { return f.infos, nil }

func (f fakeBoard) pin(name string) (pgpio.PinIO, error) {
	if p, ok := f.pins[name]; ok {
		return p, nil
	}
	return nil, usageError{fmt.Errorf("no pin %q", name)}
}

// syncBuffer is a strings.Builder safe for the command's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gpioCLI runs one gpio command in the background on sim pins and a fake
// clock, with its output readable line by line.
type gpioCLI struct {
	t      *testing.T
	bank   *sim.Bank
	clk    *clocktest.Fake
	stdin  *io.PipeWriter
	lines  *bufio.Scanner
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func startGPIO(t *testing.T, args ...string) *gpioCLI {
	t.Helper()
	c := &gpioCLI{t: t, bank: sim.NewBank(), clk: clocktest.New(gpioT0), stderr: &syncBuffer{}, done: make(chan error, 1)}
	stdinR, stdinW := io.Pipe()
	outR, outW := io.Pipe()
	c.stdin = stdinW
	c.lines = bufio.NewScanner(outR)
	env := gpioEnv{host: fakeBoard{}, bank: c.bank, clock: c.clk, stdin: stdinR}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		err := gpioRun(ctx, env, args, outW, c.stderr)
		outW.Close()
		c.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		stdinW.Close()
		go func() { _, _ = io.Copy(io.Discard, outR) }()
	})
	return c
}

// expect reads the next line of output and checks it.
func (c *gpioCLI) expect(want string) {
	c.t.Helper()
	if !c.lines.Scan() {
		c.t.Fatalf("output ended, want %q (stderr: %s)", want, c.stderr)
	}
	if got := c.lines.Text(); got != want {
		c.t.Fatalf("output %q, want %q", got, want)
	}
}

// wait returns the command's error once it has ended, and fails the test
// on output nobody expected.
func (c *gpioCLI) wait() error {
	c.t.Helper()
	rest := make(chan []string, 1)
	go func() {
		var lines []string
		for c.lines.Scan() {
			lines = append(lines, c.lines.Text())
		}
		rest <- lines
	}()
	select {
	case lines := <-rest:
		if len(lines) > 0 {
			c.t.Errorf("unexpected output %q", lines)
		}
	case <-time.After(10 * time.Second):
		c.t.Fatal("command did not end")
	}
	return <-c.done
}

func TestGPIOWatchSim(t *testing.T) {
	c := startGPIO(t, "watch", "GPIO17", "-sim", "-long", "2s")
	c.expect("GPIO17: inactive; Ctrl-C stops")
	c.expect("sim: type low or high to drive GPIO17")
	fmt.Fprintln(c.stdin, "low")
	c.clk.WaitForTimers(1)
	c.clk.Advance(30 * time.Millisecond)
	c.expect("07:00:00.030 GPIO17: active")
	c.clk.Advance(2 * time.Second)
	c.expect("07:00:02.030 GPIO17: long press")
	fmt.Fprintln(c.stdin, "sideways")
	fmt.Fprintln(c.stdin, "HIGH")
	c.clk.WaitForTimers(1)
	c.clk.Advance(30 * time.Millisecond)
	c.expect("07:00:02.060 GPIO17: inactive")
	c.cancel()
	if err := c.wait(); err != nil {
		t.Fatalf("watch ended with %v, want nil after Ctrl-C", err)
	}
	if !strings.Contains(c.stderr.String(), `sim: "sideways": type low or high`) {
		t.Errorf("stderr %q lacks the hint for a bad line", c.stderr)
	}
	if pull := c.bank.Pin("GPIO17").Pull(); pull != pgpio.PullUp {
		t.Errorf("pull %s, want up by default", pull)
	}
}

func TestGPIOWatchPullDownActiveHigh(t *testing.T) {
	c := startGPIO(t, "watch", "-sim", "-pull", "down", "-active", "high", "-debounce", "10ms", "GPIO5")
	c.expect("GPIO5: inactive; Ctrl-C stops")
	c.expect("sim: type low or high to drive GPIO5")
	fmt.Fprintln(c.stdin, "1")
	c.clk.WaitForTimers(1)
	c.clk.Advance(10 * time.Millisecond)
	c.expect("07:00:00.010 GPIO5: active")
	c.cancel()
	if err := c.wait(); err != nil {
		t.Fatal(err)
	}
}

func TestGPIOPulseSim(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		on, off        pgpio.Level
		wantOn, offMsg string
	}{
		{[]string{"pulse", "-sim", "GPIO27", "3s"}, pgpio.High, pgpio.Low, "07:00:00.000 GPIO27: on for 3s", "07:00:03.000 GPIO27: off after 3s"},
		{[]string{"pulse", "GPIO27", "1500ms", "-active", "low", "-sim"}, pgpio.Low, pgpio.High, "07:00:00.000 GPIO27: on for 1.5s", "07:00:01.500 GPIO27: off after 1.5s"},
	} {
		c := startGPIO(t, tc.args...)
		c.expect(tc.wantOn)
		pin := c.bank.Pin("GPIO27")
		if pin.Level() != tc.on {
			t.Fatalf("%q: line %s while on, want %s", tc.args, pin.Level(), tc.on)
		}
		c.clk.WaitForTimers(1)
		d, _ := c.clk.Next()
		c.clk.Advance(d - time.Millisecond)
		if pin.Level() != tc.on {
			t.Fatalf("%q: line dropped early", tc.args)
		}
		c.clk.Advance(time.Millisecond)
		c.expect(tc.offMsg)
		if err := c.wait(); err != nil {
			t.Fatal(err)
		}
		if pin.Level() != tc.off {
			t.Fatalf("%q: line %s after the pulse, want %s", tc.args, pin.Level(), tc.off)
		}
	}
}

func TestGPIOPulseInterrupted(t *testing.T) {
	c := startGPIO(t, "pulse", "-sim", "GPIO27", "10s")
	c.expect("07:00:00.000 GPIO27: on for 10s")
	c.clk.Advance(time.Second)
	c.cancel()
	c.expect("07:00:01.000 GPIO27: off, interrupted")
	if err := c.wait(); err != nil {
		t.Fatal(err)
	}
	if l := c.bank.Pin("GPIO27").Level(); l != pgpio.Low {
		t.Fatalf("line %s after Ctrl-C, want low", l)
	}
	if c.clk.Pending() != 0 {
		t.Fatalf("%d timers left", c.clk.Pending())
	}
}

func TestGPIOList(t *testing.T) {
	board := fakeBoard{infos: []pinInfo{
		{name: "GPIO17", function: "In/High", level: "high", aliases: []string{"P1_11", "17"}},
		{name: "GPIO27", function: "-", level: "-"},
	}}
	var stdout, stderr strings.Builder
	env := gpioEnv{host: board, bank: sim.NewBank(), clock: clocktest.New(gpioT0)}
	if err := gpioRun(context.Background(), env, []string{"list"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	want := "NAME    FUNCTION  LEVEL  ALIASES\n" +
		"GPIO17  In/High   high   P1_11, 17\n" +
		"GPIO27  -         -      \n"
	if stdout.String() != want {
		t.Errorf("list:\n%s\nwant:\n%s", stdout.String(), want)
	}

	// No lines at all is a runtime error (exit 1) that says so.
	env.host = fakeBoard{}
	err := gpioRun(context.Background(), env, []string{"list"}, &stdout, &stderr)
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "no GPIO lines") {
		t.Errorf("list without lines: %v, want a runtime error saying there are none", err)
	}

	stdout.Reset()
	if err := gpioRun(context.Background(), env, []string{"list", "-sim"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "virtual pins") {
		t.Errorf("list -sim: %q", stdout.String())
	}
}

// alias is a named alias of a real pin, like gpioreg's.
type alias struct {
	pgpio.PinIO
	name string
}

func (a alias) Name() string      { return a.name }
func (a alias) Real() pgpio.PinIO { return a.PinIO }

func TestPinInfosDoNotTouchPins(t *testing.T) {
	in := &gpiotest.Pin{N: "GPIO17", Fn: "In/High"}
	out := &gpiotest.Pin{N: "GPIO27", Fn: "Out/Low"}
	unused := &gpiotest.Pin{N: "GPIO22"}
	got := pinInfos([]pgpio.PinIO{in, out, unused}, []pgpio.PinIO{alias{in, "P1_11"}, alias{in, "17"}, alias{out, "P1_13"}})
	want := []pinInfo{
		{"GPIO17", "In/High", "high", []string{"P1_11", "17"}},
		{"GPIO27", "Out/Low", "low", []string{"P1_13"}},
		{"GPIO22", "-", "-", nil},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pinInfos = %v, want %v", got, want)
	}
}

func TestGPIOUsageErrors(t *testing.T) {
	board := fakeBoard{pins: map[string]pgpio.PinIO{"GPIO17": &gpiotest.Pin{N: "GPIO17"}}}
	env := gpioEnv{host: board, bank: sim.NewBank(), clock: clocktest.New(gpioT0), stdin: strings.NewReader("")}
	for _, args := range [][]string{
		{},
		{"blink"},
		{"list", "extra"},
		{"list", "-bogus"},
		{"watch"},
		{"watch", "GPIO17", "GPIO27"},
		{"watch", "-pull", "sideways", "GPIO17"},
		{"watch", "-active", "medium", "GPIO17"},
		{"watch", "-debounce", "0s", "GPIO17"},
		{"watch", "-long", "-1s", "GPIO17"},
		{"watch", "NOPE"},
		{"watch", "-h"},
		{"pulse"},
		{"pulse", "GPIO17"},
		{"pulse", "GPIO17", "soon"},
		{"pulse", "GPIO17", "0s"},
		{"pulse", "GPIO17", "-1s"},
		{"pulse", "GPIO17", "2m"},
		{"pulse", "GPIO17", "1s", "extra"},
		{"pulse", "-active", "medium", "GPIO17", "1s"},
		{"pulse", "NOPE", "1s"},
	} {
		var stdout, stderr strings.Builder
		var ue usageError
		if err := gpioRun(context.Background(), env, args, &stdout, &stderr); !errors.As(err, &ue) {
			t.Errorf("gpio %q: %v, want a usage error", args, err)
		}
		if stdout.Len() != 0 {
			t.Errorf("gpio %q wrote %q", args, stdout.String())
		}
	}
	// Through main's dispatch too: usage errors before any hardware is touched.
	for _, args := range [][]string{{"gpio"}, {"gpio", "blink"}, {"gpio", "pulse", "GPIO17", "0s"}} {
		var stdout, stderr strings.Builder
		var ue usageError
		if err := run(args, &stdout, &stderr); !errors.As(err, &ue) {
			t.Errorf("run %q: %v, want a usage error", args, err)
		}
	}
}

func TestGPIOPinErrorIsRuntimeError(t *testing.T) {
	// gpiotest refuses to be an input with edges and without a channel, and
	// gpio.Input then polls; a pin that cannot be an input at all is broken.
	board := fakeBoard{pins: map[string]pgpio.PinIO{"GPIO17": brokenPin{&gpiotest.Pin{N: "GPIO17"}}}}
	env := gpioEnv{host: board, bank: sim.NewBank(), clock: clocktest.New(gpioT0)}
	for _, args := range [][]string{{"watch", "GPIO17"}, {"pulse", "GPIO17", "1s"}} {
		var stdout, stderr strings.Builder
		var ue usageError
		if err := gpioRun(context.Background(), env, args, &stdout, &stderr); err == nil || errors.As(err, &ue) {
			t.Errorf("gpio %q on a broken pin: %v, want a runtime error", args, err)
		}
	}
}

type brokenPin struct{ *gpiotest.Pin }

var errBroken = errors.New("line busy")

func (brokenPin) In(pgpio.Pull, pgpio.Edge) error { return errBroken }
func (brokenPin) Out(pgpio.Level) error           { return errBroken }
