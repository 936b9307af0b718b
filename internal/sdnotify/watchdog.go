package sdnotify

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"intercom/internal/clock"
)

// Probe checks that one of the service's loops is alive. It must return
// once ctx is done; RunWatchdog cancels it when it takes too long.
type Probe func(ctx context.Context) error

// RunWatchdog feeds the watchdog every interval/2 (sd_watchdog_enabled(3)
// advises half) while every probe answers without error; a probe that
// fails or does not answer within interval/4 stops the feeding, so that
// systemd kills and restarts a service whose main loop hangs. The first
// round runs at once. The probes of a round run one after another, and no
// round starts probes while those of an earlier one are still running, so
// probes never pile up behind a hung loop. Each round takes at most
// interval/4, so that feeds are at most 3/4 of the interval apart.
//
// When feeding stops, the status line says why; when it resumes, the last
// Status comes back. RunWatchdog returns nil at once when systemd asked
// for no watchdog, nil when ctx is done (after its running probes have
// returned), and an error when a message cannot be sent. A nil clk is the
// wall clock.
func (n *Notifier) RunWatchdog(ctx context.Context, clk clock.Clock, probes ...Probe) error {
	interval, ok := n.WatchdogInterval()
	if !ok {
		return nil
	}
	if clk == nil {
		clk = clock.Real{}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &watchdog{n: n, clk: clk, probes: probes, timeout: interval / 4, wg: &wg}
	period := interval / 2
	tick := clk.NewTimer(period)
	defer tick.Stop()
	for {
		if err := w.round(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
			tick.Reset(period)
		}
	}
}

// watchdog is RunWatchdog's state between rounds.
type watchdog struct {
	n       *Notifier
	clk     clock.Clock
	probes  []Probe
	timeout time.Duration
	wg      *sync.WaitGroup

	running *check // the last round's check, still running; nil: none
	failing bool   // the last round did not feed
}

// check is one run of the probes on its own goroutine.
type check struct {
	done  chan error // receives the result once
	probe atomic.Int32
}

func (w *watchdog) round(ctx context.Context) error {
	err := w.check(ctx)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		if w.failing {
			return nil
		}
		w.failing = true
		return w.n.send("STATUS=" + oneLine("watchdog not fed: "+err.Error()))
	}
	if w.failing {
		w.failing = false
		w.n.mu.Lock()
		status := w.n.status
		w.n.mu.Unlock()
		if status != "" {
			if err := w.n.send("STATUS=" + status); err != nil {
				return err
			}
		}
	}
	return w.n.Watchdog()
}

// check runs the probes unless those of an earlier round are still
// running, and waits for their answer until the round's deadline.
func (w *watchdog) check(ctx context.Context) error {
	deadline := w.clk.NewTimer(w.timeout)
	defer deadline.Stop()
	if c := w.running; c != nil {
		// Its answer came too late to count; a fresh check must answer.
		select {
		case <-c.done:
			w.running = nil
		case <-deadline.C():
			return fmt.Errorf("probe %d of %d has not answered since an earlier check", c.probe.Load()+1, len(w.probes))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c := &check{done: make(chan error, 1)}
	pctx, pcancel := context.WithCancel(ctx)
	w.wg.Go(func() {
		defer pcancel()
		for i, p := range w.probes {
			c.probe.Store(int32(i))
			if err := p(pctx); err != nil {
				c.done <- err
				return
			}
		}
		c.done <- nil
	})
	select {
	case err := <-c.done:
		return err
	case <-deadline.C():
		pcancel()
		w.running = c
		return fmt.Errorf("probe %d of %d did not answer within %v", c.probe.Load()+1, len(w.probes), w.timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Progress returns a Probe for a loop that counts its iterations, such as
// a call's media loop: it fails when two probes in a row find the loop
// active and its count unchanged. count reports the count and whether the
// loop should be running now (a media loop runs only during a call). The
// Probe keeps the last answer, so it belongs to one RunWatchdog.
func Progress(name string, count func(ctx context.Context) (n uint64, active bool, err error)) Probe {
	var last uint64
	var wasActive bool
	return func(ctx context.Context) error {
		n, active, err := count(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		stuck := active && wasActive && n == last
		last, wasActive = n, active
		if stuck {
			return fmt.Errorf("%s: no progress since the last check (%d iterations)", name, n)
		}
		return nil
	}
}
