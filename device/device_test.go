package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"intercom/device/api"
	"intercom/device/config"
	"intercom/gpio"
	"intercom/internal/clock/clocktest"
	"intercom/media"
	"intercom/media/tone"
	"intercom/sipagent"
)

type fakeCall struct {
	id       string
	remote   string
	refuse   error // what Negotiate says
	accepted chan sipagent.MediaOffer
	rejected chan int
	hungup   chan struct{}
	done     chan struct{}
	once     sync.Once
}

func newFakeCall(id string) *fakeCall {
	return &fakeCall{id: id, remote: "sip:" + id + "@pbx", accepted: make(chan sipagent.MediaOffer, 1),
		rejected: make(chan int, 1), hungup: make(chan struct{}, 1), done: make(chan struct{})}
}

func (c *fakeCall) ID() string     { return c.id }
func (c *fakeCall) Remote() string { return c.remote }
func (c *fakeCall) Media() sipagent.MediaAnswer {
	return sipagent.MediaAnswer{Codec: sipagent.Codec{Name: "PCMU"}, DTMFPayloadType: 101}
}
func (c *fakeCall) Negotiate(sipagent.MediaOffer) error { return c.refuse }
func (c *fakeCall) Accept(ctx context.Context, o sipagent.MediaOffer) (sipagent.MediaAnswer, error) {
	c.accepted <- o
	return c.Media(), nil
}
func (c *fakeCall) Reject(code int, reason string) error { c.rejected <- code; c.end(); return nil }
func (c *fakeCall) Hangup(ctx context.Context) error {
	c.hungup <- struct{}{}
	c.end()
	return nil
}
func (c *fakeCall) Done() <-chan struct{} { return c.done }
func (c *fakeCall) end()                  { c.once.Do(func() { close(c.done) }) }

type dialResult struct {
	call Call
	err  error
}

type fakePhone struct {
	reqs    chan sipagent.DialRequest
	results chan dialResult
}

func (p *fakePhone) Dial(ctx context.Context, req sipagent.DialRequest) (Call, error) {
	p.reqs <- req
	select {
	case r := <-p.results:
		return r.call, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type fakeStream struct {
	running chan func(rune)
	mu      sync.Mutex
	ringing bool
	tones   []string
	stats   *media.Stats // nil until the test sets figures
}

func (s *fakeStream) Stats() (media.Stats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stats == nil {
		return media.Stats{}, false
	}
	return *s.stats, true
}

func (s *fakeStream) StartRingback() { s.mu.Lock(); s.ringing = true; s.mu.Unlock() }
func (s *fakeStream) PlayTone(spec tone.Spec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tones = append(s.tones, spec.String())
	return nil
}
func (s *fakeStream) played() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tones...)
}

func (s *fakeStream) LocalAddr() netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:20000") }
func (s *fakeStream) Close() error              { return nil }
func (s *fakeStream) Run(ctx context.Context, _ sipagent.MediaAnswer, onDigit func(rune)) error {
	s.running <- onDigit
	<-ctx.Done()
	return nil
}

type fakeMedia struct {
	stream    *fakeStream
	opens     atomic.Int32
	mu        sync.Mutex
	announced []string
}

func (m *fakeMedia) Open(netip.Addr) (Stream, error) {
	m.opens.Add(1)
	return m.stream, nil
}
func (m *fakeMedia) Announce(spec tone.Spec, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.announced = append(m.announced, spec.String())
}
func (m *fakeMedia) announcements() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.announced...)
}

type fakeRelay struct {
	mu     sync.Mutex
	pulses []time.Duration
}

func (r *fakeRelay) Pulse(d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulses = append(r.pulses, d)
	return nil
}
func (r *fakeRelay) Active() bool { return false }
func (r *fakeRelay) Cycles() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint64(len(r.pulses))
}

type fakeLED struct {
	mu sync.Mutex
	p  gpio.Pattern
}

func (l *fakeLED) Set(p gpio.Pattern) { l.mu.Lock(); l.p = p; l.mu.Unlock() }
func (l *fakeLED) Pattern() gpio.Pattern {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.p
}

type fakeInput struct{}

func (fakeInput) Run(ctx context.Context, _ chan<- gpio.Change) error { <-ctx.Done(); return nil }
func (fakeInput) Active() bool                                        { return false }

type harness struct {
	t      *testing.T
	st     *Station
	clock  *clocktest.Fake
	phone  *fakePhone
	stream *fakeStream
	media  *fakeMedia
	relay  *fakeRelay
	led    *fakeLED
	sip    chan any
	events <-chan api.Event
	stop   func() <-chan struct{} // cancels Run; the channel closes when it returns
}

const testYAML = `
sip: {registrar: 127.0.0.1, user: "100", password: pw}
calls:
  max_duration: 3m
  hangup_after_door_open: 10s
  auto_answer: {allow: ["sip:*@pbx"]}
gpio: {driver: sim}
buttons:
  - {name: bell, pin: GPIO17, call: ["sip:201@pbx", "sip:202@pbx"]}
relays:
  - {name: door, pin: GPIO27, pulse: 3s, max_on: 10s}
leds:
  - {name: status, pin: GPIO22}
door:
  codes: [{code: "1234", relay: door}]
audio: {backend: "null"}
`

func newHarness(t *testing.T, yaml string) *harness {
	t.Helper()
	return newHarnessWith(t, yaml, nil)
}

// newHarnessWith starts a station on yaml with the harness's fakes; adjust,
// if not nil, may change the fakes and the station's Config before New.
func newHarnessWith(t *testing.T, yaml string, adjust func(h *harness, c *Config)) *harness {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, clock: clocktest.New(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)),
		phone:  &fakePhone{reqs: make(chan sipagent.DialRequest, 1), results: make(chan dialResult, 1)},
		stream: &fakeStream{running: make(chan func(rune), 1)},
		relay:  &fakeRelay{}, led: &fakeLED{}, sip: make(chan any),
	}
	h.media = &fakeMedia{stream: h.stream}
	c := Config{
		Config: cfg, Phone: h.phone, Media: h.media,
		Relays: map[string]Relay{"door": h.relay}, LEDs: map[string]LED{"status": h.led},
		Buttons: map[string]Input{"bell": fakeInput{}}, Clock: h.clock,
	}
	if adjust != nil {
		adjust(h, &c)
	}
	if h.st, err = New(c); err != nil {
		t.Fatal(err)
	}
	var unsubscribe func()
	h.events, unsubscribe = h.st.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.st.Run(ctx, h.sip); close(done) }()
	h.stop = func() <-chan struct{} { cancel(); return done }
	t.Cleanup(func() { cancel(); <-done; unsubscribe() })
	return h
}

// sync waits until the loop has handled everything queued before it.
func (h *harness) sync() {
	h.t.Helper()
	if err := h.st.do(context.Background(), func() error { return nil }); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) expectEvent(typ string) api.Event {
	h.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-h.events:
			if ev.Type == typ {
				return ev
			}
		case <-timeout:
			h.t.Fatalf("no %q event", typ)
		}
	}
}

func (h *harness) noEvent(typ string) {
	h.t.Helper()
	h.sync()
	for {
		select {
		case ev := <-h.events:
			if ev.Type == typ {
				h.t.Fatalf("unexpected %q event: %v", typ, ev.Data)
			}
		default:
			return
		}
	}
}

func (h *harness) callState() string {
	h.t.Helper()
	st, err := h.st.Status(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st.Call.State
}

// answerBell presses the bell and lets the first target answer.
func (h *harness) answerBell() (*fakeCall, func(rune)) {
	h.t.Helper()
	if err := h.st.PressButton(context.Background(), "bell"); err != nil {
		h.t.Fatal(err)
	}
	req := <-h.phone.reqs
	if !req.Parallel || len(req.Targets) != 2 || req.RingTimeout != 30*time.Second {
		h.t.Fatalf("dial request %+v", req)
	}
	if got := h.led.Pattern(); got != "calling" {
		h.t.Errorf("LED %q while calling", got)
	}
	req.OnRinging(req.Targets[0])
	h.expectEvent("ringing")
	h.stream.mu.Lock()
	ringing := h.stream.ringing
	h.stream.mu.Unlock()
	if !ringing {
		h.t.Error("no ringback at the door while the flat rings")
	}
	call := newFakeCall("201")
	h.phone.results <- dialResult{call: call}
	h.expectEvent("answered")
	onDigit := <-h.stream.running
	return call, onDigit
}

func (h *harness) keys(onDigit func(rune), digits string) {
	for _, d := range digits {
		onDigit(d)
	}
	h.sync()
}

func TestBellCallsAndCodeOpensDoor(t *testing.T) {
	h := newHarness(t, testYAML)
	call, onDigit := h.answerBell()
	if got := h.callState(); got != "active" {
		t.Fatalf("call state %q", got)
	}
	if got := h.led.Pattern(); got != "in_call" {
		t.Errorf("LED %q in call", got)
	}
	h.keys(onDigit, "12")
	if ev := h.expectEvent("dtmf"); ev.Data["digit"] != "*" {
		t.Fatalf("dtmf event reveals the digit: %v", ev.Data)
	}
	h.keys(onDigit, "34")
	h.expectEvent("door_opened")
	if got := h.stream.played(); len(got) != 1 || got[0] != tone.DoorOpened().String() {
		t.Fatalf("tones %q, want the door-opened confirmation", got)
	}
	if len(h.relay.pulses) != 1 || h.relay.pulses[0] != 3*time.Second {
		t.Fatalf("relay pulses %v", h.relay.pulses)
	}
	if got := h.led.Pattern(); got != "door_open" {
		t.Errorf("LED %q after door opened", got)
	}
	h.clock.Advance(10 * time.Second)
	<-call.hungup
	h.expectEvent("hangup")
	if got := h.callState(); got != "idle" {
		t.Fatalf("call state %q after hangup_after_door_open", got)
	}
}

func TestStatusReportsCallMedia(t *testing.T) {
	h := newHarness(t, testYAML)
	st, _ := h.st.Status(context.Background())
	if st.Media != nil {
		t.Fatalf("media status outside a call: %+v", st.Media)
	}
	call, _ := h.answerBell()
	h.stream.mu.Lock()
	h.stream.stats = &media.Stats{PacketsSent: 500, PacketsReceived: 490, NetworkLost: 10, FractionLost: 0.25,
		Jitter: 3 * time.Millisecond, JitterTarget: 40 * time.Millisecond, RTT: 62500 * time.Microsecond,
		RemoteFractionLost: 0.5, RemoteLost: 7, RTCPSent: 4, RTCPReceived: 3, Concealed: 12, Unauthenticated: 2}
	h.stream.mu.Unlock()

	rec := httptest.NewRecorder()
	api.Handler(api.Config{Station: h.st}).ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/status", nil))
	var doc struct {
		Media map[string]any `json:"media"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"codec": "PCMU", "ptime_ms": 20.0, "packets_sent": 500.0, "packets_received": 490.0,
		"lost": 10.0, "loss_fraction": 0.25, "late": 0.0, "concealed": 12.0, "jitter_ms": 3.0, "jitter_target_ms": 40.0,
		"rtt_ms": 62.5, "remote_lost": 7.0, "remote_loss_fraction": 0.5, "remote_jitter_ms": 0.0,
		"rtcp_sent": 4.0, "rtcp_received": 3.0, "srtp": "none", "srtp_refused": 2.0}
	if !reflect.DeepEqual(doc.Media, want) {
		t.Fatalf("media status\n got %v\nwant %v", doc.Media, want)
	}

	var metrics strings.Builder
	if err := h.st.WriteMetrics(context.Background(), &metrics); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"intercom_rtp_packets_received_total 490\n", "intercom_rtcp_rtt_seconds 0.0625\n",
		"intercom_rtcp_remote_loss_fraction 0.5\n", "intercom_rtp_packets_lost_total 10\n", "intercom_rtp_jitter_seconds 0.003\n"} {
		if !strings.Contains(metrics.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, metrics.String())
		}
	}

	if err := h.st.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-call.hungup
	if st, _ := h.st.Status(context.Background()); st.Media != nil {
		t.Fatalf("media status after the call: %+v", st.Media)
	}
	metrics.Reset()
	if err := h.st.WriteMetrics(context.Background(), &metrics); err != nil || strings.Contains(metrics.String(), "intercom_rtp_") {
		t.Fatalf("metrics after the call (%v):\n%s", err, metrics.String())
	}
}

func TestLockoutKeepsDoorShut(t *testing.T) {
	h := newHarness(t, testYAML)
	_, onDigit := h.answerBell()
	h.keys(onDigit, "9999")
	h.expectEvent("code_rejected")
	if got := h.stream.played(); len(got) != 1 || got[0] != tone.Rejected().String() {
		t.Fatalf("tones %q, want the rejection tone", got)
	}
	h.keys(onDigit, "99999999")
	h.expectEvent("lockout")
	h.keys(onDigit, "1234")
	if ev := h.expectEvent("code_rejected"); ev.Data["reason"] != "locked out" {
		t.Fatalf("code during lockout: %v", ev.Data)
	}
	h.noEvent("door_opened")
	if len(h.relay.pulses) != 0 {
		t.Fatalf("relay pulsed during lockout: %v", h.relay.pulses)
	}
}

func TestDigitsOutsideACallAreIgnored(t *testing.T) {
	h := newHarness(t, testYAML)
	call, onDigit := h.answerBell()
	call.end()
	h.expectEvent("hangup")
	h.keys(onDigit, "1234")
	h.noEvent("door_opened")
}

func TestIncomingCallPolicy(t *testing.T) {
	h := newHarness(t, testYAML)
	stranger := newFakeCall("x")
	h.sip <- IncomingEvent{Call: stranger, From: "sip:mallory@evil.example", FromProxy: true}
	if code := rejectedCode(t, stranger); code != 403 {
		t.Fatalf("stranger got %d", code)
	}
	h.noEvent("ringing")

	friend := newFakeCall("f")
	h.sip <- IncomingEvent{Call: friend, From: "sip:201@pbx"}
	h.expectEvent("ringing")
	<-friend.accepted
	h.expectEvent("answered")
	<-h.stream.running

	second := newFakeCall("s")
	h.sip <- IncomingEvent{Call: second, From: "sip:202@pbx"}
	if code := rejectedCode(t, second); code != 486 {
		t.Fatalf("second call got %d", code)
	}
	friend.end()
	h.expectEvent("hangup")
}

// A call whose offer the station cannot answer (no codec in common, the
// SRTP policy not met) is refused before it rings: no ringing event, no
// sound card opened.
func TestUnanswerableOfferRefusedBeforeRinging(t *testing.T) {
	h := newHarness(t, testYAML)
	plain := newFakeCall("p")
	plain.refuse = errors.New("sipagent: negotiate: SRTP required")
	h.sip <- IncomingEvent{Call: plain, From: "sip:201@pbx"}
	if code := rejectedCode(t, plain); code != 488 {
		t.Fatalf("call we cannot answer got %d; want 488", code)
	}
	h.noEvent("ringing")
	if n := h.media.opens.Load(); n != 0 {
		t.Fatalf("media opened %d times for a refused call", n)
	}

	ok := newFakeCall("o")
	h.sip <- IncomingEvent{Call: ok, From: "sip:201@pbx"}
	h.expectEvent("ringing")
	<-ok.accepted
}

func TestEmptyAllowListAcceptsOnlyTheRegistrar(t *testing.T) {
	h := newHarness(t, `
sip: {registrar: 127.0.0.1, user: "100"}
audio: {backend: "null"}
`)
	c := newFakeCall("a")
	h.sip <- IncomingEvent{Call: c, From: "sip:201@pbx", FromProxy: false}
	if code := rejectedCode(t, c); code != 403 {
		t.Fatalf("call not from the registrar got %d", code)
	}
	ok := newFakeCall("b")
	h.sip <- IncomingEvent{Call: ok, From: "sip:201@pbx", FromProxy: true}
	<-ok.accepted
}

func TestMaxDurationHangsUp(t *testing.T) {
	h := newHarness(t, testYAML)
	call, _ := h.answerBell()
	h.clock.Advance(3 * time.Minute)
	<-call.hungup
	h.expectEvent("hangup")
}

func TestButtonDuringCallHangsUp(t *testing.T) {
	h := newHarness(t, testYAML)
	call, _ := h.answerBell()
	if err := h.st.PressButton(context.Background(), "bell"); err != nil {
		t.Fatal(err)
	}
	<-call.hungup
	if got := h.callState(); got != "idle" {
		t.Fatalf("call state %q", got)
	}
}

func TestButtonWhileRingingCancelsTheDial(t *testing.T) {
	h := newHarness(t, testYAML)
	if err := h.st.PressButton(context.Background(), "bell"); err != nil {
		t.Fatal(err)
	}
	<-h.phone.reqs
	if err := h.st.PressButton(context.Background(), "bell"); err != nil {
		t.Fatal(err)
	}
	h.expectEvent("hangup")
	if got := h.callState(); got != "idle" {
		t.Fatalf("call state %q", got)
	}
}

func TestFailedDialReturnsToIdleAndTellsTheVisitor(t *testing.T) {
	tests := []struct {
		err  error
		want []string
	}{
		{&sipagent.StatusError{Target: "sip:201@pbx", Code: 486, Reason: "Busy Here"}, []string{tone.Busy().String()}},
		{fmt.Errorf("dial: %w", &sipagent.StatusError{Code: 603, Reason: "Decline"}), []string{tone.Busy().String()}},
		{&sipagent.StatusError{Code: 404, Reason: "Not Found"}, []string{tone.Unreachable().String()}},
		{sipagent.ErrNoAnswer, []string{tone.Unreachable().String()}},
	}
	for _, tt := range tests {
		h := newHarness(t, testYAML)
		if err := h.st.PressButton(context.Background(), "bell"); err != nil {
			t.Fatal(err)
		}
		<-h.phone.reqs
		h.phone.results <- dialResult{err: tt.err}
		h.expectEvent("hangup")
		if got := h.callState(); got != "idle" {
			t.Fatalf("%v: call state %q", tt.err, got)
		}
		if got := h.media.announcements(); !slices.Equal(got, tt.want) {
			t.Errorf("%v: announced %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestVisitorHangingUpHearsNoFailureTone(t *testing.T) {
	h := newHarness(t, testYAML)
	if err := h.st.PressButton(context.Background(), "bell"); err != nil {
		t.Fatal(err)
	}
	<-h.phone.reqs
	if err := h.st.PressButton(context.Background(), "bell"); err != nil {
		t.Fatal(err)
	}
	h.expectEvent("hangup")
	h.sync()
	if got := h.media.announcements(); len(got) != 0 {
		t.Fatalf("announced %q after the visitor cancelled", got)
	}
}

func TestAPICommandErrors(t *testing.T) {
	h := newHarness(t, testYAML)
	ctx := context.Background()
	if err := h.st.PressButton(ctx, "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown button: %v", err)
	}
	if err := h.st.PulseRelay(ctx, "nope", 0); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown relay: %v", err)
	}
	if err := h.st.Hangup(ctx); !errors.Is(err, api.ErrConflict) {
		t.Errorf("hangup while idle: %v", err)
	}
	if err := h.st.PulseRelay(ctx, "door", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if ev := h.expectEvent("door_opened"); ev.Data["source"] != "api" {
		t.Errorf("door_opened %v", ev.Data)
	}
}

func TestRegistrationDrivesLEDAndEvents(t *testing.T) {
	h := newHarness(t, testYAML)
	h.sync()
	if got := h.led.Pattern(); got != "unregistered" {
		t.Fatalf("LED %q before registration", got)
	}
	st, _ := h.st.Status(context.Background())
	if st.Registration.Transport != "udp" || st.Registration.Address != "" {
		t.Fatalf("registration status before any answer %+v, want the configured transport and no address", st.Registration)
	}
	h.sip <- RegistrationEvent{State: "registered", Registrar: "127.0.0.1", Expires: h.clock.Now().Add(time.Minute),
		Transport: "tcp", Addr: netip.MustParseAddrPort("127.0.0.1:5062")}
	h.expectEvent("registered")
	if got := h.led.Pattern(); got != "registered" {
		t.Fatalf("LED %q when registered", got)
	}
	st, _ = h.st.Status(context.Background())
	if st.Registration.State != "registered" || st.Registration.ExpiresIn != "1m0s" ||
		st.Registration.Transport != "tcp" || st.Registration.Address != "127.0.0.1:5062" {
		t.Fatalf("registration status %+v", st.Registration)
	}
	h.sip <- RegistrationEvent{State: "failed", Registrar: "127.0.0.1", Err: errors.New("timeout")}
	h.expectEvent("unregistered")
}

func TestAllowListRefusesForgedFrom(t *testing.T) {
	h := newHarness(t, `
sip: {registrar: pbx.example.com, user: "100"}
calls:
  auto_answer: {allow: ["sip:*@pbx.example.com", "sip:*@192.0.2.7", "sip:*@friends.example"]}
audio: {backend: "null"}
`)
	tests := []struct {
		from      string
		source    string
		fromProxy bool
		want      int // 0: accepted
	}{
		{"sip:201@pbx.example.com", "198.51.100.1:5060", true, 0},
		{"sip:201@pbx.example.com", "203.0.113.9:5060", false, 403},
		{"\"Flat\" <sip:201@PBX.example.com:5060>;tag=x", "203.0.113.9:5060", false, 403},
		{"sip:door@192.0.2.7:5062", "192.0.2.7:5062", false, 0},
		{"sip:door@192.0.2.7", "203.0.113.9:5060", false, 403},
		{"sip:ann@friends.example", "203.0.113.9:5060", false, 0},
		{"sip:ann@strangers.example", "203.0.113.9:5060", false, 403},
	}
	for i, tt := range tests {
		c := newFakeCall(fmt.Sprint(i))
		h.sip <- IncomingEvent{Call: c, From: tt.from, Source: netip.MustParseAddrPort(tt.source), FromProxy: tt.fromProxy}
		if tt.want != 0 {
			if code := rejectedCode(t, c); code != tt.want {
				t.Fatalf("%s from %s: got %d, want %d", tt.from, tt.source, code, tt.want)
			}
			continue
		}
		<-c.accepted
		h.expectEvent("answered")
		<-h.stream.running
		c.end()
		h.expectEvent("hangup")
	}
}

func rejectedCode(t *testing.T, c *fakeCall) int {
	t.Helper()
	select {
	case code := <-c.rejected:
		return code
	case <-c.accepted:
		return 200
	case <-time.After(5 * time.Second):
		t.Fatal("call neither rejected nor accepted")
		return 0
	}
}

type fakeAudio struct{}

func (fakeAudio) Stats() media.ResilientStats {
	return media.ResilientStats{Xruns: 4, Failures: 3, Reopens: 2, Down: 1}
}

func TestStatusReportsAudioHealth(t *testing.T) {
	h := newHarness(t, testYAML)
	h.st.audio = fakeAudio{}
	st, err := h.st.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Audio == nil || *st.Audio != (api.AudioStatus{Xruns: 4, Failures: 3, Reopens: 2, Down: 1}) {
		t.Fatalf("audio status %+v", st.Audio)
	}
	var b strings.Builder
	if err := h.st.WriteMetrics(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"intercom_audio_reopens_total 2\n", "intercom_audio_streams_down 1\n", "intercom_audio_xruns_total 4\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
