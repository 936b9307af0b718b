package gpio

import (
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"intercom/gpio/sim"
	"intercom/internal/clock/clocktest"
)

func newTestLED(t *testing.T, activeLow bool) (*LED, *recordingPin, *clocktest.Fake) {
	t.Helper()
	clk := clocktest.New(t0)
	pin := &recordingPin{Pin: sim.NewBank().Pin("GPIO22"), clk: clk}
	l, err := NewLED(LEDConfig{Name: "status", Pin: pin, ActiveLow: activeLow, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return l, pin, clk
}

func TestLEDPatternTiming(t *testing.T) {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	// Whether each pattern lights the LED d after it was set, written out
	// from the pattern descriptions rather than from the step table.
	tests := map[Pattern]func(d time.Duration) bool{
		PatternOff:          func(time.Duration) bool { return false },
		PatternOn:           func(time.Duration) bool { return true },
		PatternRegistered:   func(time.Duration) bool { return true },
		PatternUnregistered: func(d time.Duration) bool { return ms(d)%2000 < 1000 },
		PatternCalling:      func(d time.Duration) bool { return ms(d)%500 < 250 },
		PatternInCall:       func(d time.Duration) bool { return ms(d)%2000 < 1900 },
		PatternDoorOpen:     func(d time.Duration) bool { return ms(d)%200 < 100 },
		PatternError: func(d time.Duration) bool {
			m := ms(d) % 1000
			return m < 100 || (m >= 200 && m < 300)
		},
	}
	for p, lit := range tests {
		for _, activeLow := range []bool{false, true} {
			l, pin, clk := newTestLED(t, activeLow)
			l.Set(p)
			if l.Pattern() != p {
				t.Fatalf("Pattern = %q, want %q", l.Pattern(), p)
			}
			const step = 10 * time.Millisecond
			for d := time.Duration(0); d <= 4*time.Second; d += step {
				want := gpio.Level(lit(d) != activeLow)
				if got := pin.Level(); got != want {
					t.Fatalf("%s (activeLow %v) at %s: line %s, want %s", p, activeLow, d, got, want)
				}
				clk.Advance(step)
			}
		}
	}
}

func TestLEDTransitionsHappenOnTime(t *testing.T) {
	l, pin, clk := newTestLED(t, false)
	l.Set(PatternError)
	clk.Advance(time.Second)
	want := []transition{
		{0, gpio.Low}, // NewLED
		{0, gpio.High},
		{100 * time.Millisecond, gpio.Low},
		{200 * time.Millisecond, gpio.High},
		{300 * time.Millisecond, gpio.Low},
		{time.Second, gpio.High},
	}
	got := pin.outs()
	if len(got) != len(want) {
		t.Fatalf("Out calls = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Out calls = %v, want %v", got, want)
		}
	}
}

func TestLEDSetReplacesImmediately(t *testing.T) {
	l, pin, clk := newTestLED(t, false)
	l.Set(PatternCalling)
	clk.Advance(300 * time.Millisecond) // calling is off from 250 to 500 ms
	l.Set(PatternDoorOpen)
	if pin.Level() != gpio.High {
		t.Fatal("new pattern did not start at once")
	}
	if clk.Pending() != 1 {
		t.Fatalf("%d timers pending, want only the new pattern's", clk.Pending())
	}
	clk.Advance(100*time.Millisecond - time.Nanosecond)
	if pin.Level() != gpio.High {
		t.Fatal("old pattern's timer fired")
	}
	clk.Advance(time.Nanosecond)
	if pin.Level() != gpio.Low {
		t.Fatal("door_open did not go off after 100 ms")
	}
	l.Set(PatternRegistered)
	if pin.Level() != gpio.High || clk.Pending() != 0 {
		t.Fatalf("registered: line/pending = %s/%d, want High/0", pin.Level(), clk.Pending())
	}
}

func TestLEDSameSetKeepsRhythm(t *testing.T) {
	l, pin, clk := newTestLED(t, false)
	l.Set(PatternCalling)
	clk.Advance(200 * time.Millisecond)
	l.Set(PatternCalling)
	clk.Advance(50 * time.Millisecond)
	if pin.Level() != gpio.Low {
		t.Fatal("setting the same pattern restarted it")
	}
}

func TestLEDUnknownPatternShowsError(t *testing.T) {
	l, _, _ := newTestLED(t, false)
	l.Set("disco")
	if l.Pattern() != PatternError {
		t.Fatalf("Pattern = %q, want %q", l.Pattern(), PatternError)
	}
	if Pattern("disco").Valid() || !PatternInCall.Valid() {
		t.Fatal("Valid is wrong")
	}
}

func TestLEDClose(t *testing.T) {
	l, pin, clk := newTestLED(t, true)
	l.Set(PatternUnregistered)
	if pin.Level() != gpio.Low {
		t.Fatal("active-low LED not lit")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if pin.Level() != gpio.High || clk.Pending() != 0 || l.Pattern() != PatternOff {
		t.Fatalf("after Close line/pending/pattern = %s/%d/%q", pin.Level(), clk.Pending(), l.Pattern())
	}
	l.Set(PatternOn)
	if pin.Level() != gpio.High || l.Pattern() != PatternOff {
		t.Fatal("Set after Close lit the LED")
	}
}

func TestLEDPinErrors(t *testing.T) {
	if _, err := NewLED(LEDConfig{Name: "status"}); err == nil {
		t.Error("nil pin accepted")
	}
	clk := clocktest.New(t0)
	pin := &faultyPin{Pin: sim.NewBank().Pin("GPIO22"), broken: true}
	if _, err := NewLED(LEDConfig{Name: "status", Pin: pin, Clock: clk}); !errors.Is(err, errPin) {
		t.Fatalf("NewLED = %v, want the pin error", err)
	}
	pin.setBroken(false)
	l, err := NewLED(LEDConfig{Name: "status", Pin: pin, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	pin.setBroken(true)
	l.Set(PatternCalling)
	clk.Advance(250 * time.Millisecond)
	pin.setBroken(false)
	clk.Advance(250 * time.Millisecond) // the pattern kept going and recovers
	if pin.Level() != gpio.High {
		t.Fatal("LED did not recover after the pin did")
	}
	pin.setBroken(true)
	if err := l.Close(); !errors.Is(err, errPin) {
		t.Fatalf("Close = %v, want the pin error", err)
	}
}
