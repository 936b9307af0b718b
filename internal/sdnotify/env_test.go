package sdnotify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseEnv(t *testing.T) {
	const pid = 4242
	for _, tc := range []struct {
		name     string
		vars     map[string]string
		enabled  bool
		watchdog time.Duration
	}{
		{"not under systemd", nil, false, 0},
		{"path", map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify"}, true, 0},
		{"abstract", map[string]string{"NOTIFY_SOCKET": "@/org/freedesktop/systemd1/notify/42"}, true, 0},
		{"watchdog", map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000"}, true, 30 * time.Second},
		{"watchdog for us", map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, true, 30 * time.Second},
		{"watchdog for another process", map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, true, 0},
		{"watchdog without a socket", map[string]string{"WATCHDOG_USEC": "30000000"}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := parseEnv(env(tc.vars), pid)
			if err != nil {
				t.Fatal(err)
			}
			if got := n.addr != nil; got != tc.enabled {
				t.Errorf("enabled = %v, want %v", got, tc.enabled)
			}
			d, ok := n.WatchdogInterval()
			if d != tc.watchdog || ok != (tc.watchdog != 0) {
				t.Errorf("WatchdogInterval = %v, %v; want %v", d, ok, tc.watchdog)
			}
		})
	}
}

func TestParseEnvRejectsMalformedVariables(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"NOTIFY_SOCKET": "run/notify"}, "NOTIFY_SOCKET"},
		{map[string]string{"NOTIFY_SOCKET": "vsock:2:1234"}, "not supported"},
		{map[string]string{"NOTIFY_SOCKET": "@"}, "without a name"},
		{map[string]string{"NOTIFY_SOCKET": "/" + strings.Repeat("x", 107)}, "longer than"},
		{map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30s"}, "WATCHDOG_USEC"},
		{map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "0"}, "WATCHDOG_USEC"},
		{map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "-5"}, "WATCHDOG_USEC"},
		{map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "99999999999999999999"}, "WATCHDOG_USEC"},
		{map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "me"}, "WATCHDOG_PID"},
	} {
		n, err := parseEnv(env(tc.vars), 1)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "sdnotify: ") {
			t.Errorf("%v: err = %v, want one mentioning %q", tc.vars, err, tc.want)
		}
		if n != nil {
			t.Errorf("%v: a Notifier came with the error", tc.vars)
		}
	}
}

func TestDisabledNotifierDoesNothing(t *testing.T) {
	for _, n := range []*Notifier{nil, {}} {
		for _, err := range []error{n.Ready(), n.Status("x"), n.Stopping(), n.Watchdog(), n.RunWatchdog(t.Context(), nil)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := n.WatchdogInterval(); ok {
			t.Fatal("a disabled notifier has a watchdog")
		}
	}
}

func TestProgress(t *testing.T) {
	var n uint64
	active := true
	p := Progress("media loop", func(ctx context.Context) (uint64, bool, error) { return n, active, nil })
	steps := []struct {
		n      uint64
		active bool
		fail   bool
	}{
		{0, false, false},  // no call
		{0, true, false},   // a call starts: nothing to compare with yet
		{50, true, false},  // frames flow
		{50, true, true},   // stuck
		{50, true, true},   // still stuck
		{51, true, false},  // moving again
		{51, false, false}, // call over
		{51, true, false},  // a new call that happens to be at the same count: not compared across calls
	}
	for i, s := range steps {
		n, active = s.n, s.active
		err := p(t.Context())
		if (err != nil) != s.fail {
			t.Fatalf("step %d (%d, active %v): err = %v, want failure %v", i, s.n, s.active, err, s.fail)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "media loop: ") {
			t.Fatalf("error %q does not name the loop", err)
		}
	}
	bad := Progress("media loop", func(ctx context.Context) (uint64, bool, error) { return 0, false, errors.New("boom") })
	if err := bad(t.Context()); err == nil || err.Error() != "media loop: boom" {
		t.Fatalf("err = %v", err)
	}
}
