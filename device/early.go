package device

import (
	"context"
	"errors"
	"sync"

	"intercom/sipagent"
)

// Rearmer is a Stream that can Run again, on the same local RTP port, after
// an earlier Run has returned. The station needs it when a call's final
// answer moves the media away from where its early media came from (RFC
// 3261 section 13.2.1: the 2xx carries the answer that counts).
type Rearmer interface {
	// Rearm readies the stream for another Run; the previous Run must
	// have returned.
	Rearm() error
}

// earlyStream lets an outgoing call's early media (RFC 3960) run before the
// answer: the station's Run for the answered call adopts the early session
// when the final answer is the same, and restarts the stream otherwise.
type earlyStream struct {
	Stream

	mu     sync.Mutex
	closed bool
	cur    *earlyRun // the media running or last run, nil before early media
}

// earlyRun is one Run of the inner stream.
type earlyRun struct {
	ans    sipagent.MediaAnswer
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid once done is closed
	ended  bool  // its target gave up: never adopted; guarded by earlyStream.mu

	mu      sync.Mutex
	onDigit func(rune) // the answered call's, once it adopts this run
}

func (r *earlyRun) digit(d rune) {
	r.mu.Lock()
	f := r.onDigit
	r.mu.Unlock()
	// Digits before the answer are the far end's business, not a door code.
	if f != nil {
		f(d)
	}
}

func (r *earlyRun) stop() {
	r.cancel()
	<-r.done
}

// playEarly switches the stream to the early media ans. It returns the work
// to run on a goroutine of the caller's, or nil when ans is already playing;
// the work reports errors only while ctx and its successor let it run.
func (e *earlyStream) playEarly(ctx context.Context, ans sipagent.MediaAnswer) func() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	prev := e.cur
	if prev != nil && prev.ans == ans && !prev.ended {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &earlyRun{ans: ans, cancel: cancel, done: make(chan struct{})}
	e.cur = r
	return func() error {
		defer close(r.done)
		defer cancel()
		r.err = e.runAfter(ctx, prev, ans, r.digit)
		if ctx.Err() != nil {
			return nil
		}
		return r.err
	}
}

// runAfter stops prev, if any, and runs the stream for ans in its place.
func (e *earlyStream) runAfter(ctx context.Context, prev *earlyRun, ans sipagent.MediaAnswer, onDigit func(rune)) error {
	if prev != nil {
		prev.stop()
		if err := e.rearm(); err != nil {
			return err
		}
	}
	return e.Stream.Run(ctx, ans, onDigit)
}

// Run runs the answered call's media: it adopts the early media when the
// final answer is the same and restarts the stream when it differs.
func (e *earlyStream) Run(ctx context.Context, ans sipagent.MediaAnswer, onDigit func(rune)) error {
	e.mu.Lock()
	r := e.cur
	e.mu.Unlock()
	if r == nil || r.ans != ans || r.ended {
		return e.runAfter(ctx, r, ans, onDigit)
	}
	r.mu.Lock()
	r.onDigit = onDigit
	r.mu.Unlock()
	select {
	case <-ctx.Done():
		r.stop()
	case <-r.done:
	}
	return r.err
}

// StartRingback is ignored once early media plays: the far end's ringback
// or announcement replaces ours, and a later 180 from a forked target must
// not start the local tone on top of it.
func (e *earlyStream) StartRingback() {
	e.mu.Lock()
	early := e.cur != nil && !e.cur.ended
	e.mu.Unlock()
	if !early {
		e.Stream.StartRingback()
	}
}

// endEarly stops the early media of a target that gave up without
// answering, so that the next target's ringing brings our ringback back.
// It does not wait: the next Run waits for the stopped one and rearms.
func (e *earlyStream) endEarly() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.cur; r != nil && !r.ended {
		r.ended = true
		r.cancel()
	}
}

// Close closes the inner stream; no Rearm follows it.
func (e *earlyStream) Close() error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	return e.Stream.Close()
}

// rearm readies the inner stream for another Run, serialized with Close.
func (e *earlyStream) rearm() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("device: stream closed")
	}
	r, ok := e.Stream.(Rearmer)
	if !ok {
		return errors.New("device: stream cannot move to a new remote media address")
	}
	return r.Rearm()
}
