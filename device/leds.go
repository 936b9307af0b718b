package device

import (
	"time"

	"intercom/gpio"
)

// audioPoll is how often the LEDs look at the sound card's health, which
// changes without an event.
const audioPoll = 5 * time.Second

// ledPattern is what a status LED shows: the door and the call first, then
// faults, then the registration.
func (s *Station) ledPattern() gpio.Pattern {
	switch {
	case s.clock.Now().Before(s.doorOpenTill):
		return gpio.PatternDoorOpen
	case s.state == stateCalling || s.state == stateRinging:
		return gpio.PatternCalling
	case s.state == stateActive:
		return gpio.PatternInCall
	case s.faulty():
		return gpio.PatternError
	case s.reg.State == "registered" || s.reg.State == "disabled":
		return gpio.PatternRegistered
	default:
		return gpio.PatternUnregistered
	}
}

// faulty reports trouble that needs an installer: registration refused or
// unreachable, a sound card that cannot be opened or went away, a dead input.
func (s *Station) faulty() bool {
	p := s.policy
	return p.regFailed || p.audioFailed || p.inputFailed ||
		p.watchAudio && s.audio.Stats().Down > 0
}

// illumination is what a button-illumination LED shows: lit so visitors
// find the button, blinking while a call rings.
func (s *Station) illumination() gpio.Pattern {
	if s.state == stateCalling || s.state == stateRinging {
		return gpio.PatternCalling
	}
	return gpio.PatternOn
}

func (s *Station) updateLEDs() {
	// Every registration change ends here. A failed registration stays a
	// fault through the retries (each first reports "registering") until
	// one succeeds, so the LED does not alternate between two patterns.
	switch s.reg.State {
	case "failed":
		s.policy.regFailed = true
	case "registered", "disabled":
		s.policy.regFailed = false
	}
	status, lit := s.ledPattern(), s.illumination()
	for name, l := range s.leds {
		p := status
		if s.ledRole(name) == "illumination" {
			p = lit
		}
		if l.Pattern() != p {
			l.Set(p)
		}
	}
}

func (s *Station) ledRole(name string) string {
	for _, lc := range s.cfg.LEDs {
		if lc.Name == name {
			return lc.Role
		}
	}
	return "status"
}

// watchAudioHealth re-reads the sound card's health every audioPoll while
// the loop runs; the chain ends when post drops its work after Run.
func (s *Station) watchAudioHealth() {
	if !s.policy.watchAudio {
		return
	}
	s.clock.AfterFunc(audioPoll, func() {
		s.post(func() {
			s.updateLEDs()
			s.watchAudioHealth()
		})
	})
}

// openMedia opens a call's media, noting for the LEDs whether the sound
// card could be opened.
func (s *Station) openMedia() (Stream, error) {
	st, err := s.media.Open(s.mediaIP)
	s.policy.audioFailed = err != nil
	if err != nil {
		s.updateLEDs()
	}
	return st, err
}

// inputFailed reports an input whose Run gave up; it stays failed.
func (s *Station) inputFailed(name string, err error) {
	s.policy.inputFailed = true
	s.fail("input "+name, err)
	s.updateLEDs()
}
