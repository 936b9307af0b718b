package device

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/media/tone"
)

// guard bounds a call into the station, so that a stalled loop fails the
// test instead of hanging it.
const guard = 5 * time.Second

// blockingRelay is a remote relay whose requests hang until the test answers
// them on release.
type blockingRelay struct {
	started chan time.Duration // each Pulse's length, as its request starts
	release chan error         // what the running request returns
	abort   chan struct{}      // closed by stop: requests fail at once
	once    sync.Once

	mu     sync.Mutex
	pulses int
	cycles uint64
}

func newBlockingRelay() *blockingRelay {
	return &blockingRelay{started: make(chan time.Duration, 4), release: make(chan error), abort: make(chan struct{})}
}

// stop lets running and later requests fail at once, so that a test that
// failed half-way can still stop its station.
func (r *blockingRelay) stop() { r.once.Do(func() { close(r.abort) }) }

func (r *blockingRelay) Pulse(d time.Duration) error {
	r.mu.Lock()
	r.pulses++
	r.mu.Unlock()
	err := errors.New("test ended")
	select {
	case r.started <- d:
		select {
		case err = <-r.release:
		case <-r.abort:
		}
	case <-r.abort:
	}
	if err == nil {
		r.mu.Lock()
		r.cycles++
		r.mu.Unlock()
	}
	return err
}

func (r *blockingRelay) Active() bool { return false }

func (r *blockingRelay) Cycles() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cycles
}

func (r *blockingRelay) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pulses
}

// awaitRequest waits for the station to start a request on the relay.
func (r *blockingRelay) awaitRequest(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-r.started:
		return d
	case <-time.After(guard):
		t.Fatal("no relay request")
		return 0
	}
}

// remoteYAML is testYAML with the door on an HTTP relay.
var remoteYAML = strings.Replace(testYAML, "{name: door, pin: GPIO27,",
	`{name: door, url: "http://relay.invalid/on?timer={seconds}",`, 1)

// newRemoteHarness starts a station whose door relay is r; the returned
// stop cancels Run and returns its done channel.
func newRemoteHarness(t *testing.T, r *blockingRelay) (*harness, func() <-chan struct{}) {
	t.Helper()
	h := newHarnessWith(t, remoteYAML, func(h *harness, c *Config) {
		h.relay = nil
		c.Relays = map[string]Relay{"door": r}
	})
	// Cleanups run last first: a request still blocked is let go before
	// the harness waits for Run.
	t.Cleanup(r.stop)
	return h, h.stop
}

// guarded runs f with a context that ends after guard.
func guarded(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := f(ctx); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestRemoteRelayDoesNotStallLoop(t *testing.T) {
	r := newBlockingRelay()
	h, _ := newRemoteHarness(t, r)
	guarded(t, "pulse relay", func(ctx context.Context) error { return h.st.PulseRelay(ctx, "door", 0) })
	if d := r.awaitRequest(t); d != 3*time.Second {
		t.Fatalf("pulse %v, want the relay's 3s", d)
	}
	// The request hangs; the station still answers the API and buttons.
	guarded(t, "status", func(ctx context.Context) error {
		st, err := h.st.Status(ctx)
		if err == nil && st.Call.State != "idle" {
			t.Errorf("call state %q", st.Call.State)
		}
		return err
	})
	guarded(t, "press button", func(ctx context.Context) error { return h.st.PressButton(ctx, "bell") })
	select {
	case <-h.phone.reqs:
	case <-time.After(guard):
		t.Fatal("the bell did not dial while the relay request hung")
	}
	h.noEvent("door_opened")

	r.release <- nil
	ev := h.expectEvent("door_opened")
	if ev.Data["relay"] != "door" || ev.Data["source"] != "api" {
		t.Fatalf("door_opened %v", ev.Data)
	}
	if got := h.st.metrics.doorsOpened.Load(); got != 1 {
		t.Errorf("%d doors opened, want 1", got)
	}
}

func TestRemoteRelaySecondOpeningIgnoredWhileRunning(t *testing.T) {
	r := newBlockingRelay()
	h, _ := newRemoteHarness(t, r)
	guarded(t, "pulse relay", func(ctx context.Context) error { return h.st.PulseRelay(ctx, "door", 0) })
	r.awaitRequest(t)
	for range 3 {
		guarded(t, "pulse relay again", func(ctx context.Context) error { return h.st.PulseRelay(ctx, "door", 0) })
	}
	h.sync()
	if got := r.count(); got != 1 {
		t.Fatalf("%d requests while one was running, want 1", got)
	}
	r.release <- nil
	h.expectEvent("door_opened")
	h.noEvent("door_opened")

	// Once the request is over, the next opening sends a new one.
	guarded(t, "pulse relay after", func(ctx context.Context) error { return h.st.PulseRelay(ctx, "door", 0) })
	r.awaitRequest(t)
	r.release <- nil
	h.expectEvent("door_opened")
	if got := r.count(); got != 2 {
		t.Fatalf("%d requests, want 2", got)
	}
}

func TestRemoteRelayCodeOpensDoorAfterRequest(t *testing.T) {
	r := newBlockingRelay()
	h, _ := newRemoteHarness(t, r)
	_, onDigit := h.answerBell()
	h.keys(onDigit, "1234")
	r.awaitRequest(t)
	// Digits keep arriving while the request hangs.
	h.keys(onDigit, "5")
	h.expectEvent("dtmf")
	if got := h.stream.played(); len(got) != 0 {
		t.Fatalf("tones %q before the relay answered", got)
	}

	r.release <- nil
	ev := h.expectEvent("door_opened")
	if ev.Data["source"] != "dtmf" {
		t.Fatalf("door_opened %v", ev.Data)
	}
	h.sync()
	if got := h.stream.played(); len(got) != 1 || got[0] != tone.DoorOpened().String() {
		t.Fatalf("tones %q, want the door-opened confirmation", got)
	}
	// hangup_after_door_open counts from the relay's answer.
	h.clock.Advance(10 * time.Second)
	if ev := h.expectEvent("hangup"); ev.Data["reason"] != "door opened" {
		t.Fatalf("hangup %v", ev.Data)
	}
}

func TestRemoteRelayFailureIsAnErrorNotAnOpening(t *testing.T) {
	r := newBlockingRelay()
	h, _ := newRemoteHarness(t, r)
	_, onDigit := h.answerBell()
	h.keys(onDigit, "1234")
	r.awaitRequest(t)
	r.release <- errors.New("gpio: http relay \"door\": connection refused")
	ev := h.expectEvent("error")
	if ev.Data["what"] != "open door" || !strings.Contains(ev.Data["error"].(string), "connection refused") {
		t.Fatalf("error %v", ev.Data)
	}
	h.noEvent("door_opened")
	if got := h.stream.played(); len(got) != 0 {
		t.Fatalf("tones %q after a failed opening", got)
	}
	h.clock.Advance(10 * time.Second)
	if got := h.callState(); got != "active" {
		t.Fatalf("call %q after a failed opening, want it kept", got)
	}
	if got := h.st.metrics.doorsOpened.Load(); got != 0 {
		t.Errorf("%d doors opened after a failed opening", got)
	}

	// The failed request does not hold the relay: the next opening tries again.
	guarded(t, "pulse relay", func(ctx context.Context) error { return h.st.PulseRelay(ctx, "door", 0) })
	r.awaitRequest(t)
	r.release <- errors.New("timeout")
	if ev := h.expectEvent("error"); ev.Data["what"] != "open door" {
		t.Fatalf("error %v", ev.Data)
	}
	h.noEvent("door_opened")
}

func TestRemoteRelayExitButtonFailure(t *testing.T) {
	r := newBlockingRelay()
	yaml := strings.Replace(rolesYAML, "{name: door, pin: GPIO27,",
		`{name: door, url: "http://relay.invalid/on",`, 1)
	h := newRoleHarness(t, yaml, map[string]Relay{"door": r, "gate": &fakeRelay{}})
	t.Cleanup(r.stop) // runs before the harness's, which waits for Run
	h.flip(h.exit, true)
	r.awaitRequest(t)
	h.flip(h.exit, false)
	r.release <- errors.New("no route to host")
	if ev := h.expectEvent("error"); ev.Data["what"] != "exit button exit" {
		t.Fatalf("error %v", ev.Data)
	}
	h.noEvent("door_opened")
}

func TestShutdownWithRemoteRequestRunning(t *testing.T) {
	r := newBlockingRelay()
	h, stop := newRemoteHarness(t, r)
	guarded(t, "pulse relay", func(ctx context.Context) error { return h.st.PulseRelay(ctx, "door", 0) })
	r.awaitRequest(t)
	done := stop()
	// The request ends after the station was told to stop; its result has
	// no loop left to go to and Run must still return.
	r.release <- nil
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("Run did not return with a relay request running")
	}
}
