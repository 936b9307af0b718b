package device

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"intercom/device/api"
	"intercom/device/config"
	"intercom/gpio"
	"intercom/internal/clock"
)

// unlockGrace is how long after a relay's pulse ended a door may still open
// without an alarm: people push the door a moment after the buzzer stops.
const unlockGrace = 5 * time.Second

// sourceExitButton marks door openings from an exit button, which work
// whatever blocks codes and the API: someone inside must always get out.
const sourceExitButton = "exit_button"

// errBlocked is wrapped by openings refused while a tamper input blocks
// the relays.
var errBlocked = errors.New("relays blocked by tamper")

// toggler is a bistable (latched) relay.
type toggler interface {
	Toggle() error
}

var _ toggler = (*gpio.Relay)(nil)

// roleInput is the state of one input with a role; it belongs to the loop.
type roleInput struct {
	cfg    config.Input
	active bool
	gen    uint64      // identifies the held-open timer, so stale ones do nothing
	timer  clock.Timer // held-open alarm; nil when none is armed
}

// roles holds the inputs' policies: door sensors, exit buttons, tamper.
type roles struct {
	inputs map[string]*roleInput
	// unlockedTill is, per relay, when the window in which a door may open
	// without an alarm ends.
	unlockedTill map[string]time.Time
	// switching holds the remote relays whose request is running.
	switching map[string]bool
}

// initRoles checks the role inputs' and latch relays' wiring.
func (s *Station) initRoles() error {
	s.roles = &roles{inputs: map[string]*roleInput{}, unlockedTill: map[string]time.Time{}, switching: map[string]bool{}}
	for _, ic := range s.cfg.Inputs {
		if ic.Relay != "" {
			if _, ok := s.relays[ic.Relay]; !ok {
				return fmt.Errorf("device: input %q: relay %q: no such relay", ic.Name, ic.Relay)
			}
		}
		s.roles.inputs[ic.Name] = &roleInput{cfg: ic}
	}
	for _, rc := range s.cfg.Relays {
		if r, ok := s.relays[rc.Name]; ok && rc.Mode == "latch" {
			if _, ok := r.(toggler); !ok {
				return fmt.Errorf("device: relay %q: mode latch needs a relay that toggles", rc.Name)
			}
		}
	}
	return nil
}

// startRoles takes the inputs' levels at start: a tamper switch already
// open blocks the relays and a door already open starts its held-open timer.
func (s *Station) startRoles() {
	names := make([]string, 0, len(s.roles.inputs))
	for n := range s.roles.inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ri, in := s.roles.inputs[n], s.inputs[n]
		if in == nil || !in.Active() {
			continue
		}
		ri.active = true
		switch ri.cfg.Role {
		case "door_sensor":
			s.armHeldOpen(ri)
		case "tamper":
			s.alarm(n, "tamper", map[string]any{"blocking": ri.cfg.BlockRelays})
		}
	}
}

// onRoleInput applies an input's role to a debounced change.
func (s *Station) onRoleInput(c gpio.Change) {
	ri, ok := s.roles.inputs[c.Name]
	if !ok {
		s.emit("input", map[string]any{"name": c.Name, "active": c.Active})
		return
	}
	ri.active = c.Active
	data := map[string]any{"name": c.Name, "active": c.Active, "role": ri.cfg.Role}
	if st := ri.state(); st != "" {
		data["state"] = st
	}
	s.emit("input", data)
	switch ri.cfg.Role {
	case "door_sensor":
		s.doorSensor(ri)
	case "exit_button":
		if c.Active {
			s.log.Info("exit button pressed", "input", c.Name, "relay", ri.cfg.Relay)
			failed := func(err error) {
				if err != nil {
					s.fail("exit button "+c.Name, err)
				}
			}
			if err := s.openDoorThen(ri.cfg.Relay, 0, sourceExitButton, failed); err != nil {
				failed(err)
			}
		}
	case "tamper":
		if c.Active {
			s.log.Warn("tamper switch open", "input", c.Name, "blocking", ri.cfg.BlockRelays)
			s.alarm(c.Name, "tamper", map[string]any{"blocking": ri.cfg.BlockRelays})
		} else {
			s.log.Info("tamper switch closed again", "input", c.Name)
		}
	}
}

// state names what the input reports for its role; "" for roles without one.
func (ri *roleInput) state() string {
	switch {
	case ri.cfg.Role == "door_sensor" && ri.active:
		return "open"
	case ri.cfg.Role == "door_sensor":
		return "closed"
	case ri.cfg.Role == "tamper" && ri.active:
		return "tampered"
	case ri.cfg.Role == "tamper":
		return "ok"
	}
	return ""
}

func (s *Station) doorSensor(ri *roleInput) {
	if !ri.active {
		s.disarmHeldOpen(ri)
		return
	}
	if !s.unlocked(ri.cfg.Relay) {
		s.log.Warn("door opened without an unlock", "input", ri.cfg.Name)
		s.alarm(ri.cfg.Name, "opened_without_unlock", nil)
	}
	s.armHeldOpen(ri)
}

// unlocked reports whether the door's relay (any relay when relay is "")
// is on, or was pulsed recently enough that the door may open now.
func (s *Station) unlocked(relay string) bool {
	now := s.clock.Now()
	for name, r := range s.relays {
		if relay != "" && name != relay {
			continue
		}
		if r.Active() || now.Before(s.roles.unlockedTill[name]) {
			return true
		}
	}
	return false
}

func (s *Station) armHeldOpen(ri *roleInput) {
	s.disarmHeldOpen(ri)
	d := ri.cfg.HeldOpen
	if d <= 0 {
		return
	}
	gen := ri.gen
	ri.timer = s.clock.AfterFunc(d, func() {
		s.post(func() {
			if gen != ri.gen || !ri.active {
				return
			}
			ri.timer = nil
			s.log.Warn("door held open", "input", ri.cfg.Name, "for", d)
			s.alarm(ri.cfg.Name, "held_open", map[string]any{"for": d.String()})
		})
	})
}

func (s *Station) disarmHeldOpen(ri *roleInput) {
	ri.gen++
	if ri.timer != nil {
		ri.timer.Stop()
		ri.timer = nil
	}
}

// alarm emits an alarm event; reason is held_open, opened_without_unlock,
// tamper or relay_blocked.
func (s *Station) alarm(input, reason string, extra map[string]any) {
	s.metrics.alarms.Add(1)
	data := map[string]any{"input": input, "reason": reason}
	for k, v := range extra {
		data[k] = v
	}
	s.emit("alarm", data)
}

// blockedBy returns the active tamper input that blocks the relays, or "".
func (s *Station) blockedBy() string {
	var by []string
	for n, ri := range s.roles.inputs {
		if ri.cfg.Role == "tamper" && ri.cfg.BlockRelays && ri.active {
			by = append(by, n)
		}
	}
	if len(by) == 0 {
		return ""
	}
	sort.Strings(by)
	return by[0]
}

// openDoorThen opens the door on relay name for d, its pulse when 0. A
// failure found before the relay switches is returned and then is not
// called. Otherwise then, when not nil, runs once on the loop with the
// outcome: before openDoorThen returns for a pin relay, when the request
// ends for a remote one, which is switched off the loop so that a slow
// relay device never stalls the station. A remote failure without then
// becomes an error event. An opening of a remote relay whose request is
// still running is dropped: the running one opens the door.
func (s *Station) openDoorThen(name string, d time.Duration, source string, then func(error)) error {
	r, ok := s.relays[name]
	if !ok {
		return fmt.Errorf("relay %q: %w", name, api.ErrNotFound)
	}
	if d == 0 {
		d = s.relayPulse(name)
	}
	latch := s.relayMode(name) == "latch"
	if err := s.checkBlocked(name, r, latch, source); err != nil {
		return err
	}
	finish := func(on bool, err error) {
		if err == nil {
			s.relaySwitched(name, d, on, source)
		}
		switch {
		case then != nil:
			then(err)
		case err != nil:
			s.fail("open door", err)
		}
	}
	if !s.remoteRelay(name) {
		on, err := switchRelay(name, r, latch, d)
		if err != nil {
			return err
		}
		finish(on, nil)
		return nil
	}
	if s.roles.switching[name] {
		s.log.Info("door opening ignored: relay request already running", "relay", name, "source", source)
		return nil
	}
	s.roles.switching[name] = true
	s.wg.Go(func() {
		on, err := switchRelay(name, r, latch, d)
		s.post(func() {
			delete(s.roles.switching, name)
			finish(on, err)
		})
	})
	return nil
}

// remoteRelay reports whether relay name is switched over the network (it
// has a url): its request may take seconds, pins switch at once.
func (s *Station) remoteRelay(name string) bool {
	for _, r := range s.cfg.Relays {
		if r.Name == name {
			return r.URL != ""
		}
	}
	return false
}

// checkBlocked refuses an opening that a tamper input blocks, with
// errBlocked and an alarm. Switching a latched relay off is never blocked:
// it locks the door.
func (s *Station) checkBlocked(name string, r Relay, latch bool, source string) error {
	by := s.blockedBy()
	if by == "" || source == sourceExitButton || (latch && r.Active()) {
		return nil
	}
	s.log.Warn("relay opening refused: tamper input active", "relay", name, "source", source, "input", by)
	s.alarm(by, "relay_blocked", map[string]any{"relay": name, "source": source})
	return fmt.Errorf("device: relay %q: %w: tamper input %q is active (block_relays): %w", name, errBlocked, by, api.ErrConflict)
}

// switchRelay drives relay name for a door opening of d: a pulse, or a
// toggle for a latch relay. It reports whether the relay is now on. It
// touches only the relay, so it may run off the loop.
func switchRelay(name string, r Relay, latch bool, d time.Duration) (bool, error) {
	if latch {
		if err := r.(toggler).Toggle(); err != nil {
			return false, fmt.Errorf("device: toggle relay %q: %w", name, err)
		}
		return r.Active(), nil
	}
	if err := r.Pulse(d); err != nil {
		return false, fmt.Errorf("device: pulse relay %q: %w", name, err)
	}
	return true, nil
}

// relaySwitched records a relay switched for a door opening of d: the door
// opened when on, a latched relay locked it again otherwise.
func (s *Station) relaySwitched(name string, d time.Duration, on bool, source string) {
	if !on {
		s.log.Info("latched relay switched off", "relay", name, "source", source)
		s.doorOpenTill = s.clock.Now()
		s.updateLEDs()
		return
	}
	s.roles.unlockedTill[name] = s.clock.Now().Add(d + unlockGrace)
	s.doorOpened(name, d, source)
}

func (s *Station) relayMode(name string) string {
	for _, r := range s.cfg.Relays {
		if r.Name == name {
			return r.Mode
		}
	}
	return ""
}

// doorRefused reports a right code that could not open the door.
func (s *Station) doorRefused(err error) {
	if !errors.Is(err, errBlocked) {
		s.fail("open door", err)
		return
	}
	s.metrics.codesRejected.Add(1)
	s.emit("code_rejected", map[string]any{"reason": "relays blocked by tamper"})
	s.tone(s.prompts.Rejected)
}

// inputStatus reports one input for GET /api/v1/status.
func (s *Station) inputStatus(name string, active bool) api.InputStatus {
	st := api.InputStatus{Active: active}
	if ri, ok := s.roles.inputs[name]; ok {
		view := *ri
		view.active = active
		st.Role, st.State = ri.cfg.Role, view.state()
	}
	return st
}
