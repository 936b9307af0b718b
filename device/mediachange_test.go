package device

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"intercom/media"
	"intercom/sipagent"
)

// fakeUpdates records fakeStream.Update calls; fakeStream lives in
// device_test.go, so its record is kept here, per stream.
var fakeUpdates = struct {
	sync.Mutex
	got map[*fakeStream][]sipagent.MediaAnswer
	err error // what Update returns
}{got: map[*fakeStream][]sipagent.MediaAnswer{}}

func (s *fakeStream) Update(ans sipagent.MediaAnswer) error {
	fakeUpdates.Lock()
	defer fakeUpdates.Unlock()
	fakeUpdates.got[s] = append(fakeUpdates.got[s], ans)
	return fakeUpdates.err
}

func updatesOf(s *fakeStream) []sipagent.MediaAnswer {
	fakeUpdates.Lock()
	defer fakeUpdates.Unlock()
	return append([]sipagent.MediaAnswer(nil), fakeUpdates.got[s]...)
}

func TestMediaChangeReachesTheRunningStream(t *testing.T) {
	h := newHarness(t, testYAML)
	call, _ := h.answerBell()
	held := call.Media()
	held.Direction = "recvonly"
	held.Remote = netip.MustParseAddrPort("192.0.2.7:4000")

	// News of another call changes nothing.
	h.sip <- MediaChangedEvent{Call: newFakeCall("other"), Media: held}
	h.sync()
	if got := updatesOf(h.stream); len(got) != 0 {
		t.Fatalf("updates for another call: %+v", got)
	}
	h.sip <- MediaChangedEvent{Call: call, Media: held}
	h.sync()
	if got := updatesOf(h.stream); len(got) != 1 || got[0] != held {
		t.Fatalf("updates %+v, want [%+v]", got, held)
	}
	if got := h.callState(); got != "active" {
		t.Errorf("call state %q on hold, want active", got)
	}
	h.noEvent("hangup")

	// A change the stream cannot make ends the call.
	fakeUpdates.Lock()
	fakeUpdates.err = errors.New("no such codec")
	fakeUpdates.Unlock()
	defer func() {
		fakeUpdates.Lock()
		fakeUpdates.err = nil
		fakeUpdates.Unlock()
	}()
	h.sip <- MediaChangedEvent{Call: call, Media: call.Media()}
	if ev := h.expectEvent("hangup"); ev.Data["reason"] != "media failed" {
		t.Errorf("hangup %v", ev.Data)
	}
	select {
	case <-call.hungup:
	case <-time.After(5 * time.Second):
		t.Fatal("call not hung up")
	}
}

func TestMediaUpdateMapping(t *testing.T) {
	for dir, want := range map[string]media.Direction{
		"": media.SendRecv, "sendrecv": media.SendRecv, "sendonly": media.SendOnly, "recvonly": media.RecvOnly, "inactive": media.Inactive,
	} {
		u, err := mediaUpdate(sipagent.MediaAnswer{Codec: sipagent.Codec{Name: "PCMA", PayloadType: 8}, Direction: dir,
			Remote: netip.MustParseAddrPort("192.0.2.1:4000"), DTMFPayloadType: 101})
		if err != nil {
			t.Fatal(err)
		}
		if u.Direction != want || u.Codec.Name != "PCMA" || u.Codec.PayloadType != 8 || u.DTMFPayloadType != 101 || u.Remote != netip.MustParseAddrPort("192.0.2.1:4000") {
			t.Errorf("%q: %+v", dir, u)
		}
	}
	// Old-style hold names no address: the last one stays.
	if u, _ := mediaUpdate(sipagent.MediaAnswer{Codec: sipagent.Codec{Name: "PCMU"}, Remote: netip.MustParseAddrPort("0.0.0.0:4000")}); u.Remote.IsValid() {
		t.Errorf("unspecified remote passed on: %v", u.Remote)
	}
	for _, bad := range []sipagent.MediaAnswer{
		{Codec: sipagent.Codec{Name: "G729"}},
		{Codec: sipagent.Codec{Name: "PCMU"}, Direction: "sideways"},
	} {
		if _, err := mediaUpdate(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// listenRTP is a peer's RTP port that reports what arrives.
func listenRTP(t *testing.T) (netip.AddrPort, <-chan struct{}) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	got := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort(), got
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRTPStreamUpdateMovesAndHolds(t *testing.T) {
	backend, err := media.NewBackend("null", media.BackendConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m := &RTPMedia{Backend: backend, Ptime: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	st, err := m.Open(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	first, _ := listenRTP(t)
	moved, atMoved := listenRTP(t)
	ans := sipagent.MediaAnswer{Local: st.LocalAddr(), Remote: first, Codec: sipagent.Codec{Name: "PCMU"}, Ptime: 20 * time.Millisecond}

	// A change before Run started waits for it: the call starts held.
	held := ans
	held.Direction = "recvonly"
	if err := st.Update(held); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx, ans, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	direction := func(want media.Direction) func() bool {
		return func() bool { s, ok := st.Stats(); return ok && s.Direction == want }
	}
	waitFor(t, "recvonly", direction(media.RecvOnly))

	// Resumed on a new port: the audio goes there.
	resumed := ans
	resumed.Remote = moved
	if err := st.Update(resumed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "sendrecv", direction(media.SendRecv))
	select {
	case <-atMoved:
	case <-time.After(5 * time.Second):
		t.Fatal("no RTP at the new address")
	}

	bad := resumed
	bad.Codec.Name = "G722"
	if err := st.Update(bad); err == nil {
		t.Error("Update to G.722 accepted")
	}
}

// reasonCall is a fakeCall that knows why it ended, as sipagent's calls do.
type reasonCall struct {
	*fakeCall
	reason string
}

func (c *reasonCall) EndReason() string { return c.reason }

func TestHangupEventNamesTheDialogsReason(t *testing.T) {
	h := newHarness(t, testYAML)
	call := &reasonCall{fakeCall: newFakeCall("f"), reason: "session expired"}
	h.sip <- IncomingEvent{Call: call, From: "sip:201@pbx"}
	<-call.accepted
	h.expectEvent("answered")
	<-h.stream.running
	// The dialog ends without an EndedEvent following (or before it).
	call.end()
	if ev := h.expectEvent("hangup"); ev.Data["reason"] != "session expired" {
		t.Errorf("hangup %v, want reason session expired", ev.Data)
	}
}

func TestStatusShowsHold(t *testing.T) {
	h := newHarness(t, testYAML)
	call, _ := h.answerBell()
	st, _ := h.st.Status(context.Background())
	if st.Call.Direction != "sendrecv" || st.Call.Hold {
		t.Errorf("before hold: %+v", st.Call)
	}
	held := call.Media()
	held.Direction = "recvonly"
	h.sip <- MediaChangedEvent{Call: call, Media: held}
	h.sync()
	st, _ = h.st.Status(context.Background())
	if st.Call.Direction != "recvonly" || !st.Call.Hold {
		t.Errorf("held: %+v", st.Call)
	}
}
