package device

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/device/api"
	"intercom/device/config"
	"intercom/gpio"
	"intercom/media/tone"
)

// fakeSwitch is an input the test opens and closes; its changes reach the
// station through Run, like a debounced pin's.
type fakeSwitch struct {
	name  string
	ready chan struct{} // closed once Run has the station's channel

	mu     sync.Mutex
	active bool
	out    chan<- gpio.Change
}

func newFakeSwitch(name string, active bool) *fakeSwitch {
	return &fakeSwitch{name: name, active: active, ready: make(chan struct{})}
}

func (f *fakeSwitch) Run(ctx context.Context, out chan<- gpio.Change) error {
	f.mu.Lock()
	f.out = out
	f.mu.Unlock()
	close(f.ready)
	<-ctx.Done()
	return nil
}

func (f *fakeSwitch) Active() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active
}

func (f *fakeSwitch) set(active bool) {
	<-f.ready
	f.mu.Lock()
	f.active = active
	out := f.out
	f.mu.Unlock()
	out <- gpio.Change{Name: f.name, Active: active}
}

// fakeLatch is a bistable relay.
type fakeLatch struct {
	mu      sync.Mutex
	on      bool
	toggles int
	pulses  []time.Duration
}

func (r *fakeLatch) Toggle() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = !r.on
	r.toggles++
	return nil
}

func (r *fakeLatch) Pulse(d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulses = append(r.pulses, d)
	return nil
}

func (r *fakeLatch) Active() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.on
}

func (r *fakeLatch) Cycles() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint64(r.toggles)
}

func (r *fakeRelay) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pulses)
}

const rolesYAML = `
sip: {registrar: 127.0.0.1, user: "100", password: pw}
calls:
  hangup_after_door_open: 0s
gpio: {driver: sim}
buttons:
  - {name: bell, pin: GPIO17, call: ["sip:201@pbx", "sip:202@pbx"]}
relays:
  - {name: door, pin: GPIO27, pulse: 3s, max_on: 10s}
  - {name: gate, pin: GPIO26, pulse: 2s, max_on: 10s}
inputs:
  - {name: contact, pin: GPIO5, role: door_sensor, relay: door, held_open: 60s}
  - {name: exit, pin: GPIO6, role: exit_button}
  - {name: lid, pin: GPIO13, role: tamper, block_relays: true}
  - {name: spare, pin: GPIO19}
door:
  codes: [{code: "1234", relay: door}]
audio: {backend: "null"}
`

// roleHarness is a station with the inputs of rolesYAML (or a variant).
type roleHarness struct {
	*harness
	gate                      *fakeRelay
	contact, exit, lid, spare *fakeSwitch
}

// newRoleHarness starts the station; the inputs named in active are active
// from the start.
func newRoleHarness(t *testing.T, yaml string, relays map[string]Relay, active ...string) *roleHarness {
	t.Helper()
	h := &roleHarness{
		gate:    &fakeRelay{},
		contact: newFakeSwitch("contact", slices.Contains(active, "contact")), exit: newFakeSwitch("exit", false),
		lid: newFakeSwitch("lid", slices.Contains(active, "lid")), spare: newFakeSwitch("spare", false),
	}
	h.harness = newHarnessWith(t, yaml, func(hh *harness, c *Config) {
		c.Relays = relays
		if relays == nil {
			c.Relays = map[string]Relay{"door": hh.relay, "gate": h.gate}
		}
		c.Inputs = map[string]Input{"contact": h.contact, "exit": h.exit, "lid": h.lid, "spare": h.spare}
	})
	return h
}

// flip changes an input and waits until the station has acted on it.
func (h *roleHarness) flip(sw *fakeSwitch, active bool) {
	h.t.Helper()
	sw.set(active)
	for {
		ev := h.expectEvent("input")
		if ev.Data["name"] == sw.name && ev.Data["active"] == active {
			break
		}
	}
	h.sync()
}

func (h *roleHarness) expectAlarm(reason string) api.Event {
	h.t.Helper()
	ev := h.expectEvent("alarm")
	if ev.Data["reason"] != reason {
		h.t.Fatalf("alarm %v, want reason %q", ev.Data, reason)
	}
	return ev
}

func TestDoorHeldOpenAlarm(t *testing.T) {
	h := newRoleHarness(t, rolesYAML, nil)
	if err := h.st.PulseRelay(context.Background(), "door", 0); err != nil {
		t.Fatal(err)
	}
	h.flip(h.contact, true)
	h.clock.Advance(59 * time.Second)
	h.noEvent("alarm")
	h.clock.Advance(time.Second)
	ev := h.expectAlarm("held_open")
	if ev.Data["input"] != "contact" || ev.Data["for"] != "1m0s" {
		t.Fatalf("held-open alarm %v", ev.Data)
	}

	// Closed in time: no alarm, however long the clock runs afterwards.
	h.flip(h.contact, false)
	if err := h.st.PulseRelay(context.Background(), "door", 0); err != nil {
		t.Fatal(err)
	}
	h.flip(h.contact, true)
	h.clock.Advance(30 * time.Second)
	h.flip(h.contact, false)
	h.clock.Advance(2 * time.Minute)
	h.noEvent("alarm")
}

func TestDoorHeldOpenAtStart(t *testing.T) {
	h := newRoleHarness(t, rolesYAML, nil, "contact")
	h.sync()
	h.clock.Advance(time.Minute)
	h.expectAlarm("held_open")
}

func TestDoorOpenedWithoutUnlockAlarm(t *testing.T) {
	h := newRoleHarness(t, rolesYAML, nil)
	h.flip(h.contact, true)
	ev := h.expectAlarm("opened_without_unlock")
	if ev.Data["input"] != "contact" {
		t.Fatalf("alarm %v", ev.Data)
	}
	h.flip(h.contact, false)

	// Another door's relay does not unlock this one.
	if err := h.st.PulseRelay(context.Background(), "gate", 0); err != nil {
		t.Fatal(err)
	}
	h.flip(h.contact, true)
	h.expectAlarm("opened_without_unlock")
	h.flip(h.contact, false)

	// The grace window ends 5 s after the 3 s pulse.
	if err := h.st.PulseRelay(context.Background(), "door", 0); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(8*time.Second - time.Millisecond)
	h.flip(h.contact, true)
	h.flip(h.contact, false)
	h.noEvent("alarm")
	h.clock.Advance(time.Millisecond)
	h.flip(h.contact, true)
	h.expectAlarm("opened_without_unlock")
}

func TestNoAlarmAfterCodeUnlock(t *testing.T) {
	h := newRoleHarness(t, rolesYAML, nil)
	_, onDigit := h.answerBell()
	h.keys(onDigit, "1234")
	h.expectEvent("door_opened")
	h.clock.Advance(4 * time.Second)
	h.flip(h.contact, true)
	h.flip(h.contact, false)
	h.noEvent("alarm")
}

func TestDoorSensorWithoutRelayAcceptsAnyRelay(t *testing.T) {
	h := newRoleHarness(t, strings.Replace(rolesYAML, "relay: door, held_open: 60s", "held_open: 0s", 1), nil)
	if err := h.st.PulseRelay(context.Background(), "gate", 0); err != nil {
		t.Fatal(err)
	}
	h.flip(h.contact, true)
	h.clock.Advance(10 * time.Minute) // held_open 0s: never an alarm
	h.noEvent("alarm")
}

func TestExitButtonPulsesRelay(t *testing.T) {
	h := newRoleHarness(t, rolesYAML, nil)
	h.flip(h.exit, true)
	ev := h.expectEvent("door_opened")
	if ev.Data["relay"] != "door" || ev.Data["source"] != "exit_button" {
		t.Fatalf("door_opened %v, want the first relay from the exit button", ev.Data)
	}
	if h.relay.count() != 1 || h.relay.pulses[0] != 3*time.Second {
		t.Fatalf("relay pulses %v", h.relay.pulses)
	}
	h.flip(h.exit, false)
	// Leaving through the opened door raises no alarm.
	h.flip(h.contact, true)
	h.noEvent("alarm")
	h.flip(h.contact, false)

	// During a call, and during a DTMF lockout, the call goes on.
	h.clock.Advance(3 * time.Second) // the LED's door-open pattern ends
	h.sync()
	_, onDigit := h.answerBell()
	h.keys(onDigit, "999999999999")
	h.expectEvent("lockout")
	h.flip(h.exit, true)
	h.expectEvent("door_opened")
	if got := h.relay.count(); got != 2 {
		t.Fatalf("%d relay pulses, want 2", got)
	}
	if got := h.callState(); got != "active" {
		t.Fatalf("call %q after the exit button, want active", got)
	}
}

func TestTamperBlocksRelaysUntilCleared(t *testing.T) {
	h := newRoleHarness(t, rolesYAML, nil)
	h.flip(h.lid, true)
	if ev := h.expectAlarm("tamper"); ev.Data["input"] != "lid" || ev.Data["blocking"] != true {
		t.Fatalf("tamper alarm %v", ev.Data)
	}
	st, _ := h.st.Status(context.Background())
	if in := st.Inputs["lid"]; !in.Active || in.Role != "tamper" || in.State != "tampered" {
		t.Errorf("status of the tamper input %+v", in)
	}

	err := h.st.PulseRelay(context.Background(), "door", 0)
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), `tamper input "lid" is active`) {
		t.Fatalf("API pulse while tampered: %v", err)
	}
	if ev := h.expectAlarm("relay_blocked"); ev.Data["relay"] != "door" || ev.Data["source"] != "api" {
		t.Fatalf("blocked alarm %v", ev.Data)
	}

	_, onDigit := h.answerBell()
	h.keys(onDigit, "1234")
	h.expectAlarm("relay_blocked")
	if ev := h.expectEvent("code_rejected"); ev.Data["reason"] != "relays blocked by tamper" {
		t.Fatalf("code_rejected %v", ev.Data)
	}
	if got := h.stream.played(); len(got) != 1 || got[0] != tone.Rejected().String() {
		t.Fatalf("tones %q, want the rejection", got)
	}
	if got := h.relay.count(); got != 0 {
		t.Fatalf("%d relay pulses while tampered", got)
	}

	// Someone inside still gets out.
	h.flip(h.exit, true)
	h.expectEvent("door_opened")
	if got := h.relay.count(); got != 1 {
		t.Fatalf("exit button while tampered: %d pulses", got)
	}

	h.flip(h.lid, false)
	h.keys(onDigit, "1234")
	if ev := h.expectEvent("door_opened"); ev.Data["source"] != "dtmf" {
		t.Fatalf("door_opened %v", ev.Data)
	}
	if err := h.st.PulseRelay(context.Background(), "gate", 0); err != nil {
		t.Fatalf("API pulse after the tamper cleared: %v", err)
	}
	if h.relay.count() != 2 || h.gate.count() != 1 {
		t.Fatalf("pulses door %v gate %v", h.relay.pulses, h.gate.pulses)
	}
}

func TestTamperActiveAtStartBlocks(t *testing.T) {
	h := newRoleHarness(t, rolesYAML, nil, "lid")
	h.expectAlarm("tamper")
	if err := h.st.PulseRelay(context.Background(), "door", 0); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("API pulse with the lid open since start: %v", err)
	}
}

func TestTamperWithoutBlockingOnlyAlarms(t *testing.T) {
	h := newRoleHarness(t, strings.Replace(rolesYAML, "block_relays: true", "block_relays: false", 1), nil)
	h.flip(h.lid, true)
	if ev := h.expectAlarm("tamper"); ev.Data["blocking"] != false {
		t.Fatalf("tamper alarm %v", ev.Data)
	}
	if err := h.st.PulseRelay(context.Background(), "door", 0); err != nil {
		t.Fatal(err)
	}
}

func TestGenericInputOnlyReportsEvents(t *testing.T) {
	h := newRoleHarness(t, rolesYAML, nil)
	h.spare.set(true)
	ev := h.expectEvent("input")
	if ev.Data["name"] != "spare" || ev.Data["active"] != true || ev.Data["role"] != "generic" {
		t.Fatalf("input event %v", ev.Data)
	}
	if _, ok := ev.Data["state"]; ok {
		t.Errorf("generic input has a state: %v", ev.Data)
	}
	h.noEvent("alarm")
	h.noEvent("door_opened")

	h.flip(h.contact, true)
	st, _ := h.st.Status(context.Background())
	if in := st.Inputs["contact"]; !in.Active || in.Role != "door_sensor" || in.State != "open" {
		t.Errorf("door sensor status %+v", in)
	}
	if in := st.Inputs["spare"]; !in.Active || in.Role != "generic" || in.State != "" {
		t.Errorf("generic input status %+v", in)
	}
}

func TestLatchRelayToggles(t *testing.T) {
	yaml := strings.Replace(rolesYAML, "{name: door, pin: GPIO27, pulse: 3s, max_on: 10s}", "{name: door, pin: GPIO27, mode: latch, pulse: 3s, max_on: 10s}", 1)
	latch := &fakeLatch{}
	h := newRoleHarness(t, yaml, map[string]Relay{"door": latch, "gate": &fakeRelay{}})
	_, onDigit := h.answerBell()
	h.keys(onDigit, "1234")
	h.expectEvent("door_opened")
	if !latch.Active() || latch.toggles != 1 || len(latch.pulses) != 0 {
		t.Fatalf("after the first code: on %v, toggles %d, pulses %v", latch.Active(), latch.toggles, latch.pulses)
	}
	// While latched open, the door may open at any time.
	h.clock.Advance(time.Minute)
	h.flip(h.contact, true)
	h.flip(h.contact, false)
	h.noEvent("alarm")

	// A tamper alarm does not stop the door being locked again.
	h.flip(h.lid, true)
	h.keys(onDigit, "1234")
	h.noEvent("door_opened")
	if latch.Active() || latch.toggles != 2 {
		t.Fatalf("after the second code: on %v, toggles %d", latch.Active(), latch.toggles)
	}
	h.noEvent("code_rejected")
}

func TestLatchNeedsToggle(t *testing.T) {
	yaml := strings.Replace(rolesYAML, "{name: door, pin: GPIO27, pulse: 3s, max_on: 10s}", "{name: door, pin: GPIO27, mode: latch, pulse: 3s, max_on: 10s}", 1)
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Config: cfg, Phone: &fakePhone{}, Media: &fakeMedia{},
		Relays: map[string]Relay{"door": &fakeRelay{}, "gate": &fakeRelay{}}, Buttons: map[string]Input{"bell": fakeInput{}}})
	if err == nil || !strings.Contains(err.Error(), "latch") {
		t.Fatalf("New with a latch relay that cannot toggle: %v", err)
	}
}

func TestAlarmsAreCounted(t *testing.T) {
	h := newRoleHarness(t, rolesYAML, nil)
	h.flip(h.contact, true)
	h.expectAlarm("opened_without_unlock")
	var m strings.Builder
	if err := h.st.WriteMetrics(context.Background(), &m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.String(), "intercom_alarms_total 1\n") {
		t.Errorf("metrics lack the alarm count:\n%s", m.String())
	}
}
