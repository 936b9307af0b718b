package device

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"intercom/device/api"
	"intercom/sipagent"
)

var _ api.Station = (*Station)(nil)

// Status reports the station for GET /api/v1/status.
func (s *Station) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	err := s.do(ctx, func() error {
		now := s.clock.Now()
		st = api.Status{
			Version: s.version,
			Uptime:  now.Sub(s.started).Truncate(time.Second).String(),
			Registration: api.Registration{
				State:     s.reg.State,
				Registrar: s.cfg.SIP.Registrar,
				Transport: cmp.Or(s.reg.Transport, s.cfg.SIP.Transport),
			},
			Call:    api.CallStatus{State: s.state.String(), Remote: s.callRemote},
			Relays:  map[string]api.RelayStatus{},
			Inputs:  map[string]api.InputStatus{},
			Buttons: map[string]api.InputStatus{},
			LEDs:    map[string]string{},
			Door:    api.DoorStatus{LockedOut: s.lock.locked(now)},
		}
		if s.reg.State == "registered" && !s.reg.Expires.IsZero() {
			st.Registration.ExpiresIn = max(s.reg.Expires.Sub(now), 0).Truncate(time.Second).String()
		}
		if s.reg.Err != nil {
			st.Registration.Error = s.reg.Err.Error()
		}
		if s.state != stateIdle {
			st.Call.Since = s.callSince.UTC().Format(time.RFC3339)
		}
		if s.reg.Addr.IsValid() {
			st.Registration.Address = s.reg.Addr.String()
		}
		if s.state == stateActive {
			st.Call.Direction = cmp.Or(s.callDirection, "sendrecv")
			st.Call.Hold = s.callDirection != "" && s.callDirection != "sendrecv"
		}
		if st.Door.LockedOut {
			st.Door.LockoutFor = s.lock.lockedUntil.Sub(now).Truncate(time.Second).String()
		}
		if s.audio != nil {
			a := s.audio.Stats()
			st.Audio = &api.AudioStatus{Xruns: a.Xruns, Failures: a.Failures, Reopens: a.Reopens, Down: a.Down}
		}
		for n, r := range s.relays {
			st.Relays[n] = api.RelayStatus{Active: r.Active(), Cycles: r.Cycles()}
		}
		for n, in := range s.inputs {
			st.Inputs[n] = s.inputStatus(n, in.Active())
		}
		for n, in := range s.buttons {
			st.Buttons[n] = api.InputStatus{Active: in.Active()}
		}
		for n, l := range s.leds {
			st.LEDs[n] = string(l.Pattern())
		}
		st.Media = s.mediaStatus()
		if d, ok := s.phone.(defenceReporter); ok {
			ds := d.DefenceStats()
			st.SIPDefence = &api.SIPDefenceStatus{RateLimited: ds.RateLimited, Scanners: ds.Scanners, Blocks: ds.Blocks, BlockedNow: ds.BlockedNow}
		}
		return nil
	})
	return st, err
}

// defenceReporter is a Phone that counts what its SIP defence against
// strangers dropped.
type defenceReporter interface {
	DefenceStats() sipagent.DefenceStats
}

var _ defenceReporter = SIPPhone{}

// DefenceStats reports the agent's defence against strangers.
func (p SIPPhone) DefenceStats() sipagent.DefenceStats { return p.Agent.DefenceStats() }

// mediaStatus reports the running call's audio; nil outside a call.
func (s *Station) mediaStatus() *api.MediaStatus {
	if s.state != stateActive || s.stream == nil || s.call == nil {
		return nil
	}
	ms, ok := s.stream.Stats()
	if !ok {
		return nil
	}
	ans := s.call.Media()
	ptime := ans.Ptime
	if ptime == 0 {
		ptime = s.cfg.Audio.Ptime
	}
	return &api.MediaStatus{
		Codec:              ans.Codec.Name,
		PtimeMS:            millis(ptime),
		PacketsSent:        ms.PacketsSent,
		PacketsReceived:    ms.PacketsReceived,
		Lost:               ms.NetworkLost,
		LossFraction:       ms.FractionLost,
		Late:               ms.PacketsLate,
		Concealed:          ms.Concealed,
		JitterMS:           millis(ms.Jitter),
		JitterTargetMS:     millis(ms.JitterTarget),
		RTTMS:              millis(ms.RTT),
		RemoteLost:         ms.RemoteLost,
		RemoteLossFraction: ms.RemoteFractionLost,
		RemoteJitterMS:     millis(ms.RemoteJitter),
		RTCPSent:           ms.RTCPSent,
		RTCPReceived:       ms.RTCPReceived,
		SRTP:               ans.SRTP.String(),
		SRTPRefused:        ms.Unauthenticated,
	}
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// PressButton acts as if the named button had been pressed.
func (s *Station) PressButton(ctx context.Context, name string) error {
	return s.do(ctx, func() error {
		if _, ok := s.buttons[name]; !ok {
			return fmt.Errorf("button %q: %w", name, api.ErrNotFound)
		}
		s.pressButton(name)
		return nil
	})
}

// PulseRelay opens the door on the named relay; d of zero means its pulse.
func (s *Station) PulseRelay(ctx context.Context, name string, d time.Duration) error {
	return s.do(ctx, func() error { return s.openDoor(name, d, "api") })
}

// Call calls uri, as a button with that one target would.
func (s *Station) Call(ctx context.Context, uri string) error {
	return s.do(ctx, func() error {
		if s.state != stateIdle {
			return fmt.Errorf("a call is already %s: %w", s.state, api.ErrConflict)
		}
		s.dial([]string{uri}, false)
		return nil
	})
}

// Hangup ends the call in any state.
func (s *Station) Hangup(ctx context.Context) error {
	return s.do(ctx, func() error {
		if s.state == stateIdle {
			return fmt.Errorf("no call to hang up: %w", api.ErrConflict)
		}
		s.endCall("hung up by API", true)
		return nil
	})
}

// SetSimPin drives a virtual input pin of the sim GPIO driver.
func (s *Station) SetSimPin(ctx context.Context, pin string, high bool) error {
	if s.sim == nil {
		return fmt.Errorf("virtual pins exist only with gpio.driver sim: %w", api.ErrNotFound)
	}
	return s.sim.Drive(pin, high)
}

// Subscribe returns a channel of events until cancel is called.
func (s *Station) Subscribe() (<-chan api.Event, func()) { return s.bus.Subscribe() }

// counters are the monotonically increasing figures of /metrics.
type counters struct {
	callsOut, callsIn, callsRefused, doorsOpened, codesRejected, lockouts, registrations, alarms atomic.Uint64
}

// WriteMetrics writes the Prometheus text exposition.
func (s *Station) WriteMetrics(ctx context.Context, w io.Writer) error {
	st, err := s.Status(ctx)
	if err != nil {
		return err
	}
	m := s.metrics
	ms := []metric{
		{"intercom_calls_outgoing_total", "Calls placed by the station.", "counter", float64(m.callsOut.Load())},
		{"intercom_calls_incoming_total", "Calls answered by the station.", "counter", float64(m.callsIn.Load())},
		{"intercom_calls_refused_total", "Incoming calls refused: caller not allowed, or media the station cannot answer.", "counter", float64(m.callsRefused.Load())},
		{"intercom_door_opened_total", "Relay pulses that opened a door.", "counter", float64(m.doorsOpened.Load())},
		{"intercom_codes_rejected_total", "Door code attempts rejected.", "counter", float64(m.codesRejected.Load())},
		{"intercom_lockouts_total", "Door code lockouts started.", "counter", float64(m.lockouts.Load())},
		{"intercom_alarms_total", "Alarms: door held open, opened without an unlock, tamper, blocked openings.", "counter", float64(m.alarms.Load())},
		{"intercom_registrations_total", "Successful SIP registrations after being unregistered.", "counter", float64(m.registrations.Load())},
		{"intercom_registered", "1 while registered (or peer-to-peer), else 0.", "gauge", b2f(st.Registration.State == "registered" || st.Registration.State == "disabled")},
		{"intercom_call_active", "1 while a call is up.", "gauge", b2f(st.Call.State == "active")},
		{"intercom_events_dropped_total", "Events dropped for slow subscribers.", "counter", float64(s.bus.dropped.Load())},
	}
	if a := st.Audio; a != nil {
		ms = append(ms,
			metric{"intercom_audio_xruns_total", "Sound-card overruns and underruns.", "counter", float64(a.Xruns)},
			metric{"intercom_audio_failures_total", "Failed sound-card transfers, opens and reopen attempts.", "counter", float64(a.Failures)},
			metric{"intercom_audio_reopens_total", "Sound-card streams reopened after a failure.", "counter", float64(a.Reopens)},
			metric{"intercom_audio_streams_down", "Sound-card streams waiting to be reopened.", "gauge", float64(a.Down)},
		)
	}
	// A call's counters start from zero with each call, which Prometheus
	// reads as a reset.
	if c := st.Media; c != nil {
		ms = append(ms,
			metric{"intercom_rtp_packets_sent_total", "RTP packets sent in the current call.", "counter", float64(c.PacketsSent)},
			metric{"intercom_rtp_packets_received_total", "RTP packets received in the current call.", "counter", float64(c.PacketsReceived)},
			metric{"intercom_rtp_packets_lost_total", "RTP packets lost on the way to the station in the current call (RFC 3550 A.3).", "counter", float64(max(c.Lost, 0))},
			metric{"intercom_rtp_frames_concealed_total", "Audio frames played without a packet in the current call.", "counter", float64(c.Concealed)},
			metric{"intercom_rtcp_packets_sent_total", "RTCP packets sent in the current call.", "counter", float64(c.RTCPSent)},
			metric{"intercom_rtcp_packets_received_total", "RTCP packets received in the current call.", "counter", float64(c.RTCPReceived)},
			metric{"intercom_srtp_packets_refused_total", "SRTP and SRTCP packets refused (authentication or replay) in the current call.", "counter", float64(c.SRTPRefused)},
			metric{"intercom_rtp_loss_fraction", "Fraction of incoming RTP lost in the last RTCP interval.", "gauge", c.LossFraction},
			metric{"intercom_rtp_jitter_seconds", "Interarrival jitter of incoming RTP (RFC 3550 6.4.1).", "gauge", c.JitterMS / 1000},
			metric{"intercom_jitter_buffer_target_seconds", "Delay the jitter buffer aims for.", "gauge", c.JitterTargetMS / 1000},
			metric{"intercom_rtcp_rtt_seconds", "Round-trip time measured with RTCP; 0 until known.", "gauge", c.RTTMS / 1000},
			metric{"intercom_rtcp_remote_loss_fraction", "Fraction of our RTP lost, as the far end reports it.", "gauge", c.RemoteLossFraction},
			metric{"intercom_rtcp_remote_jitter_seconds", "Jitter of our RTP, as the far end reports it.", "gauge", c.RemoteJitterMS / 1000},
		)
	}
	if d := st.SIPDefence; d != nil {
		ms = append(ms,
			metric{"intercom_sip_sources_blocked", "Source IPs whose SIP messages are ignored at the moment.", "gauge", float64(d.BlockedNow)},
			metric{"intercom_sip_blocks_total", "Times a source IP was blocked for its rate or as a scanner.", "counter", float64(d.Blocks)},
		)
	}
	for _, l := range ms {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", l.name, l.help, l.name, l.typ, l.name, formatValue(l.value)); err != nil {
			return err
		}
	}
	if d := st.SIPDefence; d != nil {
		fmt.Fprintf(w, "# HELP intercom_sip_dropped_total SIP messages dropped unanswered: over a stranger's rate or blocked, or a scanner's.\n# TYPE intercom_sip_dropped_total counter\n")
		fmt.Fprintf(w, "intercom_sip_dropped_total{reason=\"rate\"} %d\nintercom_sip_dropped_total{reason=\"scanner\"} %d\n", d.RateLimited, d.Scanners)
	}
	names := make([]string, 0, len(st.Relays))
	for n := range st.Relays {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "# HELP intercom_relay_cycles_total Relay activations.\n# TYPE intercom_relay_cycles_total counter\n")
	for _, n := range names {
		fmt.Fprintf(w, "intercom_relay_cycles_total{relay=%q} %d\n", n, st.Relays[n].Cycles)
	}
	fmt.Fprintf(w, "# HELP intercom_relay_active 1 while the relay is energised.\n# TYPE intercom_relay_active gauge\n")
	for _, n := range names {
		_, err = fmt.Fprintf(w, "intercom_relay_active{relay=%q} %s\n", n, formatValue(b2f(st.Relays[n].Active)))
	}
	return err
}

// metric is one unlabelled line of the exposition.
type metric struct {
	name, help, typ string
	value           float64
}

// formatValue writes counters as plain integers and gauges in the shortest
// decimal form, never in exponent notation.
func formatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Ping returns once the event loop has run a no-op: the systemd watchdog
// is fed only while the loop answers.
func (s *Station) Ping(ctx context.Context) error {
	return s.do(ctx, func() error { return nil })
}

// MediaFrames reports how many frames the call's media loop has handled
// (each one sends a packet or counts a refused send) and whether a call's
// media is running, so that the watchdog can tell a stuck media loop.
func (s *Station) MediaFrames(ctx context.Context) (frames uint64, running bool, err error) {
	err = s.do(ctx, func() error {
		if s.state != stateActive || s.stream == nil {
			return nil
		}
		ms, ok := s.stream.Stats()
		frames, running = ms.PacketsSent+ms.SendErrors, ok
		return nil
	})
	return frames, running, err
}
