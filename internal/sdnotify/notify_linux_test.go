package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"intercom/internal/clock/clocktest"
)

// listener is the fake systemd: a unixgram socket named by NOTIFY_SOCKET.
type listener struct {
	t *testing.T
	c *net.UnixConn
}

func listen(t *testing.T, name string) *listener {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &listener{t: t, c: c}
}

// next returns the next message. The deadline only keeps a broken test
// from hanging; no assertion depends on timing.
func (l *listener) next() string {
	l.t.Helper()
	l.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4096)
	n, err := l.c.Read(b)
	if err != nil {
		l.t.Fatalf("no message: %v", err)
	}
	return string(b[:n])
}

func (l *listener) expect(want string) {
	l.t.Helper()
	if got := l.next(); got != want {
		l.t.Fatalf("got %q, want %q", got, want)
	}
}

// notifier is what FromEnv makes of the environment systemd gives a
// Type=notify service with WatchdogSec=.
func notifier(t *testing.T, socket string, watchdog time.Duration) *Notifier {
	t.Helper()
	t.Setenv("NOTIFY_SOCKET", socket)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	}
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMessages(t *testing.T) {
	for name, socket := range map[string]string{
		"path":     filepath.Join(t.TempDir(), "notify"),
		"abstract": fmt.Sprintf("@intercom-sdnotify-test-%d", os.Getpid()),
	} {
		t.Run(name, func(t *testing.T) {
			l := listen(t, socket)
			n := notifier(t, socket, 0)
			steps := []struct {
				send func() error
				want string
			}{
				{n.Ready, "READY=1"},
				{func() error { return n.Status("registered to pbx.example.com as 100") }, "STATUS=registered to pbx.example.com as 100"},
				// A line break cannot smuggle in an assignment.
				{func() error { return n.Status("registration failed: 503\nREADY=1") }, "STATUS=registration failed: 503 READY=1"},
				{n.Watchdog, "WATCHDOG=1"},
				{n.Stopping, "STOPPING=1"},
			}
			for _, s := range steps {
				if err := s.send(); err != nil {
					t.Fatal(err)
				}
				l.expect(s.want)
			}
			if _, ok := n.WatchdogInterval(); ok {
				t.Fatal("watchdog without WATCHDOG_USEC")
			}
		})
	}
}

func TestSendFailureIsReported(t *testing.T) {
	n := notifier(t, filepath.Join(t.TempDir(), "nobody-listens"), time.Second)
	if err := n.Ready(); err == nil || !strings.HasPrefix(err.Error(), "sdnotify: READY: ") {
		t.Fatalf("Ready = %v", err)
	}
	err := n.RunWatchdog(t.Context(), clocktest.New(time.Unix(0, 0)))
	if err == nil || !strings.HasPrefix(err.Error(), "sdnotify: WATCHDOG: ") {
		t.Fatalf("RunWatchdog = %v", err)
	}
}

const interval = 30 * time.Second

// runWatchdog starts RunWatchdog; stop cancels it and returns its error.
func runWatchdog(t *testing.T, n *Notifier, clk *clocktest.Fake, probes ...Probe) (stop func() error) {
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- n.RunWatchdog(ctx, clk, probes...) }()
	return func() error {
		cancel()
		return <-errc
	}
}

func TestWatchdogIsPeriodic(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "notify")
	l := listen(t, socket)
	n := notifier(t, socket, interval)
	clk := clocktest.New(time.Unix(0, 0))
	var calls atomic.Int32
	stop := runWatchdog(t, n, clk, func(context.Context) error { calls.Add(1); return nil })
	for i := range 4 {
		l.expect("WATCHDOG=1")
		if c := calls.Load(); c != int32(i+1) {
			t.Fatalf("feed %d after %d probes", i+1, c)
		}
		if d, ok := clk.Next(); !ok || d != interval/2 {
			t.Fatalf("next feed in %v, %v; want %v", d, ok, interval/2)
		}
		clk.Advance(interval/2 - time.Millisecond)
		if d, _ := clk.Next(); d != time.Millisecond {
			t.Fatalf("the round timer moved: next in %v", d)
		}
		clk.Advance(time.Millisecond)
	}
	l.expect("WATCHDOG=1")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// mainLoop stands in for the station's event loop: a probe gets a no-op
// onto it, and hang blocks it until the returned func is called.
type mainLoop chan func()

func runLoop(t *testing.T) mainLoop {
	l := make(mainLoop)
	go func() {
		for {
			select {
			case f := <-l:
				f()
			case <-t.Context().Done():
				return
			}
		}
	}()
	return l
}

func (l mainLoop) ping(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case l <- func() { close(done) }:
	case <-ctx.Done():
		return fmt.Errorf("main loop: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("main loop: %w", ctx.Err())
	}
}

func (l mainLoop) hang() (release func()) {
	c := make(chan struct{})
	l <- func() { <-c }
	return func() { close(c) }
}

func TestWatchdogStopsWhileTheMainLoopHangs(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "notify")
	l := listen(t, socket)
	n := notifier(t, socket, interval)
	const status = "registered to pbx.example.com as 100"
	if err := n.Status(status); err != nil {
		t.Fatal(err)
	}
	l.expect("STATUS=" + status)
	loop := runLoop(t)
	returned := make(chan error, 8)
	probe := func(ctx context.Context) error {
		err := loop.ping(ctx)
		returned <- err
		return err
	}
	clk := clocktest.New(time.Unix(0, 0))
	stop := runWatchdog(t, n, clk, probe)
	l.expect("WATCHDOG=1")
	<-returned

	release := loop.hang()
	// Round 2: the probe cannot get onto the loop; at the round's
	// deadline it is cancelled and the feeding stops.
	clk.Advance(interval / 2)
	clk.WaitForTimers(2)
	clk.Advance(interval / 4)
	if err := <-returned; !errors.Is(err, context.Canceled) {
		t.Fatalf("probe returned %v, want it cancelled", err)
	}
	if got := l.next(); got != "STATUS=watchdog not fed: probe 1 of 1 did not answer within 7.5s" {
		t.Fatalf("got %q", got)
	}
	// Round 3: still hung; nothing is sent (checked below: the next
	// message is round 4's).
	clk.Advance(interval / 4)
	clk.WaitForTimers(2)
	clk.Advance(interval / 4)
	// Round 4 has begun, so round 3 is over, when the loop comes back.
	clk.Advance(interval / 4)
	clk.WaitForTimers(2)
	release()
	l.expect("STATUS=" + status)
	l.expect("WATCHDOG=1")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestProbesDoNotPileUp(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "notify")
	l := listen(t, socket)
	n := notifier(t, socket, interval)
	clk := clocktest.New(time.Unix(0, 0))
	var calls atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	// The first call ignores its context, as a probe stuck in a system
	// call would.
	probe := func(ctx context.Context) error {
		if calls.Add(1) == 1 {
			close(started)
			<-release
		}
		return nil
	}
	stop := runWatchdog(t, n, clk, probe)
	<-started
	clk.WaitForTimers(2)
	clk.Advance(interval / 4)
	l.expect("STATUS=watchdog not fed: probe 1 of 1 did not answer within 7.5s")
	for range 2 {
		// Rounds 2 and 3 wait for the first call instead of adding more.
		clk.Advance(interval / 4)
		clk.WaitForTimers(2)
		if c := calls.Load(); c != 1 {
			t.Fatalf("%d probe calls while the first hangs", c)
		}
		clk.Advance(interval / 4)
	}
	// Round 4 is waiting for the first call; once it returns, a fresh one
	// answers and the feeding resumes.
	clk.Advance(interval / 4)
	clk.WaitForTimers(2)
	close(release)
	l.expect("WATCHDOG=1")
	if c := calls.Load(); c != 2 {
		t.Fatalf("%d probe calls, want 2", c)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Nothing else was sent in between.
	if err := n.Stopping(); err != nil {
		t.Fatal(err)
	}
	l.expect("STOPPING=1")
}

func TestRunWatchdogWaitsForItsProbes(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "notify")
	listen(t, socket)
	n := notifier(t, socket, interval)
	clk := clocktest.New(time.Unix(0, 0))
	var exited atomic.Bool
	stop := runWatchdog(t, n, clk, func(ctx context.Context) error {
		<-ctx.Done()
		exited.Store(true)
		return ctx.Err()
	})
	clk.WaitForTimers(2)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !exited.Load() {
		t.Fatal("RunWatchdog returned while its probe was still running")
	}
}

func TestWatchdogReportsAFailingProbe(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "notify")
	l := listen(t, socket)
	n := notifier(t, socket, interval)
	clk := clocktest.New(time.Unix(0, 0))
	ok := func(context.Context) error { return nil }
	var frames atomic.Uint64
	media := Progress("media loop", func(context.Context) (uint64, bool, error) { return frames.Load(), true, nil })
	stop := runWatchdog(t, n, clk, ok, media)
	l.expect("WATCHDOG=1")
	frames.Add(750)
	clk.Advance(interval / 2)
	l.expect("WATCHDOG=1")
	clk.Advance(interval / 2)
	l.expect("STATUS=watchdog not fed: media loop: no progress since the last check (750 iterations)")
	frames.Add(1)
	clk.Advance(interval / 2)
	l.expect("WATCHDOG=1")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
