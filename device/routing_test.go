package device

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/device/config"
	"intercom/gpio"
	"intercom/internal/clock/clocktest"
	"intercom/media"
	"intercom/media/tone"
	"intercom/sipagent"
)

// attempt is one Dial the station made; the test answers it through result.
type attempt struct {
	req    sipagent.DialRequest
	ctx    context.Context
	result chan dialResult
}

// attemptPhone hands every Dial to the test, each with its own result
// channel, so that a cancelled attempt can never take another's answer.
type attemptPhone struct {
	dials chan *attempt
	// stubborn Dials return only their result, as if the answer crossed
	// the cancel on the wire; set before the first Dial.
	stubborn bool
}

func (p *attemptPhone) Dial(ctx context.Context, req sipagent.DialRequest) (Call, error) {
	a := &attempt{req: req, ctx: ctx, result: make(chan dialResult, 1)}
	p.dials <- a
	if p.stubborn {
		r := <-a.result
		return r.call, r.err
	}
	select {
	case r := <-a.result:
		return r.call, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// chanInput is a button or input whose changes the test sends.
type chanInput struct {
	changes chan gpio.Change
	err     chan error
}

func newChanInput() *chanInput {
	return &chanInput{changes: make(chan gpio.Change), err: make(chan error, 1)}
}

func (in *chanInput) Run(ctx context.Context, out chan<- gpio.Change) error {
	for {
		select {
		case c := <-in.changes:
			out <- c
		case err := <-in.err:
			return err
		case <-ctx.Done():
			return nil
		}
	}
}
func (in *chanInput) Active() bool { return false }

// switchableMedia fails Open while broken is set.
type switchableMedia struct {
	*fakeMedia
	mu     sync.Mutex
	broken bool
}

func (m *switchableMedia) Open(ip netip.Addr) (Stream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.broken {
		return nil, errors.New("no sound card")
	}
	return m.fakeMedia.Open(ip)
}

func (m *switchableMedia) setBroken(b bool) { m.mu.Lock(); m.broken = b; m.mu.Unlock() }

// rig is a running station with a fake clock, a phone that shows each
// attempt, inputs the test drives and two LEDs: "status" and "ring"
// (illumination).
type rig struct {
	*harness
	phone   *attemptPhone
	media   *switchableMedia
	buttons map[string]*chanInput
	ring    *fakeLED
	onDigit func(rune) // the answered call's, set by answer
}

// Monday 5 January 2026, 12:00 UTC.
var monday = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

func newRig(t *testing.T, yaml string, start time.Time) *rig {
	t.Helper()
	return newRigWithAudio(t, yaml, start, nil)
}

func newRigWithAudio(t *testing.T, yaml string, start time.Time, audio AudioHealth) *rig {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{
		phone:   &attemptPhone{dials: make(chan *attempt, 4)},
		buttons: map[string]*chanInput{},
		ring:    &fakeLED{},
	}
	inputs := map[string]Input{}
	for _, b := range cfg.Buttons {
		r.buttons[b.Name] = newChanInput()
		inputs[b.Name] = r.buttons[b.Name]
	}
	r.harness = newHarnessWith(t, yaml, func(h *harness, c *Config) {
		h.clock = clocktest.New(start)
		r.media = &switchableMedia{fakeMedia: h.media}
		c.Clock, c.Phone, c.Media, c.Audio, c.Buttons = h.clock, r.phone, r.media, audio, inputs
		c.LEDs = map[string]LED{"status": h.led, "ring": r.ring}
	})
	r.sync()
	return r
}

const routingYAML = `
sip: {registrar: 127.0.0.1, user: "100"}
calls:
  ring_timeout: 30s
  max_duration: 3m
  max_duration_warning: 10s
buttons:
  - {name: bell, pin: GPIO17, call: ["sip:201@pbx", "sip:202@pbx", "sip:203@pbx"], ring: sequential}
relays:
  - {name: door, pin: GPIO27}
leds:
  - {name: status, pin: GPIO22}
  - {name: ring, pin: GPIO23, role: illumination}
door:
  codes: [{code: "1234", relay: door}]
audio: {backend: "null"}
`

// press sends a debounced press of button, as gpio.Input would.
func (r *rig) press(button string) {
	r.t.Helper()
	r.buttons[button].changes <- gpio.Change{Name: button, Active: true, At: r.clock.Now()}
	r.sync()
}

func (r *rig) release(button string) {
	r.t.Helper()
	r.buttons[button].changes <- gpio.Change{Name: button, At: r.clock.Now()}
	r.sync()
}

func (r *rig) hold(button string) {
	r.t.Helper()
	r.buttons[button].changes <- gpio.Change{Name: button, Active: true, Long: true, At: r.clock.Now()}
	r.sync()
}

func (r *rig) nextDial() *attempt {
	r.t.Helper()
	select {
	case a := <-r.phone.dials:
		return a
	case <-time.After(5 * time.Second):
		r.t.Fatal("no dial")
		return nil
	}
}

func (r *rig) noDial() {
	r.t.Helper()
	r.sync()
	select {
	case a := <-r.phone.dials:
		r.t.Fatalf("unexpected dial of %q", a.req.Targets)
	default:
	}
}

// advance moves the fake clock and lets the loop handle what fell due.
func (r *rig) advance(d time.Duration) {
	r.t.Helper()
	r.clock.Advance(d)
	r.sync()
}

// answer answers a with a new call and waits until the station talks.
func (r *rig) answer(a *attempt, id string) *fakeCall {
	r.t.Helper()
	call := newFakeCall(id)
	a.result <- dialResult{call: call}
	r.expectEvent("answered")
	r.onDigit = <-r.stream.running
	return call
}

// expectLong waits for the input event of a long press of button.
func (r *rig) expectLong(button string) {
	r.t.Helper()
	for {
		ev := r.expectEvent("input")
		if ev.Data["long"] == true {
			if ev.Data["name"] != button || ev.Data["active"] != true {
				r.t.Fatalf("long press event %v", ev.Data)
			}
			return
		}
	}
}

func cancelled(a *attempt) bool { return a.ctx.Err() != nil }

func TestSequentialRingingTriesEachTargetForRingTimeout(t *testing.T) {
	r := newRig(t, routingYAML, monday)
	r.press("bell")
	first := r.nextDial()
	if !slices.Equal(first.req.Targets, []string{"sip:201@pbx"}) || first.req.Parallel || first.req.RingTimeout != 30*time.Second {
		t.Fatalf("first attempt %+v", first.req)
	}
	first.req.OnRinging("sip:201@pbx")
	if ev := r.expectEvent("ringing"); ev.Data["remote"] != "sip:201@pbx" {
		t.Fatalf("ringing %v", ev.Data)
	}
	r.advance(30*time.Second - time.Millisecond)
	r.noDial()
	if cancelled(first) {
		t.Fatal("first target cancelled before its ring timeout")
	}
	r.advance(time.Millisecond)
	second := r.nextDial()
	if !cancelled(first) {
		t.Fatal("first target still rings after its ring timeout")
	}
	if !slices.Equal(second.req.Targets, []string{"sip:202@pbx"}) {
		t.Fatalf("second attempt %q", second.req.Targets)
	}
	if got := r.callState(); got != "calling" {
		t.Fatalf("call state %q between targets", got)
	}
	// News from the first target after its timeout changes nothing.
	first.req.OnRinging("sip:201@pbx")
	r.noEvent("ringing")

	// The second target turns the call down at once: the third rings.
	second.result <- dialResult{err: &sipagent.StatusError{Target: "sip:202@pbx", Code: 486, Reason: "Busy Here"}}
	third := r.nextDial()
	if !slices.Equal(third.req.Targets, []string{"sip:203@pbx"}) {
		t.Fatalf("third attempt %q", third.req.Targets)
	}
	r.advance(20 * time.Second) // its own 30 s, not what is left of anyone's
	call := r.answer(third, "203")
	if st, _ := r.st.Status(context.Background()); st.Call.State != "active" || st.Call.Remote != call.Remote() {
		t.Fatalf("call status %+v", st.Call)
	}
	r.advance(time.Minute)
	if got := r.callState(); got != "active" {
		t.Fatalf("call state %q: a ring timer outlived the answer", got)
	}
}

func TestSequentialRingingGivesUpAfterTheLastTarget(t *testing.T) {
	r := newRig(t, routingYAML, monday)
	r.press("bell")
	for i := range 3 {
		a := r.nextDial()
		if i == 1 {
			a.result <- dialResult{err: &sipagent.StatusError{Code: 404, Reason: "Not Found"}}
			continue
		}
		r.advance(30 * time.Second)
		if !cancelled(a) {
			t.Fatalf("attempt %d not cancelled at its timeout", i)
		}
	}
	ev := r.expectEvent("hangup")
	reason, _ := ev.Data["reason"].(string)
	for _, want := range []string{"sip:201@pbx: no answer within 30s", "404", "sip:203@pbx: no answer within 30s"} {
		if !strings.Contains(reason, want) {
			t.Errorf("hangup reason %q lacks %q", reason, want)
		}
	}
	if got := r.callState(); got != "idle" {
		t.Fatalf("call state %q", got)
	}
	if got := r.media.announcements(); !slices.Equal(got, []string{tone.Unreachable().String()}) {
		t.Fatalf("announced %q", got)
	}
	r.noDial()
}

func TestLateAnswerFromATimedOutTargetIsHungUp(t *testing.T) {
	r := newRig(t, routingYAML, monday)
	r.phone.stubborn = true
	r.press("bell")
	first := r.nextDial()
	r.advance(30 * time.Second)
	second := r.nextDial()
	// The first phone answered just as it was being cancelled.
	late := newFakeCall("201")
	first.result <- dialResult{call: late}
	select {
	case <-late.hungup:
	case <-time.After(5 * time.Second):
		t.Fatal("late answer not hung up")
	}
	if got := r.callState(); got != "calling" {
		t.Fatalf("call state %q after a late answer", got)
	}
	if cancelled(second) {
		t.Fatal("the late answer cancelled the target now ringing")
	}
	r.answer(second, "202")
}

func TestParallelRingingHasOneTimeoutForTheGroup(t *testing.T) {
	r := newRig(t, strings.Replace(routingYAML, "ring: sequential", "ring: parallel", 1), monday)
	r.press("bell")
	a := r.nextDial()
	if !a.req.Parallel || len(a.req.Targets) != 3 || a.req.RingTimeout != 30*time.Second {
		t.Fatalf("dial request %+v", a.req)
	}
	r.advance(30 * time.Second)
	if !cancelled(a) {
		t.Fatal("group still rings after ring_timeout")
	}
	if ev := r.expectEvent("hangup"); !strings.Contains(ev.Data["reason"].(string), "no answer") {
		t.Fatalf("hangup %v", ev.Data)
	}
	r.noDial()
	if got := r.media.announcements(); !slices.Equal(got, []string{tone.Unreachable().String()}) {
		t.Fatalf("announced %q", got)
	}
}

func TestParallelRingingFirstAnswerWins(t *testing.T) {
	r := newRig(t, strings.Replace(routingYAML, "ring: sequential", "ring: parallel", 1), monday)
	r.press("bell")
	a := r.nextDial()
	a.req.OnRinging("sip:202@pbx")
	r.expectEvent("ringing")
	call := r.answer(a, "202")
	if st, _ := r.st.Status(context.Background()); st.Call.Remote != call.Remote() {
		t.Fatalf("remote %q", st.Call.Remote)
	}
	r.advance(30 * time.Second)
	if got := r.callState(); got != "active" {
		t.Fatalf("call state %q after the group's ring timeout", got)
	}
	r.noDial()
}

func TestMaxDurationWarnsThenHangsUp(t *testing.T) {
	r := newRig(t, routingYAML, monday)
	r.press("bell")
	call := r.answer(r.nextDial(), "201")
	r.advance(2*time.Minute + 50*time.Second - time.Millisecond)
	if got := r.stream.played(); len(got) != 0 {
		t.Fatalf("tones %q before the warning", got)
	}
	r.advance(time.Millisecond)
	if got := r.stream.played(); !slices.Equal(got, []string{timeWarning().String()}) {
		t.Fatalf("tones %q, want the time warning", got)
	}
	r.advance(10*time.Second - time.Millisecond)
	if got := r.callState(); got != "active" {
		t.Fatalf("call state %q before max_duration", got)
	}
	r.advance(time.Millisecond)
	<-call.hungup
	if ev := r.expectEvent("hangup"); ev.Data["reason"] != "maximum call duration reached" {
		t.Fatalf("hangup %v", ev.Data)
	}
}

func TestMaxDurationWarningZeroDisablesTheTone(t *testing.T) {
	r := newRig(t, strings.Replace(routingYAML, "max_duration_warning: 10s", "max_duration_warning: 0s", 1), monday)
	r.press("bell")
	call := r.answer(r.nextDial(), "201")
	r.advance(3 * time.Minute)
	<-call.hungup
	if got := r.stream.played(); len(got) != 0 {
		t.Fatalf("tones %q with the warning disabled", got)
	}
}

func TestHangupAfterDoorOpenZeroKeepsTheCall(t *testing.T) {
	r := newRig(t, strings.Replace(routingYAML, "max_duration: 3m", "max_duration: 3m\n  hangup_after_door_open: 0s", 1), monday)
	r.press("bell")
	r.answer(r.nextDial(), "201")
	r.keys(r.onDigit, "1234")
	r.expectEvent("door_opened")
	r.advance(2 * time.Minute)
	if got := r.callState(); got != "active" {
		t.Fatalf("call state %q: hung up after the door opened although disabled", got)
	}
}

func TestButtonDuringCallIgnore(t *testing.T) {
	r := newRig(t, strings.Replace(routingYAML, "max_duration: 3m", "max_duration: 3m\n  button_during_call: ignore", 1), monday)
	r.press("bell")
	a := r.nextDial()
	r.release("bell")
	r.press("bell")
	if got := r.callState(); got != "calling" || cancelled(a) {
		t.Fatalf("call state %q (cancelled %v) after a second press while calling", got, cancelled(a))
	}
	r.noDial()
	r.answer(a, "201")
	r.press("bell")
	if got := r.callState(); got != "active" {
		t.Fatalf("call state %q after a press in the call", got)
	}
}

func TestLongPressReportsAndEndsTheCallItInterrupted(t *testing.T) {
	r := newRig(t, strings.Replace(strings.Replace(routingYAML, "max_duration: 3m", "max_duration: 3m\n  button_during_call: ignore", 1),
		"ring: sequential}", "ring: sequential, long_press: 2s}", 1), monday)
	// A long press on the press that placed the call keeps the call.
	r.press("bell")
	a := r.nextDial()
	r.hold("bell")
	r.expectLong("bell")
	r.release("bell")
	if got := r.callState(); got != "calling" || cancelled(a) {
		t.Fatalf("call state %q after holding the bell that placed it", got)
	}
	call := r.answer(a, "201")
	// A press in the call is ignored; held, it hangs up.
	r.press("bell")
	if got := r.callState(); got != "active" {
		t.Fatalf("call state %q after a short press", got)
	}
	r.hold("bell")
	<-call.hungup
	if ev := r.expectEvent("hangup"); ev.Data["reason"] != "button held" {
		t.Fatalf("hangup %v", ev.Data)
	}
	// Held while idle, it only reports.
	r.release("bell")
	r.hold("bell")
	r.expectLong("bell")
	r.noDial()
	if got := r.callState(); got != "idle" {
		t.Fatalf("call state %q", got)
	}
}

func TestButtonsCallTheirOwnTargets(t *testing.T) {
	r := newRig(t, `
sip: {registrar: 127.0.0.1, user: "100"}
buttons:
  - {name: flat1, pin: GPIO17, call: ["sip:101@pbx"]}
  - {name: flat2, pin: GPIO18, call: ["sip:201@pbx", "sip:202@pbx"], ring: sequential}
audio: {backend: "null"}
`, monday)
	r.press("flat2")
	a := r.nextDial()
	if !slices.Equal(a.req.Targets, []string{"sip:201@pbx"}) {
		t.Fatalf("flat2 dialled %q", a.req.Targets)
	}
	a.result <- dialResult{err: &sipagent.StatusError{Code: 603, Reason: "Decline"}}
	if !slices.Equal(r.nextDial().req.Targets, []string{"sip:202@pbx"}) {
		t.Fatal("flat2's second target not rung")
	}
	if err := r.st.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.expectEvent("hangup")
	r.press("flat1")
	if got := r.nextDial().req.Targets; !slices.Equal(got, []string{"sip:101@pbx"}) {
		t.Fatalf("flat1 dialled %q", got)
	}
}

func TestDayNightRouting(t *testing.T) {
	yaml := `
device: {timezone: Europe/Berlin}
sip: {registrar: 127.0.0.1, user: "100"}
buttons:
  - name: bell
    pin: GPIO17
    call: ["sip:night@pbx"]
    schedule:
      - {days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00", call: ["sip:reception@pbx", "sip:porter@pbx"], ring: sequential}
      - {days: [sat], from: "22:00", to: "06:00", call: ["sip:security@pbx"]}
audio: {backend: "null"}
`
	// Berlin is UTC+1 in January.
	r := newRig(t, yaml, time.Date(2026, 1, 5, 6, 59, 0, 0, time.UTC)) // Monday 07:59
	steps := []struct {
		advance  time.Duration
		want     []string
		parallel bool
	}{
		{0, []string{"sip:night@pbx"}, true},                               // Mon 07:59
		{time.Minute, []string{"sip:reception@pbx"}, false},                // Mon 08:00
		{10*time.Hour - time.Minute, []string{"sip:reception@pbx"}, false}, // Mon 17:59
		{time.Minute, []string{"sip:night@pbx"}, true},                     // Mon 18:00
		{5*24*time.Hour + 4*time.Hour, []string{"sip:security@pbx"}, true}, // Sat 22:00
		{7*time.Hour + 59*time.Minute, []string{"sip:security@pbx"}, true}, // Sun 05:59
		{time.Minute, []string{"sip:night@pbx"}, true},                     // Sun 06:00
		{26 * time.Hour, []string{"sip:reception@pbx"}, false},             // Mon 08:00
	}
	for i, st := range steps {
		r.advance(st.advance)
		r.press("bell")
		a := r.nextDial()
		local := r.clock.Now().In(r.st.policy.loc).Format("Mon 15:04")
		if !slices.Equal(a.req.Targets, st.want) || a.req.Parallel != st.parallel {
			t.Fatalf("step %d (%s): dialled %q parallel=%v, want %q parallel=%v", i, local, a.req.Targets, a.req.Parallel, st.want, st.parallel)
		}
		a.result <- dialResult{err: &sipagent.StatusError{Code: 486, Reason: "Busy Here"}}
		if !strings.Contains(st.want[0], "reception") {
			r.expectEvent("hangup")
			continue
		}
		r.nextDial().result <- dialResult{err: &sipagent.StatusError{Code: 486, Reason: "Busy Here"}}
		r.expectEvent("hangup")
	}
}

func TestLEDsFollowTheStation(t *testing.T) {
	r := newRig(t, routingYAML, monday)
	check := func(when string, status, ring gpio.Pattern) {
		t.Helper()
		r.sync()
		if got := r.led.Pattern(); got != status {
			t.Errorf("%s: status LED %q, want %q", when, got, status)
		}
		if got := r.ring.Pattern(); got != ring {
			t.Errorf("%s: illumination %q, want %q", when, got, ring)
		}
	}
	check("registering", gpio.PatternUnregistered, gpio.PatternOn)
	r.sip <- RegistrationEvent{State: "failed", Registrar: "127.0.0.1", Err: errors.New("403 Forbidden")}
	check("registration failed", gpio.PatternError, gpio.PatternOn)
	r.sip <- RegistrationEvent{State: "registering", Registrar: "127.0.0.1"}
	check("retrying after a failure", gpio.PatternError, gpio.PatternOn)
	r.sip <- RegistrationEvent{State: "registered", Registrar: "127.0.0.1"}
	check("registered", gpio.PatternRegistered, gpio.PatternOn)

	r.press("bell")
	a := r.nextDial()
	check("calling", gpio.PatternCalling, gpio.PatternCalling)
	r.answer(a, "201")
	check("in call", gpio.PatternInCall, gpio.PatternOn)
	if err := r.st.PulseRelay(context.Background(), "door", 0); err != nil {
		t.Fatal(err)
	}
	check("door open", gpio.PatternDoorOpen, gpio.PatternOn)
	r.advance(3 * time.Second)
	check("door closed again", gpio.PatternInCall, gpio.PatternOn)
	if err := r.st.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("idle", gpio.PatternRegistered, gpio.PatternOn)

	r.media.setBroken(true)
	r.press("bell")
	r.expectEvent("error")
	check("sound card failed", gpio.PatternError, gpio.PatternOn)
	r.media.setBroken(false)
	r.release("bell")
	r.press("bell")
	r.nextDial()
	check("calling again", gpio.PatternCalling, gpio.PatternCalling)
	if err := r.st.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("sound card back", gpio.PatternRegistered, gpio.PatternOn)

	r.buttons["bell"].err <- errors.New("line gone")
	r.expectEvent("error")
	check("button failed", gpio.PatternError, gpio.PatternOn)
}

// downAudio is sound-card health whose down count the test sets.
type downAudio struct {
	mu   sync.Mutex
	down int
}

func (a *downAudio) Stats() media.ResilientStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return media.ResilientStats{Down: a.down}
}

func (a *downAudio) set(down int) { a.mu.Lock(); a.down = down; a.mu.Unlock() }

func TestLEDShowsASoundCardThatWentAway(t *testing.T) {
	audio := &downAudio{}
	r := newRigWithAudio(t, routingYAML, monday, audio)
	r.sip <- RegistrationEvent{State: "registered", Registrar: "127.0.0.1"}
	r.sync()
	audio.set(1)
	r.advance(audioPoll - time.Millisecond)
	if got := r.led.Pattern(); got != gpio.PatternRegistered {
		t.Fatalf("status LED %q before the health poll", got)
	}
	r.advance(time.Millisecond)
	if got := r.led.Pattern(); got != gpio.PatternError {
		t.Fatalf("status LED %q with the sound card down", got)
	}
	audio.set(0)
	r.advance(audioPoll)
	if got := r.led.Pattern(); got != gpio.PatternRegistered {
		t.Fatalf("status LED %q once the sound card is back", got)
	}
}
