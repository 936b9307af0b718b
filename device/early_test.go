package device

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/sipagent"
)

// rearmStream is a fake stream that can run again, recording each Run.
type rearmStream struct {
	*fakeStream
	exited chan sipagent.MediaAnswer

	mu     sync.Mutex
	rearms int
}

func (s *rearmStream) Run(ctx context.Context, ans sipagent.MediaAnswer, onDigit func(rune)) error {
	err := s.fakeStream.Run(ctx, ans, onDigit)
	s.exited <- ans
	return err
}

func (s *rearmStream) Rearm() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rearms++
	return nil
}

type rearmMedia struct {
	*fakeMedia
	stream *rearmStream
}

func (m *rearmMedia) Open(netip.Addr) (Stream, error) { return m.stream, nil }

// earlyHarness is a harness whose stream can Rearm.
func earlyHarness(t *testing.T) (*harness, *rearmStream) {
	return earlyHarnessWith(t, testYAML)
}

func earlyHarnessWith(t *testing.T, yaml string) (*harness, *rearmStream) {
	h := newHarness(t, yaml)
	rs := &rearmStream{fakeStream: h.stream, exited: make(chan sipagent.MediaAnswer, 4)}
	if err := h.st.do(context.Background(), func() error {
		h.st.media = &rearmMedia{fakeMedia: h.st.media.(*fakeMedia), stream: rs}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return h, rs
}

// ringWithEarlyMedia presses the bell and has the first target send early
// media matching what newFakeCall answers with, then the second ring.
func (h *harness) ringWithEarlyMedia() (sipagent.DialRequest, func(rune)) {
	h.t.Helper()
	if err := h.st.PressButton(context.Background(), "bell"); err != nil {
		h.t.Fatal(err)
	}
	req := <-h.phone.reqs
	req.OnEarlyMedia(req.Targets[0], newFakeCall("201").Media())
	var onDigit func(rune)
	select {
	case onDigit = <-h.stream.running:
	case <-time.After(5 * time.Second):
		h.t.Fatal("early media did not start the stream")
	}
	// A forked target that only rings must not start the local ringback
	// on top of the early media.
	req.OnRinging(req.Targets[1])
	h.expectEvent("ringing")
	h.stream.mu.Lock()
	ringing := h.stream.ringing
	h.stream.mu.Unlock()
	if ringing {
		h.t.Error("local ringback started during early media")
	}
	if got := h.callState(); got != "calling" {
		h.t.Errorf("call state %q during early media", got)
	}
	return req, onDigit
}

// waitAdopted waits until the answered call's Run has taken over the early
// session, which it does on its own goroutine.
func (h *harness) waitAdopted() {
	h.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var r *earlyRun
		if err := h.st.do(context.Background(), func() error {
			es := h.st.stream.(*earlyStream)
			es.mu.Lock()
			defer es.mu.Unlock()
			r = es.cur
			return nil
		}); err != nil {
			h.t.Fatal(err)
		}
		r.mu.Lock()
		adopted := r.onDigit != nil
		r.mu.Unlock()
		if adopted {
			return
		}
	}
	h.t.Fatal("the answered call did not adopt the early media")
}

func TestEarlyMediaKeepsRunningWhenAnswered(t *testing.T) {
	h, rs := earlyHarness(t)
	_, onDigit := h.ringWithEarlyMedia()
	// Digits before the answer are not door codes.
	h.keys(onDigit, "1234")
	h.noEvent("dtmf")

	h.phone.results <- dialResult{call: newFakeCall("201")}
	h.expectEvent("answered")
	h.sync()
	select {
	case <-h.stream.running:
		t.Fatal("stream run again for the same media")
	case ans := <-rs.exited:
		t.Fatalf("early media stopped at the answer: %+v", ans)
	default:
	}
	// The early session now carries the call: its digits open the door.
	h.waitAdopted()
	h.keys(onDigit, "1234")
	h.expectEvent("door_opened")
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.rearms != 0 {
		t.Errorf("%d rearms", rs.rearms)
	}
}

func TestEarlyMediaRestartsForADifferentAnswer(t *testing.T) {
	h, rs := earlyHarness(t)
	req, _ := h.ringWithEarlyMedia()
	// A second target's early media replaces the first's.
	moved := newFakeCall("202").Media()
	moved.Remote = netip.MustParseAddrPort("192.0.2.2:4000")
	req.OnEarlyMedia(req.Targets[1], moved)
	if ans := <-rs.exited; ans != newFakeCall("201").Media() {
		t.Fatalf("first early run ended with %+v", ans)
	}
	<-h.stream.running

	// The 2xx answer (newFakeCall's media) differs again: restart once more.
	h.phone.results <- dialResult{call: newFakeCall("201")}
	h.expectEvent("answered")
	if ans := <-rs.exited; ans != moved {
		t.Fatalf("second early run ended with %+v", ans)
	}
	onDigit := <-h.stream.running
	h.keys(onDigit, "1234")
	h.expectEvent("door_opened")
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.rearms != 2 {
		t.Errorf("%d rearms, want 2", rs.rearms)
	}
}

func TestEarlyMediaStopsWhenTheCallFails(t *testing.T) {
	h, rs := earlyHarness(t)
	h.ringWithEarlyMedia()
	h.phone.results <- dialResult{err: &sipagent.StatusError{Code: 486, Reason: "Busy Here"}}
	h.expectEvent("hangup")
	select {
	case <-rs.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("early media still running after the call failed")
	}
	if got := h.callState(); got != "idle" {
		t.Errorf("call state %q", got)
	}
}

func TestEarlyMediaWithoutRearmFailsTheMovedCall(t *testing.T) {
	h := newHarness(t, testYAML)
	if err := h.st.PressButton(context.Background(), "bell"); err != nil {
		t.Fatal(err)
	}
	req := <-h.phone.reqs
	moved := newFakeCall("201").Media()
	moved.Remote = netip.MustParseAddrPort("192.0.2.2:4000")
	req.OnEarlyMedia(req.Targets[0], moved)
	<-h.stream.running
	h.phone.results <- dialResult{call: newFakeCall("201")}
	h.expectEvent("answered")
	ev := h.expectEvent("hangup")
	if r, _ := ev.Data["reason"].(string); r != "media failed" {
		t.Errorf("hangup %v", ev.Data)
	}
	if err := (&earlyStream{Stream: h.stream}).rearm(); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("rearm of a stream without Rearm: %v", err)
	}
}

func TestRingbackReturnsAfterAnEarlyMediaTargetGivesUp(t *testing.T) {
	h, rs := earlyHarnessWith(t, strings.Replace(testYAML, `"sip:202@pbx"]}`, `"sip:202@pbx"], ring: sequential}`, 1))
	if err := h.st.PressButton(context.Background(), "bell"); err != nil {
		t.Fatal(err)
	}
	first := <-h.phone.reqs
	first.OnEarlyMedia(first.Targets[0], newFakeCall("201").Media())
	<-h.stream.running
	h.phone.results <- dialResult{err: &sipagent.StatusError{Code: 486, Reason: "Busy Here"}}
	second := <-h.phone.reqs
	if second.Targets[0] != "sip:202@pbx" {
		t.Fatalf("second attempt %q", second.Targets)
	}
	select {
	case <-rs.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the first target's early media still runs")
	}
	second.OnRinging(second.Targets[0])
	h.expectEvent("ringing")
	h.stream.mu.Lock()
	ringing := h.stream.ringing
	h.stream.mu.Unlock()
	if !ringing {
		t.Fatal("no local ringback while the next target rings")
	}
	// The next target's own early media, though the same as the first's,
	// runs the stream again rather than adopting the stopped run.
	second.OnEarlyMedia(second.Targets[0], newFakeCall("201").Media())
	<-h.stream.running
	h.phone.results <- dialResult{call: newFakeCall("201")}
	h.expectEvent("answered")
	select {
	case ans := <-rs.exited:
		t.Fatalf("media for %v ended during the answered call", ans.Remote)
	case <-time.After(100 * time.Millisecond):
	}
	if got := h.callState(); got != "active" {
		t.Fatalf("call state %q", got)
	}
}
