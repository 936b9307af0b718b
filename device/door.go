package device

import (
	"crypto/subtle"
	"strings"
	"time"
)

// interDigitTimeout discards a half-typed code after a pause, so a stray key
// pressed earlier does not spoil the next attempt.
const interDigitTimeout = 5 * time.Second

// verdict is what one digit did to the code lock.
type verdict int

const (
	pending     verdict = iota // more digits needed
	opened                     // a code matched; relay says which
	rejected                   // a complete attempt matched nothing
	lockedOut                  // this rejection started a lockout
	whileLocked                // a complete attempt arrived during a lockout
)

type doorCode struct {
	digits string
	relay  string
}

// codeLock matches DTMF digits against the door codes and counts wrong
// attempts across calls. An attempt is complete when '#' is keyed or when it
// reaches the length of the longest code.
type codeLock struct {
	codes       []doorCode
	maxLen      int
	after       int
	lockFor     time.Duration
	buf         []byte
	last        time.Time
	wrong       int
	lockedUntil time.Time
}

func newCodeLock(codes []doorCode, after int, lockFor time.Duration) *codeLock {
	l := &codeLock{after: after, lockFor: lockFor}
	for _, c := range codes {
		c.digits = strings.TrimSuffix(c.digits, "#")
		l.codes = append(l.codes, c)
		l.maxLen = max(l.maxLen, len(c.digits))
	}
	return l
}

// reset forgets a half-typed attempt (a new call starts clean); the wrong
// attempt count is kept on purpose.
func (l *codeLock) reset() { l.buf = l.buf[:0] }

func (l *codeLock) locked(now time.Time) bool { return now.Before(l.lockedUntil) }

func (l *codeLock) digit(d rune, now time.Time) (verdict, string) {
	if len(l.codes) == 0 {
		return pending, ""
	}
	if !l.last.IsZero() && now.Sub(l.last) > interDigitTimeout {
		l.buf = l.buf[:0]
	}
	l.last = now
	if d != '#' {
		l.buf = append(l.buf, byte(d))
		if len(l.buf) < l.maxLen && l.match() == "" {
			return pending, ""
		}
	} else if len(l.buf) == 0 {
		return pending, ""
	}
	relay := l.match()
	l.buf = l.buf[:0]
	if l.locked(now) {
		return whileLocked, ""
	}
	if relay != "" {
		l.wrong = 0
		return opened, relay
	}
	l.wrong++
	if l.after > 0 && l.wrong >= l.after {
		l.wrong = 0
		l.lockedUntil = now.Add(l.lockFor)
		return lockedOut, ""
	}
	return rejected, ""
}

// match compares in constant time per code so that timing does not reveal
// how many leading digits were right.
func (l *codeLock) match() string {
	relay := ""
	for _, c := range l.codes {
		if len(c.digits) == len(l.buf) && subtle.ConstantTimeCompare([]byte(c.digits), l.buf) == 1 {
			relay = c.relay
		}
	}
	return relay
}
