package device

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"intercom/media/tone"
	"intercom/sipagent"
)

// callPolicy is the loop-owned state of the call rules that span events:
// the station's time zone for day/night routing, the outgoing call being
// rung, what each button interrupted, and the faults the LEDs show.
type callPolicy struct {
	loc *time.Location
	out *outgoing
	// pressedIn holds, per button, the generation of the call in progress
	// when it went down; 0 when it went down while idle.
	pressedIn map[string]uint64
	// watchAudio is set when New was given an AudioHealth to poll.
	watchAudio  bool
	regFailed   bool // registration failed and has not succeeded since
	audioFailed bool // the last attempt to open the sound card failed
	inputFailed bool // a button or input stopped reporting
}

// outgoing is a call being rung: its targets in ring groups, one group at
// a time, each for at most calls.ring_timeout.
type outgoing struct {
	ctx      context.Context // the call's; each attempt derives from it
	stream   *earlyStream
	groups   [][]string
	parallel bool
	next     int                // index of the group to ring next
	attempt  uint64             // identifies the Dial in flight
	cancel   context.CancelFunc // stops the Dial in flight
	errs     []error            // why earlier groups did not answer
}

func (s *Station) initPolicy() error {
	p := &callPolicy{loc: time.Local, pressedIn: map[string]uint64{}, watchAudio: s.audio != nil}
	if tz := s.cfg.Device.Timezone; tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return fmt.Errorf("device: device.timezone: %w", err)
		}
		p.loc = loc
	}
	s.policy = p
	return nil
}

// pressButton calls the button's targets for the current time of day, or
// applies calls.button_during_call when a call is already under way.
func (s *Station) pressButton(name string) {
	s.emit("input", map[string]any{"name": name, "active": true, "kind": "button"})
	if s.state != stateIdle {
		s.policy.pressedIn[name] = s.gen
		if s.cfg.Calls.ButtonDuringCall == "hangup" {
			s.endCall("button pressed", true)
		}
		return
	}
	s.policy.pressedIn[name] = 0
	for i := range s.cfg.Buttons {
		if b := &s.cfg.Buttons[i]; b.Name == name {
			targets, ring := b.Route(s.clock.Now().In(s.policy.loc))
			s.log.Info("bell pressed", "button", name, "call", targets, "ring", ring)
			s.dial(targets, ring == "parallel")
			return
		}
	}
}

// longPress reports a button held for its long_press, and hangs up the
// call that was in progress when the press began. A call the press itself
// started keeps going: holding the bell a little long is no reason to drop
// the call it placed.
func (s *Station) longPress(name string) {
	s.emit("input", map[string]any{"name": name, "active": true, "kind": "button", "long": true})
	if gen := s.policy.pressedIn[name]; gen != 0 && gen == s.gen {
		s.endCall("button held", true)
	}
}

// dial rings targets: all at once when parallel (the first answer wins,
// sipagent cancels the others), else one after another, each for at most
// calls.ring_timeout. The station keeps the ring timeout itself, on its
// clock, so a ring group ends on time whatever the SIP side does.
func (s *Station) dial(targets []string, parallel bool) {
	if len(targets) == 0 {
		s.fail("call", errors.New("device: no targets to call"))
		return
	}
	inner, err := s.openMedia()
	if err != nil {
		s.fail("open media", err)
		return
	}
	stream := &earlyStream{Stream: inner}
	gen := s.begin(stateCalling, stream, targets[0], true)
	ctx, cancel := context.WithCancel(s.runCtx)
	s.cancelCall = cancel
	s.metrics.callsOut.Add(1)
	groups := [][]string{targets}
	if !parallel {
		groups = make([][]string, len(targets))
		for i, t := range targets {
			groups[i] = []string{t}
		}
	}
	s.policy.out = &outgoing{ctx: ctx, stream: stream, groups: groups, parallel: parallel}
	s.ringNext(gen)
}

// ringNext rings the next group of the outgoing call gen.
func (s *Station) ringNext(gen uint64) {
	out := s.policy.out
	group := out.groups[out.next]
	out.next++
	out.attempt++
	attempt := out.attempt
	ctx, cancel := context.WithCancel(out.ctx)
	out.cancel = cancel
	s.callRemote = group[0]
	timeout := s.cfg.Calls.RingTimeout
	req := sipagent.DialRequest{
		Targets:     group,
		Parallel:    out.parallel,
		RingTimeout: timeout,
		Media:       s.offer(out.stream.LocalAddr()),
		OnRinging: func(target string) {
			s.post(func() {
				if s.ringing(gen, attempt) {
					s.stream.StartRingback()
					s.emit("ringing", map[string]any{"direction": "outgoing", "remote": target})
				}
			})
		},
		OnEarlyMedia: func(target string, ans sipagent.MediaAnswer) {
			s.post(func() {
				if s.ringing(gen, attempt) {
					s.playEarly(gen, out.stream, target, ans)
				}
			})
		},
	}
	if timeout > 0 {
		s.after(timeout, gen, func() {
			if s.ringing(gen, attempt) {
				s.ringFailed(gen, fmt.Errorf("%s: %w within %v", strings.Join(group, ", "), sipagent.ErrNoAnswer, timeout))
			}
		})
	}
	s.wg.Go(func() {
		call, err := s.phone.Dial(ctx, req)
		s.post(func() { s.dialed(gen, attempt, call, err) })
	})
}

// ringing reports whether attempt is still ringing for the call gen.
func (s *Station) ringing(gen, attempt uint64) bool {
	return gen == s.gen && s.state == stateCalling && s.policy.out != nil && s.policy.out.attempt == attempt
}

func (s *Station) dialed(gen, attempt uint64, call Call, err error) {
	if !s.ringing(gen, attempt) {
		// Answered after a timeout, a hang-up or another target's answer.
		if call != nil {
			s.hangupAsync(call)
		}
		return
	}
	if err != nil {
		s.ringFailed(gen, err)
		return
	}
	s.policy.out = nil
	s.call = call
	s.callRemote = call.Remote()
	s.established(call.Media())
}

// ringFailed moves on to the next ring group, or ends the call when none
// is left and tells the visitor why.
func (s *Station) ringFailed(gen uint64, err error) {
	out := s.policy.out
	out.cancel()
	out.errs = append(out.errs, err)
	if out.next < len(out.groups) {
		s.log.Info("no answer, ringing the next target", "err", err, "next", out.groups[out.next])
		out.stream.endEarly()
		s.ringNext(gen)
		return
	}
	s.policy.out = nil
	reasons := make([]string, len(out.errs))
	for i, e := range out.errs {
		reasons[i] = e.Error()
	}
	all := errors.Join(out.errs...)
	s.log.Info("call failed", "err", strings.Join(reasons, "; "))
	s.endCall("no answer: "+strings.Join(reasons, "; "), false)
	s.announceFailure(all)
}

// limitDuration hangs up the call gen after calls.max_duration, with a
// warning tone at both ends calls.max_duration_warning before.
func (s *Station) limitDuration(gen uint64) {
	d := s.cfg.Calls.MaxDuration
	if d <= 0 {
		return
	}
	if w := s.cfg.Calls.MaxDurationWarning; w > 0 && w < d {
		s.after(d-w, gen, func() {
			s.log.Info("call reaches its maximum duration soon", "in", w)
			s.tone(timeWarning())
		})
	}
	s.after(d, gen, func() { s.endCall("maximum call duration reached", true) })
}

// timeWarning tells both ends that the call is about to be cut: three
// short high beeps, played once.
func timeWarning() tone.Spec {
	beep := tone.Step{Freqs: []float64{1400}, On: 150 * time.Millisecond, Off: 150 * time.Millisecond}
	return tone.Spec{Level: tone.DefaultLevel, Steps: []tone.Step{beep, beep, beep}}
}
