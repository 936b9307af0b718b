package clocktest

import (
	"testing"
	"time"
)

func TestAdvanceFiresDueTimersInOrder(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(start)
	var fired []time.Duration
	for _, d := range []time.Duration{3 * time.Second, time.Second, 2 * time.Second} {
		c.AfterFunc(d, func() { fired = append(fired, c.Now().Sub(start)) })
	}
	late := c.AfterFunc(10*time.Second, func() { t.Error("timer beyond the advance fired") })
	c.Advance(3 * time.Second)
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	if len(fired) != 3 || fired[0] != want[0] || fired[1] != want[1] || fired[2] != want[2] {
		t.Fatalf("fired at %v, want %v", fired, want)
	}
	if !late.Stop() || late.Stop() {
		t.Fatal("Stop should report true once for a pending timer")
	}
	c.Advance(time.Minute)
	if got := c.Now().Sub(start); got != 3*time.Second+time.Minute {
		t.Fatalf("clock at %v", got)
	}
}

func TestTimerChannelAndReset(t *testing.T) {
	c := New(time.Unix(0, 0))
	tm := c.NewTimer(time.Second)
	c.Advance(500 * time.Millisecond)
	tm.Reset(time.Second)
	c.Advance(900 * time.Millisecond)
	select {
	case <-tm.C():
		t.Fatal("reset timer fired early")
	default:
	}
	c.Advance(100 * time.Millisecond)
	select {
	case at := <-tm.C():
		if at != time.Unix(1, 500_000_000) {
			t.Fatalf("fired with %v", at)
		}
	default:
		t.Fatal("timer did not fire")
	}
	if c.Pending() != 0 {
		t.Fatalf("%d timers pending", c.Pending())
	}
}

func TestWaitForTimers(t *testing.T) {
	c := New(time.Unix(0, 0))
	go c.AfterFunc(time.Second, func() {})
	c.WaitForTimers(1)
	if c.Pending() != 1 {
		t.Fatalf("%d timers pending", c.Pending())
	}
}

func TestNext(t *testing.T) {
	c := New(time.Unix(0, 0))
	if _, ok := c.Next(); ok {
		t.Fatal("Next reported a timer on an empty clock")
	}
	c.AfterFunc(3*time.Second, func() {})
	c.AfterFunc(2*time.Second, func() {})
	c.Advance(500 * time.Millisecond)
	if d, ok := c.Next(); !ok || d != 1500*time.Millisecond {
		t.Fatalf("Next = %v, %v; want 1.5s, true", d, ok)
	}
}
