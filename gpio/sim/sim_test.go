package sim

import (
	"errors"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
)

func TestBankCreatesOnFirstUse(t *testing.T) {
	b := NewBank()
	if _, ok := b.Lookup("GPIO17"); ok {
		t.Fatal("Lookup found a pin that was never created")
	}
	p := b.Pin("GPIO17")
	if q := b.Pin("GPIO17"); q != p {
		t.Fatal("Pin returned a different pin for the same name")
	}
	q, ok := b.Lookup("GPIO17")
	if !ok || q != p {
		t.Fatalf("Lookup = %v, %v; want the created pin", q, ok)
	}
	if b.Pin("GPIO27").Number() != 1 || p.Number() != 0 {
		t.Fatal("numbers do not follow creation order")
	}
	if p.Name() != "GPIO17" || p.String() != "sim:GPIO17" {
		t.Fatalf("Name/String = %q/%q", p.Name(), p.String())
	}
}

func TestReadFollowsPullUntilDriven(t *testing.T) {
	tests := []struct {
		pull gpio.Pull
		want gpio.Level
	}{
		{gpio.PullUp, gpio.High},
		{gpio.PullDown, gpio.Low},
		{gpio.Float, gpio.Low},
		{gpio.PullNoChange, gpio.Low}, // keeps the initial Float
	}
	for _, tt := range tests {
		p := NewBank().Pin("x")
		if err := p.In(tt.pull, gpio.NoEdge); err != nil {
			t.Fatal(err)
		}
		if got := p.Read(); got != tt.want {
			t.Errorf("pull %s: Read = %s, want %s", tt.pull, got, tt.want)
		}
		p.Drive(!tt.want)
		if got := p.Read(); got != !tt.want {
			t.Errorf("pull %s: after Drive(%s) Read = %s", tt.pull, !tt.want, got)
		}
	}
}

func TestPullNoChangeKeepsPull(t *testing.T) {
	p := NewBank().Pin("x")
	if err := p.In(gpio.PullUp, gpio.NoEdge); err != nil {
		t.Fatal(err)
	}
	if err := p.In(gpio.PullNoChange, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	if p.Pull() != gpio.PullUp || p.Read() != gpio.High {
		t.Fatalf("Pull/Read = %s/%s, want PullUp/High", p.Pull(), p.Read())
	}
}

func TestInRejectsInvalidArguments(t *testing.T) {
	p := NewBank().Pin("x")
	if err := p.In(gpio.Pull(9), gpio.NoEdge); err == nil {
		t.Error("In accepted an invalid pull")
	}
	if err := p.In(gpio.Float, gpio.Edge(7)); err == nil {
		t.Error("In accepted an invalid edge")
	}
}

func TestEdgesAreQueuedAndFiltered(t *testing.T) {
	tests := []struct {
		edge gpio.Edge
		want int // edges seen for Low->High->Low->High
	}{
		{gpio.NoEdge, 0},
		{gpio.RisingEdge, 2},
		{gpio.FallingEdge, 1},
		{gpio.BothEdges, 3},
	}
	for _, tt := range tests {
		p := NewBank().Pin("x")
		if err := p.In(gpio.PullDown, tt.edge); err != nil {
			t.Fatal(err)
		}
		p.Drive(gpio.Low) // no change from the pull level: no edge
		p.Drive(gpio.High)
		p.Drive(gpio.High) // repeated level: no edge
		p.Drive(gpio.Low)
		p.Drive(gpio.High)
		got := 0
		for p.WaitForEdge(0) {
			got++
		}
		if got != tt.want {
			t.Errorf("%s: %d edges, want %d", tt.edge, got, tt.want)
		}
	}
}

func TestInFlushesEdges(t *testing.T) {
	p := NewBank().Pin("x")
	if err := p.In(gpio.PullDown, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	p.Drive(gpio.High)
	if err := p.In(gpio.PullDown, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	if p.WaitForEdge(0) {
		t.Fatal("edge survived In")
	}
}

func TestWaitForEdgeTimesOut(t *testing.T) {
	p := NewBank().Pin("x")
	if err := p.In(gpio.PullDown, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	if p.WaitForEdge(time.Millisecond) {
		t.Fatal("WaitForEdge reported an edge that never happened")
	}
}

// waitAsync runs WaitForEdge(timeout) in a goroutine and returns its result channel.
func waitAsync(p *Pin, timeout time.Duration) <-chan bool {
	c := make(chan bool, 1)
	go func() { c <- p.WaitForEdge(timeout) }()
	return c
}

func TestWaitForeverWakesOnDrive(t *testing.T) {
	p := NewBank().Pin("x")
	if err := p.In(gpio.PullUp, gpio.FallingEdge); err != nil {
		t.Fatal(err)
	}
	res := waitAsync(p, -1)
	p.Drive(gpio.Low)
	if !<-res {
		t.Fatal("WaitForEdge(-1) returned false after a falling edge")
	}
}

func TestHaltAndInReleaseWaiters(t *testing.T) {
	for name, release := range map[string]func(*Pin){
		"halt": func(p *Pin) { _ = p.Halt() },
		"in":   func(p *Pin) { _ = p.In(gpio.PullDown, gpio.BothEdges) },
	} {
		p := NewBank().Pin("x")
		if err := p.In(gpio.PullDown, gpio.BothEdges); err != nil {
			t.Fatal(err)
		}
		res := waitAsync(p, -1)
		// Keep releasing until the waiter has observed it: the goroutine may
		// not have started waiting when the first release happens.
		for done := false; !done; {
			release(p)
			select {
			case got := <-res:
				if got {
					t.Errorf("%s: WaitForEdge returned true", name)
				}
				done = true
			case <-time.After(time.Millisecond):
			}
		}
	}
}

func TestOutputs(t *testing.T) {
	p := NewBank().Pin("led")
	if err := p.Out(gpio.High); err != nil {
		t.Fatal(err)
	}
	p.Drive(gpio.Low) // an output ignores external drive
	if p.Level() != gpio.High || p.Read() != gpio.High || p.Function() != "Out/High" {
		t.Fatalf("Level/Read/Function = %s/%s/%s", p.Level(), p.Read(), p.Function())
	}
	if err := p.Out(gpio.Low); err != nil {
		t.Fatal(err)
	}
	if p.Level() != gpio.Low || p.Function() != "Out/Low" {
		t.Fatalf("Level/Function = %s/%s", p.Level(), p.Function())
	}
	if err := p.PWM(gpio.DutyHalf, 0); !errors.Is(err, errPWM) {
		t.Fatalf("PWM err = %v", err)
	}
	if err := p.In(gpio.Float, gpio.NoEdge); err != nil {
		t.Fatal(err)
	}
	if p.Function() != "IN" || p.Level() != gpio.Low {
		t.Fatalf("after In: Function/Level = %s/%s", p.Function(), p.Level())
	}
}

func TestConcurrentUse(t *testing.T) {
	b := NewBank()
	p := b.Pin("x")
	if err := p.In(gpio.PullDown, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	const n = 200
	got := make(chan int)
	go func() {
		c := 0
		for c < n && p.WaitForEdge(time.Second) {
			c++
		}
		got <- c
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range n {
			p.Drive(i%2 == 0)
		}
	}()
	go func() {
		defer wg.Done()
		for range n {
			_ = p.Level()
			_, _ = b.Lookup("x")
		}
	}()
	wg.Wait()
	if c := <-got; c != n {
		t.Fatalf("saw %d edges, want %d", c, n)
	}
}
