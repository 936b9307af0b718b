package lograte

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func record(t0 time.Time, after time.Duration, level slog.Level, msg string) slog.Record {
	r := slog.NewRecord(t0.Add(after), level, msg, 0)
	r.AddAttrs(slog.String("data", "x"))
	return r
}

func TestSameMessageOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}), time.Minute, "ref went negative")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for i := range 5 {
		if err := h.Handle(ctx, record(t0, time.Duration(i)*time.Second, slog.LevelError, "failed to parse")); err != nil {
			t.Fatal(err)
		}
	}
	// Another message, or the same one at another level, has its own limit.
	_ = h.Handle(ctx, record(t0, 0, slog.LevelWarn, "failed to parse"))
	_ = h.Handle(ctx, record(t0, 0, slog.LevelError, "handler not found"))
	// Demoted: not written at info level.
	_ = h.Handle(ctx, record(t0, 0, slog.LevelWarn, "ref went negative"))
	// The interval has passed: written, saying how many were left out.
	_ = h.WithAttrs([]slog.Attr{slog.String("component", "sipgo")}).Handle(ctx, record(t0, time.Minute, slog.LevelError, "failed to parse"))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`level=ERROR msg="failed to parse" data=x`,
		`level=WARN msg="failed to parse" data=x`,
		`level=ERROR msg="handler not found" data=x`,
		`level=ERROR msg="failed to parse" component=sipgo data=x suppressed=4`,
	}
	if len(lines) != len(want) {
		t.Fatalf("wrote %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d: %q, want it to end in %q", i, lines[i], w)
		}
	}
}

func TestDemotedAtDebug(t *testing.T) {
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), time.Minute, "ref went negative")
	r := record(time.Now(), 0, slog.LevelWarn, "ref went negative")
	for range 3 {
		_ = h.Handle(context.Background(), r)
	}
	if got := strings.Count(buf.String(), `level=DEBUG msg="ref went negative" data=x`); got != 3 {
		t.Errorf("wrote %q, want the message three times at debug", buf.String())
	}
}

func TestKeysBounded(t *testing.T) {
	h := New(slog.DiscardHandler, time.Minute)
	for i := range 3 * maxKeys {
		_ = h.Handle(context.Background(), record(time.Now(), 0, slog.LevelError, strings.Repeat("m", i)))
	}
	if n := len(h.st.seen); n > maxKeys {
		t.Errorf("%d messages remembered, want at most %d", n, maxKeys)
	}
}
