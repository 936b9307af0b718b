package media

import (
	"runtime"
	"testing"
	"time"

	"intercom/internal/clock/clocktest"
)

// TestPacerSlack checks that a frame due within pacerSlack is released at
// once, and that releasing it early does not move the schedule.
func TestPacerSlack(t *testing.T) {
	clk := clocktest.New(epoch)
	p := newPacer(clk, 8000)
	if err := p.wait(160); err != nil {
		t.Fatal(err)
	}
	clk.Advance(20*time.Millisecond - pacerSlack)
	done := make(chan error, 1)
	go func() { done <- p.wait(160) }()
	for released := false; !released; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			released = true
		default:
			if clk.Pending() > 0 {
				t.Fatal("a frame due within the slack waited for a timer")
			}
			runtime.Gosched()
		}
	}
	// The next frame is still due at 40ms, not 20ms after the early one.
	go func() { done <- p.wait(160) }()
	clk.WaitForTimers(1)
	clk.Advance(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("released %v early (err %v)", pacerSlack, err)
	default:
	}
	clk.Advance(pacerSlack)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
