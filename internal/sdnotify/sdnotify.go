// Package sdnotify tells systemd how the service is doing: the sd_notify(3)
// protocol (READY, STATUS, STOPPING, WATCHDOG) over $NOTIFY_SOCKET, and a
// watchdog that is fed only while the service's loops answer.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Notifier sends sd_notify(3) messages to $NOTIFY_SOCKET. A disabled
// Notifier (no NOTIFY_SOCKET: not started by systemd, or not as
// Type=notify) and a nil one do nothing and return nil.
//
// It does not unset NOTIFY_SOCKET and WATCHDOG_* the way sd_notify's
// unset_environment does: the process starts no children that could
// speak for it (and the unit's NotifyAccess=main makes systemd ignore
// them), and changing the environment would be process-wide state that a
// second FromEnv, for instance in a test, could no longer read.
type Notifier struct {
	addr     *net.UnixAddr // nil: disabled
	watchdog time.Duration // 0: no watchdog for this process

	mu     sync.Mutex
	status string // the last Status, restored when the watchdog recovers
}

// sunPathMax is the longest socket name a sockaddr_un holds, with the
// trailing NUL of a path or the leading NUL of an abstract name.
const sunPathMax = 107

// parseEnv reads the variables systemd sets for a service (sd_notify(3),
// sd_watchdog_enabled(3)) through getenv, for the process pid.
func parseEnv(getenv func(string) string, pid int) (*Notifier, error) {
	sock := getenv("NOTIFY_SOCKET")
	if sock == "" {
		return &Notifier{}, nil
	}
	switch {
	case len(sock) > sunPathMax:
		return nil, fmt.Errorf("sdnotify: NOTIFY_SOCKET %q: longer than %d bytes", sock, sunPathMax)
	case sock == "@":
		return nil, errors.New("sdnotify: NOTIFY_SOCKET \"@\": abstract socket without a name")
	case sock[0] != '/' && sock[0] != '@':
		return nil, fmt.Errorf("sdnotify: NOTIFY_SOCKET %q: not an absolute path or @abstract name (other socket kinds are not supported)", sock)
	}
	// The net package turns a leading @ into Linux's abstract namespace.
	n := &Notifier{addr: &net.UnixAddr{Name: sock, Net: "unixgram"}}
	usec := getenv("WATCHDOG_USEC")
	if usec == "" {
		return n, nil
	}
	v, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || v == 0 || v > uint64(time.Duration(1<<63-1)/time.Microsecond) {
		return nil, fmt.Errorf("sdnotify: WATCHDOG_USEC %q: not a positive number of microseconds", usec)
	}
	if p := getenv("WATCHDOG_PID"); p != "" {
		wpid, err := strconv.Atoi(p)
		if err != nil || wpid <= 0 {
			return nil, fmt.Errorf("sdnotify: WATCHDOG_PID %q: not a process id", p)
		}
		if wpid != pid {
			// The watchdog belongs to the process that started us.
			return n, nil
		}
	}
	n.watchdog = time.Duration(v) * time.Microsecond
	return n, nil
}

// Ready tells systemd that start-up has finished (READY=1).
func (n *Notifier) Ready() error { return n.send("READY=1") }

// Stopping tells systemd that the service is shutting down (STOPPING=1).
func (n *Notifier) Stopping() error { return n.send("STOPPING=1") }

// Watchdog feeds the watchdog once (WATCHDOG=1). RunWatchdog does this
// while the service is healthy.
func (n *Notifier) Watchdog() error { return n.send("WATCHDOG=1") }

// Status sets the line `systemctl status` shows, e.g. "registered to
// pbx.example.com as 100". Line breaks become spaces: the protocol is one
// assignment per line, so text from an error must not add its own.
func (n *Notifier) Status(s string) error {
	if n == nil || n.addr == nil {
		return nil
	}
	s = oneLine(s)
	n.mu.Lock()
	n.status = s
	n.mu.Unlock()
	return n.send("STATUS=" + s)
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// WatchdogInterval returns WatchdogSec= of the unit, when systemd asked
// this process to feed a watchdog.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	if n == nil || n.addr == nil || n.watchdog == 0 {
		return 0, false
	}
	return n.watchdog, true
}

// send writes one datagram. A fresh socket per message, as sd_notify
// does, keeps no descriptor open between the rare messages.
func (n *Notifier) send(state string) error {
	if n == nil || n.addr == nil {
		return nil
	}
	what, _, _ := strings.Cut(state, "=")
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %s: %w", what, err)
	}
	if _, err := c.Write([]byte(state)); err != nil {
		c.Close()
		return fmt.Errorf("sdnotify: %s: %w", what, err)
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("sdnotify: %s: %w", what, err)
	}
	return nil
}
