package device

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestStopWhenIdleWaitsForTheCall(t *testing.T) {
	h := newHarness(t, testYAML)
	_, _ = h.answerBell()
	h.st.StopWhenIdle()
	h.sync()
	if got := h.callState(); got != "active" {
		t.Fatalf("call state %q after StopWhenIdle, want the call to go on", got)
	}
	if err := h.st.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.st.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the call ended")
	}
}

func TestStopWhenIdleAtOnceWhenIdle(t *testing.T) {
	h := newHarness(t, testYAML)
	h.st.StopWhenIdle()
	select {
	case <-h.st.done:
	case <-time.After(5 * time.Second):
		t.Fatal("an idle station did not stop")
	}
}

func TestStopWhenIdleLetsTheDoorOpeningFinish(t *testing.T) {
	h := newHarness(t, testYAML)
	if err := h.st.PulseRelay(context.Background(), "door", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	h.st.StopWhenIdle()
	h.sync()
	select {
	case <-h.st.done:
		t.Fatal("the station stopped while the door was held open")
	default:
	}
	h.clock.Advance(3 * time.Second)
	select {
	case <-h.st.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the station did not stop after the door closed")
	}
}

func TestSharedBusOutlivesStation(t *testing.T) {
	bus := NewBus()
	events, cancel := bus.Subscribe()
	defer cancel()
	h := newHarnessWith(t, testYAML, func(h *harness, c *Config) { c.Bus = bus })
	<-h.stop()
	h.st.ProvisioningEvent(ProvisioningApplied, "")
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the station closed a bus it does not own")
		}
		if ev.Type != "provisioned" {
			t.Fatalf("event %q", ev.Type)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event on the shared bus")
	}
}

func TestInitialRegistration(t *testing.T) {
	h := newHarnessWith(t, testYAML, func(h *harness, c *Config) {
		c.Registration = RegistrationEvent{State: "registered", Registrar: "127.0.0.1"}
	})
	st, err := h.st.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Registration.State != "registered" {
		t.Fatalf("registration %q, want the state handed over", st.Registration.State)
	}
}

func TestPingFailsWhileTheLoopHangs(t *testing.T) {
	h := newHarness(t, testYAML)
	if err := h.st.Ping(context.Background()); err != nil {
		t.Fatalf("ping of a running station: %v", err)
	}
	release := make(chan struct{})
	h.st.post(func() { <-release })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := h.st.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping of a hung loop: %v, want the deadline", err)
	}
	close(release)
	if err := h.st.Ping(context.Background()); err != nil {
		t.Fatalf("ping after the loop came back: %v", err)
	}
}

func TestUptimeCountsFromStarted(t *testing.T) {
	var started time.Time
	h := newHarnessWith(t, testYAML, func(h *harness, c *Config) {
		started = h.clock.Now().Add(-time.Hour)
		c.Started = started
	})
	st, err := h.st.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Uptime != "1h0m0s" {
		t.Fatalf("uptime %q, want it counted from the process start an hour ago", st.Uptime)
	}
}
