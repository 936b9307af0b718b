// Package device is the door-phone application: one state machine that turns
// button presses, SIP events, DTMF digits, API commands and timers into calls,
// relay pulses, LED patterns and events. It reaches pins, SIP and sound only
// through small interfaces, and time through an injected clock.
package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"intercom/device/api"
	"intercom/device/config"
	"intercom/gpio"
	"intercom/internal/clock"
	"intercom/media"
	"intercom/media/tone"
	"intercom/sipagent"
)

// Relay is a door-lock relay; the driver enforces its own max_on.
type Relay interface {
	Pulse(d time.Duration) error
	Active() bool
	Cycles() uint64
}

// LED shows the station's state.
type LED interface {
	Set(p gpio.Pattern)
	Pattern() gpio.Pattern
}

// Input is a debounced button or contact.
type Input interface {
	Run(ctx context.Context, out chan<- gpio.Change) error
	Active() bool
}

// AudioHealth reports the sound card's trouble counters.
type AudioHealth interface {
	Stats() media.ResilientStats
}

// SimPins drives virtual input pins; nil when real pins are in use.
type SimPins interface {
	Drive(pin string, high bool) error
}

// Call is one SIP dialog, incoming or outgoing.
type Call interface {
	ID() string
	Remote() string
	Media() sipagent.MediaAnswer
	Negotiate(local sipagent.MediaOffer) error
	Accept(ctx context.Context, local sipagent.MediaOffer) (sipagent.MediaAnswer, error)
	Reject(code int, reason string) error
	Hangup(ctx context.Context) error
	Done() <-chan struct{}
}

var _ Call = (*sipagent.Call)(nil)

// endReasoner is a Call that knows why it ended, for the hangup event of
// a call that ends before its EndedEvent arrives.
type endReasoner interface {
	EndReason() string
}

var _ endReasoner = (*sipagent.Call)(nil)

// Phone places calls.
type Phone interface {
	Dial(ctx context.Context, req sipagent.DialRequest) (Call, error)
}

// Media opens the RTP side of a call.
type Media interface {
	// Open binds a local RTP port for a call about to be set up.
	Open(ip netip.Addr) (Stream, error)
	// Announce plays a tone at the door for d, outside a call.
	Announce(spec tone.Spec, d time.Duration)
}

// Stream is the media of one call.
type Stream interface {
	LocalAddr() netip.AddrPort
	// Run exchanges audio until ctx is done and reports RFC 4733 digits.
	Run(ctx context.Context, answer sipagent.MediaAnswer, onDigit func(rune)) error
	// StartRingback plays the ringback tone at the door while calling.
	StartRingback()
	// PlayTone mixes a tone into both directions of the running call.
	PlayTone(spec tone.Spec) error
	// Close releases the stream's port and stops its ringback.
	Close() error
	// Stats reports the running call's media; false until Run started it.
	Stats() (media.Stats, bool)
	// Update moves the call's media to a new offer/answer result: a new
	// remote address or codec, or a hold (RFC 3264 section 8). It may come
	// before Run has started the media.
	Update(answer sipagent.MediaAnswer) error
}

// SIP events the station consumes. They mirror sipagent's events with the
// call behind the Call interface, so that tests can drive them.
type (
	// RegistrationEvent reports a registration state change.
	RegistrationEvent struct {
		State     string
		Registrar string
		Expires   time.Time
		Err       error
		Transport string         // "udp" or "tcp"
		Addr      netip.AddrPort // the registrar address that answered; zero until one did
	}
	// IncomingEvent reports a new INVITE.
	IncomingEvent struct {
		Call      Call
		From      string
		Source    netip.AddrPort
		FromProxy bool
	}
	// InfoDigitEvent reports a digit received by SIP INFO.
	InfoDigitEvent struct {
		Call  Call
		Digit rune
	}
	// EndedEvent reports a dialog that ended.
	EndedEvent struct {
		Call   Call
		Reason string
	}
	// CheckSyncEvent reports a SIP NOTIFY check-sync from the registrar or
	// outbound proxy: fetch the configuration now.
	CheckSyncEvent struct {
		Source netip.AddrPort
	}
	// MediaChangedEvent reports a re-INVITE or UPDATE that changed an
	// established call's media: Media is the whole new stream.
	MediaChangedEvent struct {
		Call  Call
		Media sipagent.MediaAnswer
	}
)

// Config wires a Station.
type Config struct {
	Config  *config.Config
	Phone   Phone
	Media   Media
	MediaIP netip.Addr
	Relays  map[string]Relay
	LEDs    map[string]LED
	Buttons map[string]Input
	Inputs  map[string]Input
	SimPins SimPins
	// Audio, when set, adds sound-card health to status and metrics.
	Audio   AudioHealth
	Clock   clock.Clock
	Logger  *slog.Logger
	Version string
	// Prompts replace the generated feedback tones, e.g. with recordings.
	Prompts Prompts
	// Provisioning is the configuration fetcher; nil when provisioning is
	// not configured.
	Provisioning Provisioning
	// Bus, when set, carries the station's events and outlives it; nil:
	// the station makes its own and closes it when Run returns.
	Bus *Bus
	// Started is when the process started, for the uptime in status: a
	// station rebuilt for a new configuration keeps counting from there.
	// Zero means when Run starts.
	Started time.Time
	// Registration is the SIP registration's state when the station
	// starts, for a station rebuilt beside a SIP agent that kept running;
	// the zero value means registering (disabled without a registrar).
	Registration RegistrationEvent
}

// Prompts are what the door plays for each outcome; a zero Spec is the
// generated tone.
type Prompts struct {
	DoorOpened, Rejected, Busy, Unreachable tone.Spec
}

// withDefaults fills each zero Spec with its generated tone and checks
// the others, so that a bad prompt fails at start, not at the door.
func (p Prompts) withDefaults() (Prompts, error) {
	for _, f := range []struct {
		name string
		spec *tone.Spec
		def  func() tone.Spec
	}{
		{"door_opened", &p.DoorOpened, tone.DoorOpened},
		{"rejected", &p.Rejected, tone.Rejected},
		{"busy", &p.Busy, tone.Busy},
		{"unreachable", &p.Unreachable, tone.Unreachable},
	} {
		if len(f.spec.Steps) == 0 && len(f.spec.Samples) == 0 {
			*f.spec = f.def()
			continue
		}
		if err := f.spec.Validate(); err != nil {
			return Prompts{}, fmt.Errorf("device: prompt %s: %w", f.name, err)
		}
	}
	return p, nil
}

type callState int

const (
	stateIdle callState = iota
	stateCalling
	stateRinging
	stateActive
)

func (s callState) String() string {
	return [...]string{"idle", "calling", "ringing", "active"}[s]
}

// Station is the door-phone state machine. All state below the loop channel
// is owned by the goroutine in Run.
type Station struct {
	cfg      *config.Config
	phone    Phone
	media    Media
	mediaIP  netip.Addr
	relays   map[string]Relay
	leds     map[string]LED
	buttons  map[string]Input
	inputs   map[string]Input
	sim      SimPins
	audio    AudioHealth
	clock    clock.Clock
	log      *slog.Logger
	version  string
	prompts  Prompts
	prov     Provisioning
	started  time.Time
	bus      *Bus
	ownBus   bool // the station made bus and closes it
	stopIdle bool // Run returns once quiet
	metrics  *counters

	loop    chan func()
	done    chan struct{}
	runCtx  context.Context
	wg      sync.WaitGroup
	running chan struct{}

	state        callState
	gen          uint64
	call         Call
	callRemote   string
	callSince    time.Time
	callOutgoing bool
	// callDirection is the active call's media direction ("" sendrecv).
	callDirection string
	stream        Stream
	cancelCall    context.CancelFunc
	timers        []clock.Timer
	lock          *codeLock
	reg           RegistrationEvent
	doorOpenTill  time.Time
	doorTimer     clock.Timer
	roles         *roles
	policy        *callPolicy
}

// New checks the wiring and returns a Station ready to Run.
func New(cfg Config) (*Station, error) {
	if cfg.Config == nil || cfg.Phone == nil || cfg.Media == nil {
		return nil, errors.New("device: config, phone and media are required")
	}
	s := &Station{
		cfg: cfg.Config, phone: cfg.Phone, media: cfg.Media, mediaIP: cfg.MediaIP,
		relays: cfg.Relays, leds: cfg.LEDs, buttons: cfg.Buttons, inputs: cfg.Inputs,
		sim: cfg.SimPins, audio: cfg.Audio, clock: cfg.Clock, log: cfg.Logger, version: cfg.Version,
		prov: cfg.Provisioning, bus: cfg.Bus, started: cfg.Started, metrics: &counters{}, loop: make(chan func(), 64),
		done: make(chan struct{}), running: make(chan struct{}),
	}
	if s.bus == nil {
		s.bus, s.ownBus = NewBus(), true
	}
	var err error
	if s.prompts, err = cfg.Prompts.withDefaults(); err != nil {
		return nil, err
	}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if !s.mediaIP.IsValid() {
		s.mediaIP = netip.IPv4Unspecified()
	}
	for _, b := range s.cfg.Buttons {
		if _, ok := s.buttons[b.Name]; !ok {
			return nil, fmt.Errorf("device: button %q has no input", b.Name)
		}
	}
	var codes []doorCode
	for _, c := range s.cfg.Door.Codes {
		if _, ok := s.relays[c.Relay]; !ok {
			return nil, fmt.Errorf("device: door code for relay %q: no such relay", c.Relay)
		}
		codes = append(codes, doorCode{digits: c.Code, relay: c.Relay})
	}
	s.lock = newCodeLock(codes, s.cfg.Door.Lockout.After, s.cfg.Door.Lockout.For)
	if err := s.initRoles(); err != nil {
		return nil, err
	}
	if err := s.initPolicy(); err != nil {
		return nil, err
	}
	s.reg = RegistrationEvent{State: "registering", Registrar: s.cfg.SIP.Registrar}
	switch {
	case s.cfg.SIP.Registrar == "":
		s.reg.State = "disabled"
	case cfg.Registration.State != "":
		s.reg = cfg.Registration
	}
	return s, nil
}

// Run drives the state machine until ctx is done, reading SIP events from
// sipEvents. It hangs up a call in progress before it returns.
func (s *Station) Run(ctx context.Context, sipEvents <-chan any) error {
	s.runCtx = ctx
	if s.started.IsZero() {
		s.started = s.clock.Now()
	}
	changes := make(chan gpio.Change, 16)
	inputCtx, stopInputs := context.WithCancel(ctx)
	for name, in := range s.allInputs() {
		s.wg.Go(func() {
			if err := in.Run(inputCtx, changes); err != nil && inputCtx.Err() == nil {
				s.post(func() { s.inputFailed(name, err) })
			}
		})
	}
	s.updateLEDs()
	s.startRoles()
	s.watchAudioHealth()
	close(s.running)
	defer func() {
		stopInputs()
		s.endCall("station stopping", true)
		close(s.done)
		s.wg.Wait()
		if s.ownBus {
			s.bus.Close()
		}
	}()
	for {
		if s.stopIdle && s.quiet() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case f := <-s.loop:
			f()
		case c := <-changes:
			s.onInput(c)
		case ev, ok := <-sipEvents:
			if !ok {
				sipEvents = nil
				continue
			}
			s.onSIP(ev)
		}
	}
}

// StopWhenIdle makes Run return as soon as no call is in progress and no
// door is held open: main rebuilds the station for a new configuration
// then, without cutting a call or a door opening short.
func (s *Station) StopWhenIdle() { s.post(func() { s.stopIdle = true }) }

func (s *Station) quiet() bool {
	return s.state == stateIdle && !s.clock.Now().Before(s.doorOpenTill)
}

func (s *Station) allInputs() map[string]Input {
	all := make(map[string]Input, len(s.buttons)+len(s.inputs))
	for n, in := range s.buttons {
		all["button:"+n] = in
	}
	for n, in := range s.inputs {
		all["input:"+n] = in
	}
	return all
}

// post queues f for the loop goroutine; it is dropped once the loop has ended.
func (s *Station) post(f func()) {
	select {
	case s.loop <- f:
	case <-s.done:
	}
}

// do runs f on the loop and waits for its result.
func (s *Station) do(ctx context.Context, f func() error) error {
	select {
	case <-s.running:
	case <-ctx.Done():
		return ctx.Err()
	}
	res := make(chan error, 1)
	select {
	case s.loop <- func() { res <- f() }:
	case <-s.done:
		return errors.New("device: station stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-res:
		return err
	case <-s.done:
		return errors.New("device: station stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Station) emit(typ string, data map[string]any) {
	s.bus.publish(api.Event{Type: typ, Time: s.clock.Now(), Data: data})
}

func (s *Station) fail(what string, err error) {
	s.log.Error(what, "err", err)
	s.emit("error", map[string]any{"what": what, "error": err.Error()})
}

func (s *Station) onInput(c gpio.Change) {
	if _, ok := s.buttons[c.Name]; ok {
		switch {
		case c.Long:
			s.longPress(c.Name)
		case c.Active:
			s.pressButton(c.Name)
		}
		return
	}
	s.onRoleInput(c)
}

func (s *Station) onSIP(ev any) {
	switch ev := ev.(type) {
	case RegistrationEvent:
		s.onRegistration(ev)
	case IncomingEvent:
		s.onIncoming(ev)
	case InfoDigitEvent:
		if ev.Call == s.call && s.dtmfAllowed("sip_info") {
			s.onDigit(s.gen, ev.Digit)
		}
	case EndedEvent:
		if ev.Call == s.call {
			s.endCall(ev.Reason, false)
		}
	case CheckSyncEvent:
		s.onCheckSync(ev)
	case MediaChangedEvent:
		if ev.Call == s.call && s.state == stateActive {
			s.mediaChanged(ev.Media)
		}
	}
}

// mediaChanged applies a call's new media to its running stream; a change
// the stream cannot make ends the call rather than leave it mute.
func (s *Station) mediaChanged(ans sipagent.MediaAnswer) {
	s.callDirection = ans.Direction
	s.log.Info("call media changed", "remote", s.callRemote, "media", ans.Remote, "codec", ans.Codec.Name, "direction", ans.Direction)
	if err := s.stream.Update(ans); err != nil {
		s.fail("media update", err)
		s.endCall("media failed", true)
	}
}

func (s *Station) onRegistration(ev RegistrationEvent) {
	was := s.reg.State
	s.reg = ev
	// The LEDs change before anyone hears of the change.
	s.updateLEDs()
	switch {
	case ev.State == "registered" && was != "registered":
		s.metrics.registrations.Add(1)
		s.emit("registered", map[string]any{"registrar": ev.Registrar})
	case ev.State != "registered" && was == "registered":
		data := map[string]any{"registrar": ev.Registrar}
		if ev.Err != nil {
			data["error"] = ev.Err.Error()
		}
		s.emit("unregistered", data)
	}
}

// playEarly plays an outgoing call's early media in place of the local
// ringback; the stream's Run adopts or replaces it when the call is answered,
// and endCall stops it when the call fails.
func (s *Station) playEarly(gen uint64, stream *earlyStream, target string, ans sipagent.MediaAnswer) {
	if gen != s.gen || s.state != stateCalling {
		return
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	run := stream.playEarly(ctx, ans)
	if run == nil {
		cancel()
		return
	}
	prev := s.cancelCall
	s.cancelCall = func() { cancel(); prev() }
	s.log.Info("early media", "remote", target, "media", ans.Remote, "codec", ans.Codec.Name)
	s.wg.Go(func() {
		if err := run(); err != nil {
			s.post(func() {
				if gen == s.gen && s.state == stateCalling {
					s.fail("early media", err)
					s.endCall("media failed", true)
				}
			})
		}
	})
}

func (s *Station) onIncoming(ev IncomingEvent) {
	call := ev.Call
	switch {
	case s.state != stateIdle:
		s.rejectAsync(call, 486, "Busy Here")
		return
	case !s.allowed(ev):
		s.metrics.callsRefused.Add(1)
		s.log.Info("refused call from caller not on the allow-list", "from", ev.From, "source", ev.Source)
		s.rejectAsync(call, 403, "Forbidden")
		return
	}
	if err := call.Negotiate(s.offer(netip.AddrPort{})); err != nil {
		s.metrics.callsRefused.Add(1)
		s.log.Info("refused call whose media we cannot answer", "from", ev.From, "err", err)
		s.rejectAsync(call, 488, sipagent.NotAcceptableReason(err))
		return
	}
	stream, err := s.openMedia()
	if err != nil {
		s.fail("open media", err)
		s.rejectAsync(call, 500, "Server Internal Error")
		return
	}
	gen := s.begin(stateRinging, stream, ev.From, false)
	s.call = call
	s.metrics.callsIn.Add(1)
	s.emit("ringing", map[string]any{"direction": "incoming", "remote": ev.From})
	ctx, cancel := context.WithCancel(s.runCtx)
	s.cancelCall = cancel
	s.watch(gen, call)
	offer := s.offer(stream.LocalAddr())
	answer := func() {
		s.wg.Go(func() {
			ans, err := call.Accept(ctx, offer)
			s.post(func() {
				if gen != s.gen {
					return
				}
				if err != nil {
					s.endCall("answer failed: "+err.Error(), false)
					return
				}
				s.established(ans)
			})
		})
	}
	if d := s.cfg.Calls.AutoAnswer.Delay; d > 0 {
		s.after(d, gen, answer)
	} else {
		answer()
	}
}

// allowed applies DESIGN §6: the allow-list, or with an empty list only
// requests from the registrar or outbound proxy.
func (s *Station) allowed(ev IncomingEvent) bool {
	aa := s.cfg.Calls.AutoAnswer
	if !aa.Enabled {
		return false
	}
	if len(aa.Allow) == 0 {
		return ev.FromProxy
	}
	matched := false
	for _, p := range aa.Allow {
		if config.MatchURI(p, ev.From) {
			matched = true
			break
		}
	}
	return matched && s.plausibleSource(ev)
}

// plausibleSource rejects From headers that are cheap to forge: a caller
// claiming an IP-literal host must send from that IP, and one claiming the
// registrar's or proxy's domain must arrive through them. Other domains
// cannot be checked without the peer's help (TLS, issue 7).
func (s *Station) plausibleSource(ev IncomingEvent) bool {
	if ev.FromProxy {
		return true
	}
	host := uriHost(ev.From)
	if ip, err := netip.ParseAddr(host); err == nil {
		return ev.Source.IsValid() && ev.Source.Addr().Unmap() == ip.Unmap()
	}
	for _, server := range []string{s.cfg.SIP.Registrar, s.cfg.SIP.OutboundProxy} {
		if server != "" && strings.EqualFold(host, hostOnly(server)) {
			return false
		}
	}
	return true
}

// uriHost returns the host of a SIP URI such as "sip:201@pbx:5060;transport=udp"
// or a From value with a display name; "" when there is none.
func uriHost(uri string) string {
	if i := strings.IndexByte(uri, '<'); i >= 0 {
		uri = uri[i+1:]
		if j := strings.IndexByte(uri, '>'); j >= 0 {
			uri = uri[:j]
		}
	}
	_, rest, ok := strings.Cut(uri, ":")
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	if i := strings.IndexAny(rest, ";?"); i >= 0 {
		rest = rest[:i]
	}
	return hostOnly(rest)
}

// hostOnly strips a port from host[:port], brackets from an IPv6 literal.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// begin moves from idle into a new call and returns its generation, which
// callbacks compare against to ignore news about calls that have ended.
func (s *Station) begin(st callState, stream Stream, remote string, outgoing bool) uint64 {
	s.gen++
	s.state = st
	s.stream = stream
	s.callRemote = remote
	s.callOutgoing = outgoing
	s.callSince = s.clock.Now()
	s.lock.reset()
	s.updateLEDs()
	return s.gen
}

func (s *Station) established(ans sipagent.MediaAnswer) {
	gen := s.gen
	s.state = stateActive
	s.callSince = s.clock.Now()
	if s.callOutgoing {
		s.watch(gen, s.call)
	}
	s.callDirection = ans.Direction
	s.emit("answered", map[string]any{"remote": s.callRemote, "codec": ans.Codec.Name})
	s.limitDuration(gen)
	stream := s.stream
	ctx, cancel := context.WithCancel(s.runCtx)
	prev := s.cancelCall
	s.cancelCall = func() { cancel(); prev() }
	rfc4733 := s.dtmfAllowed("rfc4733")
	s.wg.Go(func() {
		err := stream.Run(ctx, ans, func(d rune) {
			if rfc4733 {
				s.post(func() { s.onDigit(gen, d) })
			}
		})
		if err != nil && ctx.Err() == nil {
			s.post(func() {
				if gen == s.gen {
					s.fail("media", err)
					s.endCall("media failed", true)
				}
			})
		}
	})
	s.updateLEDs()
}

// watch ends the call when its dialog ends, whoever ended it.
func (s *Station) watch(gen uint64, call Call) {
	done := call.Done()
	ctx := s.runCtx
	s.wg.Go(func() {
		select {
		case <-done:
			reason := "remote hangup"
			if r, ok := call.(endReasoner); ok && r.EndReason() != "" {
				reason = r.EndReason()
			}
			s.post(func() {
				if gen == s.gen {
					s.endCall(reason, false)
				}
			})
		case <-ctx.Done():
		}
	})
}

func (s *Station) dtmfAllowed(kind string) bool {
	for _, k := range s.cfg.Door.DTMF {
		if k == kind {
			return true
		}
	}
	return false
}

func (s *Station) onDigit(gen uint64, d rune) {
	if gen != s.gen || s.state != stateActive {
		return
	}
	s.emit("dtmf", map[string]any{"digit": "*"})
	v, relay := s.lock.digit(d, s.clock.Now())
	switch v {
	case opened:
		s.log.Info("door code accepted", "relay", relay)
		done := func(err error) {
			switch {
			case err != nil:
				s.doorRefused(err)
			case gen != s.gen: // the call ended while a remote relay switched
			default:
				s.tone(s.prompts.DoorOpened)
				if d := s.cfg.Calls.HangupAfterDoorOpen; d > 0 {
					s.after(d, gen, func() { s.endCall("door opened", true) })
				}
			}
		}
		if err := s.openDoorThen(relay, 0, "dtmf", done); err != nil {
			done(err)
		}
	case rejected:
		s.metrics.codesRejected.Add(1)
		s.log.Info("wrong door code")
		s.emit("code_rejected", map[string]any{"reason": "wrong code"})
		s.tone(s.prompts.Rejected)
	case lockedOut:
		s.metrics.codesRejected.Add(1)
		s.metrics.lockouts.Add(1)
		s.log.Warn("door code lockout", "for", s.cfg.Door.Lockout.For)
		s.emit("code_rejected", map[string]any{"reason": "wrong code"})
		s.emit("lockout", map[string]any{"for": s.cfg.Door.Lockout.For.String()})
		s.tone(s.prompts.Rejected)
	case whileLocked:
		s.metrics.codesRejected.Add(1)
		s.emit("code_rejected", map[string]any{"reason": "locked out"})
		s.tone(s.prompts.Rejected)
	}
}

// failureToneFor is how long the visitor hears why nobody answered.
const failureToneFor = 3 * time.Second

// announceFor is how long a failure prompt may play: a generated tone
// repeats, and stops after failureToneFor; a recording ends by itself and
// is not cut short, the extra second covering the sound card's latency.
func announceFor(spec tone.Spec) time.Duration {
	return max(failureToneFor, time.Duration(len(spec.Samples))*time.Second/tone.SampleRate+time.Second)
}

// announceFailure tells the visitor at the door that the flat is busy or
// could not be reached; a call the station hung up itself stays silent.
func (s *Station) announceFailure(err error) {
	var se *sipagent.StatusError
	switch {
	case errors.Is(err, context.Canceled):
	case errors.As(err, &se) && (se.Code == 486 || se.Code == 600 || se.Code == 603):
		s.media.Announce(s.prompts.Busy, announceFor(s.prompts.Busy))
	default:
		s.media.Announce(s.prompts.Unreachable, announceFor(s.prompts.Unreachable))
	}
}

// tone lets both the visitor and the resident hear what the keypad did.
func (s *Station) tone(spec tone.Spec) {
	if s.state != stateActive || s.stream == nil {
		return
	}
	if err := s.stream.PlayTone(spec); err != nil {
		s.fail("tone", err)
	}
}

// openDoor opens the door on relay name for d, its pulse when 0; a remote
// relay's late failure becomes an error event.
func (s *Station) openDoor(name string, d time.Duration, source string) error {
	return s.openDoorThen(name, d, source, nil)
}

// doorOpened records a door opening on relay name for d.
func (s *Station) doorOpened(name string, d time.Duration, source string) {
	s.metrics.doorsOpened.Add(1)
	s.emit("door_opened", map[string]any{"relay": name, "source": source})
	s.doorOpenTill = s.clock.Now().Add(d)
	if s.doorTimer != nil {
		s.doorTimer.Stop()
	}
	s.doorTimer = s.clock.AfterFunc(d, func() { s.post(s.updateLEDs) })
	s.updateLEDs()
}

func (s *Station) relayPulse(name string) time.Duration {
	for _, r := range s.cfg.Relays {
		if r.Name == name {
			return r.Pulse
		}
	}
	return 0
}

// after runs f on the loop once d has passed, unless the call has ended.
func (s *Station) after(d time.Duration, gen uint64, f func()) {
	s.timers = append(s.timers, s.clock.AfterFunc(d, func() {
		s.post(func() {
			if gen == s.gen {
				f()
			}
		})
	}))
}

// endCall returns to idle. With local set, the station hangs up (BYE,
// CANCEL, or a 487/603 to a call still ringing here).
func (s *Station) endCall(reason string, local bool) {
	if s.state == stateIdle {
		return
	}
	call, st := s.call, s.state
	if s.cancelCall != nil {
		s.cancelCall()
	}
	if s.stream != nil {
		_ = s.stream.Close()
	}
	for _, t := range s.timers {
		t.Stop()
	}
	s.timers, s.call, s.stream, s.cancelCall = nil, nil, nil, nil
	s.gen++
	s.state = stateIdle
	if local && call != nil {
		if st == stateRinging {
			s.rejectAsync(call, 603, "Decline")
		} else {
			s.hangupAsync(call)
		}
	}
	s.emit("hangup", map[string]any{"remote": s.callRemote, "reason": reason})
	s.log.Info("call ended", "remote", s.callRemote, "reason", reason)
	s.callRemote, s.callDirection = "", ""
	s.updateLEDs()
}

func (s *Station) hangupAsync(call Call) {
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := call.Hangup(ctx); err != nil {
			s.log.Warn("hang up", "err", err)
		}
	})
}

func (s *Station) rejectAsync(call Call, code int, reason string) {
	s.wg.Go(func() {
		if err := call.Reject(code, reason); err != nil {
			s.log.Warn("reject call", "code", code, "err", err)
		}
	})
}

func (s *Station) offer(local netip.AddrPort) sipagent.MediaOffer {
	var codecs []sipagent.Codec
	for _, name := range s.cfg.Audio.Codecs {
		switch name {
		case "PCMU":
			codecs = append(codecs, sipagent.Codec{Name: "PCMU", PayloadType: 0})
		case "PCMA":
			codecs = append(codecs, sipagent.Codec{Name: "PCMA", PayloadType: 8})
		}
	}
	return sipagent.MediaOffer{
		Addr:   local,
		Codecs: codecs,
		DTMF:   s.dtmfAllowed("rfc4733"),
		Ptime:  s.cfg.Audio.Ptime,
		SRTP:   sipagent.SRTPPolicy(s.cfg.Audio.SRTP),
	}
}
