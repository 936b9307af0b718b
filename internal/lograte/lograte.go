// Package lograte keeps a chatty library's log within bounds: records
// with the same level and message are written at most once per interval,
// the next one written saying how many were left out, and messages known
// to be harmless are demoted to debug. A door station logs to an SD card,
// and strangers can make the SIP stack log at will.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxKeys bounds the messages remembered; past it, all are forgotten.
// Libraries log constant messages, so it is only reached by accident.
const maxKeys = 256

// Handler passes records to the next handler within the limits.
type Handler struct {
	next   slog.Handler
	every  time.Duration
	demote map[string]bool
	st     *state // shared with the handlers WithAttrs and WithGroup make
}

var _ slog.Handler = (*Handler)(nil)

type state struct {
	mu   sync.Mutex
	seen map[key]*entry
}

type key struct {
	level slog.Level
	msg   string
}

type entry struct {
	last    time.Time
	dropped int
}

// New limits next: a message at info level or above is written at most
// once per every, by the records' own times; the messages in demote are
// written at debug level, without limit.
func New(next slog.Handler, every time.Duration, demote ...string) *Handler {
	h := &Handler{next: next, every: every, demote: map[string]bool{}, st: &state{seen: map[key]*entry{}}}
	for _, m := range demote {
		h.demote[m] = true
	}
	return h
}

// Logger is l with its handler limited as New does.
func Logger(l *slog.Logger, every time.Duration, demote ...string) *slog.Logger {
	return slog.New(New(l.Handler(), every, demote...))
}

// Enabled reports whether the next handler takes level; a demoted record
// is checked again at debug level when it is handled.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle writes r unless a record with its level and message was written
// less than the interval before.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if h.demote[r.Message] {
		if r.Level <= slog.LevelDebug {
			return h.next.Handle(ctx, r)
		}
		if !h.next.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		d := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool {
			d.AddAttrs(a)
			return true
		})
		return h.next.Handle(ctx, d)
	}
	if r.Level < slog.LevelInfo {
		return h.next.Handle(ctx, r)
	}
	k := key{r.Level, r.Message}
	h.st.mu.Lock()
	e := h.st.seen[k]
	if e != nil && r.Time.Sub(e.last) < h.every {
		e.dropped++
		h.st.mu.Unlock()
		return nil
	}
	dropped := 0
	if e != nil {
		dropped = e.dropped
	}
	if len(h.st.seen) >= maxKeys {
		clear(h.st.seen)
	}
	h.st.seen[k] = &entry{last: r.Time}
	h.st.mu.Unlock()
	if dropped > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", dropped))
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler; the limits are shared.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	return &c
}

// WithGroup implements slog.Handler; the limits are shared.
func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
