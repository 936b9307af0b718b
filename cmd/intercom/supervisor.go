package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"intercom/device"
	"intercom/device/api"
	"intercom/device/config"
	"intercom/internal/clock"
	"intercom/internal/sdnotify"
	"intercom/media"
	"intercom/media/dsp"
	"intercom/media/tone"
	"intercom/sipagent"
)

// supervisor runs the door station as three parts that a new configuration
// restarts separately: the SIP agent (only when the sip section changed,
// so that a new LED pin does not drop the registration), the API listener
// (only when the api section changed), and the station itself (pins, sound
// and the state machine), rebuilt for any change once no call is in
// progress. The event bus and the API's view of the station outlive them
// all.
type supervisor struct {
	log     *slog.Logger
	started time.Time // for the status's uptime across rebuilds
	bus     *device.Bus
	live    liveStation
	prov    device.Provisioning // nil without provisioning
	// notify tells systemd about start-up, status and shutdown and feeds
	// its watchdog; disabled outside systemd.
	notify *sdnotify.Notifier

	// applies carries new configurations from the provisioner to run's
	// goroutine, which owns every field below.
	applies chan applyRequest

	cfg         *config.Config // the configuration the running parts were built from
	sip         *sipPart
	api         *apiPart
	stn         *stationPart
	paTerminate func() error // PortAudio initialised; terminated on exit
	// sipChanged tells Registered whether the last change can have broken
	// the registration.
	sipChanged atomic.Bool

	events chan any // SIP events for whichever station runs
	reg    regState
	// handover is the registration the stopped station last saw, for the
	// next one: a restarted SIP agent then shows as a change (an
	// unregistered event) instead of a fresh start.
	handover *device.RegistrationEvent
	// relayCycles carries each relay's cycle count (wear, in the status)
	// over to the relay that replaces it when the station is rebuilt.
	relayCycles map[string]uint64
}

type applyRequest struct {
	cfg  *config.Config
	done chan error
}

// eventBuffer holds SIP events while the station is being rebuilt.
const eventBuffer = 64

func newSupervisor(log *slog.Logger) *supervisor {
	s := &supervisor{
		log:     log,
		started: time.Now(),
		bus:     device.NewBus(),
		applies: make(chan applyRequest),
		events:  make(chan any, eventBuffer),
	}
	s.live.bus = s.bus
	s.reg.changed = make(chan struct{})
	s.notify = &sdnotify.Notifier{}
	return s
}

// run starts every part from cfg and keeps them running until ctx ends or
// one of them fails. When cfg (merged from stored documents) fails to
// start, local, the local file's own configuration, is started instead.
func (s *supervisor) run(ctx context.Context, cfg, local *config.Config) error {
	defer s.shutdown()
	if err := s.start(ctx, cfg); err != nil {
		if cfg == local {
			return err
		}
		s.log.Error("the provisioned configuration failed to start, starting from the local file alone", "err", err)
		s.stopAll()
		if err := s.start(ctx, local); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { s.systemd(ctx) })
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stn.done:
			if ctx.Err() != nil {
				return nil // the station saw ctx end first
			}
			return fmt.Errorf("station: %w", errOrStopped(s.stn.err))
		case <-s.sip.done:
			if ctx.Err() != nil {
				return nil // the agent saw ctx end first
			}
			return fmt.Errorf("sip: %w", errOrStopped(s.sip.err))
		case err := <-s.api.doneCh():
			if ctx.Err() != nil {
				return nil // the listener saw ctx end first
			}
			return fmt.Errorf("api: %w", err)
		case req := <-s.applies:
			err := s.reconfigure(ctx, req.cfg)
			req.done <- err
			if s.stn == nil || s.sip == nil || s.api == nil {
				// Neither the new nor the previous configuration runs:
				// exit and let the service manager start over.
				return err
			}
		}
	}
}

func errOrStopped(err error) error {
	if err == nil {
		return errors.New("stopped unexpectedly")
	}
	return err
}

// apply hands cfg to run's goroutine and waits until it is running, which
// is after the call in progress, if any, has ended.
func (s *supervisor) apply(ctx context.Context, cfg *config.Config) error {
	req := applyRequest{cfg: cfg, done: make(chan error, 1)}
	select {
	case s.applies <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start brings up the parts that are not running, from cfg.
func (s *supervisor) start(ctx context.Context, cfg *config.Config) error {
	if s.sip == nil {
		sp, err := s.startSIP(cfg)
		if err != nil {
			return err
		}
		s.sip = sp
	}
	if s.api == nil {
		ap, err := startAPI(ctx, cfg.API, &s.live, s.log)
		if err != nil {
			return err
		}
		s.api = ap
	}
	if s.stn == nil {
		sp, err := s.startStation(ctx, cfg)
		if err != nil {
			return err
		}
		s.stn = sp
	}
	s.cfg = cfg
	return nil
}

// reconfigure replaces the running configuration with next. On failure it
// goes back to the configuration that ran before and returns the error, so
// that the provisioner rolls its documents back too.
func (s *supervisor) reconfigure(ctx context.Context, next *config.Config) error {
	if reflect.DeepEqual(s.cfg, next) {
		s.sipChanged.Store(false)
		return nil
	}
	prev := s.cfg
	last, _ := s.reg.get()
	s.handover = &last
	if err := s.stn.stopWhenIdle(ctx); err != nil {
		return err
	}
	s.live.set(nil)
	s.keepCycles()
	s.stn = nil
	sipChanged := !reflect.DeepEqual(prev.SIP, next.SIP)
	s.sipChanged.Store(sipChanged)
	if sipChanged {
		s.sip.stop()
		s.sip = nil
	}
	if !reflect.DeepEqual(prev.API, next.API) {
		s.api.stop()
		s.api = nil
	}
	err := s.start(ctx, next)
	if err == nil {
		s.log.Info("configuration applied", "sip_restarted", sipChanged)
		return nil
	}
	s.log.Error("new configuration failed to start, going back to the previous one", "err", err)
	s.stopParts(prev, next)
	if rerr := s.start(ctx, prev); rerr != nil {
		return errors.Join(err, fmt.Errorf("and the previous configuration failed too: %w", rerr))
	}
	return err
}

// stopParts stops what next started before it failed, where it differs
// from prev, so that start brings prev's parts back.
func (s *supervisor) stopParts(prev, next *config.Config) {
	if s.stn != nil {
		s.stn.stop()
		s.live.set(nil)
		s.keepCycles()
		s.stn = nil
	}
	if s.sip != nil && !reflect.DeepEqual(prev.SIP, next.SIP) {
		s.sip.stop()
		s.sip = nil
	}
	if s.api != nil && !reflect.DeepEqual(prev.API, next.API) {
		s.api.stop()
		s.api = nil
	}
}

// keepCycles notes the cycle counts of the station part's relays.
func (s *supervisor) keepCycles() {
	if s.relayCycles == nil {
		s.relayCycles = map[string]uint64{}
	}
	for name, r := range s.stn.relays {
		s.relayCycles[name] = r.Cycles()
	}
}

// shutdown stops the station before the SIP agent, so that a call in
// progress is hung up before the agent un-registers and closes.
func (s *supervisor) shutdown() {
	if err := s.notify.Stopping(); err != nil {
		s.log.Warn("systemd", "err", err)
	}
	s.stopAll()
	s.bus.Close()
	if s.paTerminate != nil {
		if err := s.paTerminate(); err != nil {
			s.log.Warn("portaudio terminate", "err", err)
		}
	}
}

func (s *supervisor) stopAll() {
	if s.stn != nil {
		s.stn.stop()
		s.live.set(nil)
		s.keepCycles()
		s.stn = nil
	}
	if s.sip != nil {
		s.sip.stop()
		s.sip = nil
	}
	if s.api != nil {
		s.api.stop()
		s.api = nil
	}
}

// registered returns once the SIP agent of the configuration just applied
// has registered. A change that left the sip section alone cannot break
// the registration, so it returns at once then.
func (s *supervisor) registered(ctx context.Context) error {
	if !s.sipChanged.Load() {
		return nil
	}
	for {
		r, changed := s.reg.get()
		switch {
		case r.State == "registered" || r.State == "disabled":
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if r.Err != nil {
				return fmt.Errorf("not registered: %w", r.Err)
			}
			return fmt.Errorf("not registered (%s)", r.State)
		}
	}
}

// regState is the registration as the current SIP agent last reported it.
type regState struct {
	mu      sync.Mutex
	gen     uint64 // the SIP agent's generation
	ev      device.RegistrationEvent
	user    string // the agent's sip.user and sip.listen, for the status line
	listen  string
	changed chan struct{} // closed at the next change
}

func (r *regState) get() (device.RegistrationEvent, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ev, r.changed
}

// agent returns the running agent's sip.user and sip.listen.
func (r *regState) agent() (user, listen string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.user, r.listen
}

// reset starts a new agent generation and returns it.
func (r *regState) reset(ev device.RegistrationEvent, user, listen string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.user, r.listen = user, listen
	r.setLocked(ev)
	return r.gen
}

func (r *regState) set(gen uint64, ev device.RegistrationEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen == r.gen {
		r.setLocked(ev)
	}
}

func (r *regState) setLocked(ev device.RegistrationEvent) {
	r.ev = ev
	close(r.changed)
	r.changed = make(chan struct{})
}

// sipPart is a running SIP agent and the goroutine that passes its events
// on to the station.
type sipPart struct {
	agent *sipagent.Agent
	stopF context.CancelFunc
	done  chan struct{} // closed when the agent's Run returned err
	err   error
	pumpW sync.WaitGroup
}

func (s *supervisor) startSIP(cfg *config.Config) (*sipPart, error) {
	t := cfg.SIP.TLS
	tlsCfg, err := sipagent.LoadTLS(t.CA, t.Cert, t.Key, t.ClientCert, t.ClientKey)
	if err != nil {
		return nil, err
	}
	// A board without a real-time clock boots in 1970: no handshake
	// before the clock is past the build (doctor's check uses it too).
	tlsCfg.NotBefore = buildTime()
	agent, err := sipagent.New(sipagent.Config{
		Transport: cfg.SIP.Transport, TLS: tlsCfg, Listen: cfg.SIP.Listen, Registrar: cfg.SIP.Registrar,
		OutboundProxy: cfg.SIP.OutboundProxy, User: cfg.SIP.User, AuthUser: cfg.SIP.AuthUser,
		Password: cfg.SIP.Password, DisplayName: cfg.SIP.DisplayName,
		RegisterExpires: cfg.SIP.RegisterExpires, Keepalive: cfg.SIP.Keepalive, NAT: cfg.SIP.NAT,
		// No version in User-Agent: it would tell scanners which flaws to try.
		UserAgent: "intercom", Logger: s.log.With("component", "sip"),
		Defence: sipagent.DefenceConfig{
			Rate: cfg.SIP.Defence.Rate, Burst: cfg.SIP.Defence.Burst,
			BlockFor: cfg.SIP.Defence.BlockFor, Scanners: cfg.SIP.Defence.Scanners,
		},
	})
	if err != nil {
		return nil, err
	}
	first := device.RegistrationEvent{State: "registering", Registrar: cfg.SIP.Registrar}
	if cfg.SIP.Registrar == "" {
		first.State = "disabled"
	}
	gen := s.reg.reset(first, cfg.SIP.User, cfg.SIP.Listen)
	// The agent outlives a station rebuild; its context is not run's, so
	// that shutdown can stop the station first.
	ctx, cancel := context.WithCancel(context.Background())
	p := &sipPart{agent: agent, stopF: cancel, done: make(chan struct{})}
	go func() {
		p.err = agent.Run(ctx)
		close(p.done)
	}()
	in := device.SIPEvents(ctx, agent.Events())
	p.pumpW.Go(func() {
		for ev := range in {
			if r, ok := ev.(device.RegistrationEvent); ok {
				s.reg.set(gen, r)
			}
			select {
			case s.events <- ev:
			case <-ctx.Done():
				return
			}
		}
	})
	return p, nil
}

func (p *sipPart) stop() {
	p.stopF()
	p.pumpW.Wait()
	<-p.done
}

// apiPart is the HTTP API listener.
type apiPart struct {
	srv  *http.Server
	done chan error
}

func startAPI(ctx context.Context, c config.API, st api.Station, log *slog.Logger) (*apiPart, error) {
	if c.Listen == "" {
		return &apiPart{}, nil
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	p := &apiPart{
		srv: &http.Server{
			Handler:           api.Handler(api.Config{Station: st, Token: c.Token, Logger: log.With("component", "api")}),
			ReadHeaderTimeout: 5 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return ctx },
		},
		done: make(chan error, 1),
	}
	go func() {
		if err := p.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			p.done <- err
		}
	}()
	log.Info("api listening", "addr", ln.Addr().String())
	return p, nil
}

// doneCh reports a listener that failed; nil (never ready) without one.
func (p *apiPart) doneCh() <-chan error { return p.done }

func (p *apiPart) stop() {
	if p.srv != nil {
		p.srv.Close()
	}
}

// stationPart is the state machine with the pins and sound it drives.
type stationPart struct {
	st      *device.Station
	cancel  context.CancelFunc
	done    chan struct{} // closed when the station's Run returned err
	err     error
	closers []io.Closer
	relays  map[string]device.Relay
}

func (s *supervisor) startStation(ctx context.Context, cfg *config.Config) (_ *stationPart, err error) {
	p := &stationPart{done: make(chan struct{}), relays: map[string]device.Relay{}}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	pins, err := newPins(cfg.GPIO.Driver)
	if err != nil {
		return nil, err
	}
	// Relays go inactive before anything else can fail (DESIGN §7), and
	// again whenever this part stops.
	relays := map[string]device.Relay{}
	for _, rc := range cfg.Relays {
		r, err := newRelay(pins, rc, s.relayCycles[rc.Name])
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, r)
		relays[rc.Name] = r
		p.relays[rc.Name] = r
	}
	leds := map[string]device.LED{}
	for _, lc := range cfg.LEDs {
		l, err := pins.led(lc)
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, l)
		leds[lc.Name] = l
	}
	buttons := map[string]device.Input{}
	for _, bc := range cfg.Buttons {
		in, err := pins.input(bc.Name, bc.Pin, bc.Active, bc.Pull, bc.Debounce, bc.LongPress)
		if err != nil {
			return nil, fmt.Errorf("button %s: %w", bc.Name, err)
		}
		buttons[bc.Name] = in
	}
	inputs := map[string]device.Input{}
	for _, ic := range cfg.Inputs {
		in, err := pins.input(ic.Name, ic.Pin, ic.Active, ic.Pull, inputDebounce, 0)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", ic.Name, err)
		}
		inputs[ic.Name] = in
	}
	rtpMedia, health, err := s.newMedia(cfg)
	if err != nil {
		return nil, err
	}
	p.closers = append(p.closers, closerFunc(rtpMedia.Close))
	prompts, err := loadPrompts(cfg.Audio.Prompts)
	if err != nil {
		return nil, err
	}
	var simPins device.SimPins
	if pins.bank != nil {
		simPins = pins
	}
	reg, _ := s.reg.get()
	if s.handover != nil {
		reg, s.handover = *s.handover, nil
	}
	st, err := device.New(device.Config{
		Config:  cfg,
		Phone:   device.SIPPhone{Agent: s.sip.agent},
		Media:   rtpMedia,
		MediaIP: listenIP(cfg.SIP.Listen),
		Relays:  relays, LEDs: leds, Buttons: buttons, Inputs: inputs, SimPins: simPins, Audio: health,
		Logger: s.log.With("component", "device"), Version: version, Prompts: prompts,
		Provisioning: s.prov, Bus: s.bus, Registration: reg, Started: s.started,
	})
	if err != nil {
		return nil, err
	}
	p.st = st
	runCtx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	go func() {
		p.err = st.Run(runCtx, s.events)
		close(p.done)
	}()
	s.live.set(st)
	s.log.Info("door station running", "name", cfg.Device.Name, "version", version, "sip", cfg.SIP.Listen, "registrar", cfg.SIP.Registrar)
	return p, nil
}

// newMedia opens the sound backend of cfg.
func (s *supervisor) newMedia(cfg *config.Config) (*device.RTPMedia, device.AudioHealth, error) {
	if cfg.Audio.Backend == "portaudio" && s.paTerminate == nil {
		terminate, err := media.InitPortAudio()
		if err != nil {
			return nil, nil, err
		}
		s.paTerminate = terminate
	}
	alog := s.log.With("component", "audio")
	backend, err := media.NewBackend(cfg.Audio.Backend, media.BackendConfig{
		Input: cfg.Audio.Input, Output: cfg.Audio.Output, Logger: alog,
	})
	if err != nil {
		return nil, nil, err
	}
	// A sound card that fails mid-call (an unplugged USB card) is reopened
	// with back-off while the call goes on; file and null backends fail
	// loudly instead, since their errors are configuration mistakes.
	var health device.AudioHealth
	if cfg.Audio.Backend == "portaudio" {
		resilient := media.Resilient(backend, media.ResilientConfig{Logger: alog})
		backend, health = resilient, resilient
	}
	micGain, err := dsp.NewGain(cfg.Audio.MicGainDB)
	if err != nil {
		return nil, nil, fmt.Errorf("audio.mic_gain_db: %w", err)
	}
	speakerGain, err := dsp.NewGain(cfg.Audio.SpeakerGainDB)
	if err != nil {
		return nil, nil, fmt.Errorf("audio.speaker_gain_db: %w", err)
	}
	ringback, err := tone.ParseCadence(cfg.Audio.Ringback)
	if err != nil {
		return nil, nil, fmt.Errorf("audio.ringback: %w", err)
	}
	return &device.RTPMedia{
		Backend: backend, Jitter: media.JitterConfig{Min: cfg.Audio.Jitter.Min, Max: cfg.Audio.Jitter.Max},
		Ptime: cfg.Audio.Ptime, MicGain: micGain, SpeakerGain: speakerGain,
		Ringback: ringback, EchoSuppression: cfg.Audio.EchoSuppression, Logger: s.log.With("component", "media"),
	}, health, nil
}

// stopWhenIdle stops the station once no call is in progress.
func (p *stationPart) stopWhenIdle(ctx context.Context) error {
	p.st.StopWhenIdle()
	select {
	case <-p.done:
		p.cancel()
		p.close()
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *stationPart) stop() {
	p.cancel()
	<-p.done
	p.close()
}

func (p *stationPart) close() {
	for _, c := range p.closers {
		c.Close()
	}
	p.closers = nil
}

type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }

// liveStation is the API's view of whichever station runs now; between a
// stop and the next start, commands fail with errRestarting.
type liveStation struct {
	cur atomic.Pointer[device.Station]
	bus *device.Bus
}

var _ api.Station = (*liveStation)(nil)

var errRestarting = errors.New("the station is restarting with a new configuration, try again")

func (l *liveStation) set(st *device.Station) { l.cur.Store(st) }

func (l *liveStation) get() (*device.Station, error) {
	if st := l.cur.Load(); st != nil {
		return st, nil
	}
	return nil, errRestarting
}

func (l *liveStation) Status(ctx context.Context) (api.Status, error) {
	st, err := l.get()
	if err != nil {
		return api.Status{}, err
	}
	return st.Status(ctx)
}

func (l *liveStation) PressButton(ctx context.Context, name string) error {
	st, err := l.get()
	if err != nil {
		return err
	}
	return st.PressButton(ctx, name)
}

func (l *liveStation) PulseRelay(ctx context.Context, name string, d time.Duration) error {
	st, err := l.get()
	if err != nil {
		return err
	}
	return st.PulseRelay(ctx, name, d)
}

func (l *liveStation) Call(ctx context.Context, uri string) error {
	st, err := l.get()
	if err != nil {
		return err
	}
	return st.Call(ctx, uri)
}

func (l *liveStation) Hangup(ctx context.Context) error {
	st, err := l.get()
	if err != nil {
		return err
	}
	return st.Hangup(ctx)
}

func (l *liveStation) SetSimPin(ctx context.Context, pin string, high bool) error {
	st, err := l.get()
	if err != nil {
		return err
	}
	return st.SetSimPin(ctx, pin, high)
}

func (l *liveStation) Subscribe() (<-chan api.Event, func()) { return l.bus.Subscribe() }

func (l *liveStation) WriteMetrics(ctx context.Context, w io.Writer) error {
	st, err := l.get()
	if err != nil {
		return err
	}
	return st.WriteMetrics(ctx, w)
}

func (l *liveStation) CheckProvisioning(ctx context.Context) error {
	st, err := l.get()
	if err != nil {
		return err
	}
	return st.CheckProvisioning(ctx)
}

func (l *liveStation) ProvisioningStatus() *api.ProvisioningStatus {
	st, err := l.get()
	if err != nil {
		return nil
	}
	return st.ProvisioningStatus()
}

// readyWait bounds the wait for the first registration attempt before
// READY=1: within systemd's start timeout (90 s), and past a UDP
// transaction's 32 s (RFC 3261 §17.1.2.2, Timer F).
const readyWait = 40 * time.Second

// systemd tells systemd that the station has started once the first
// registration attempt has finished (at once peer-to-peer), then keeps
// the status line current and feeds the watchdog until ctx is done.
func (s *supervisor) systemd(ctx context.Context) {
	wait := clock.Real{}.NewTimer(readyWait)
	defer wait.Stop()
first:
	for {
		reg, changed := s.reg.get()
		if reg.State != "registering" {
			break
		}
		select {
		case <-changed:
		case <-wait.C():
			break first // ready all the same; the status says registering
		case <-ctx.Done():
			return
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		err := s.notify.RunWatchdog(ctx, clock.Real{}, s.live.ping, sdnotify.Progress("media loop", s.live.mediaFrames))
		if err != nil {
			s.log.Error("systemd watchdog: cannot notify, systemd will restart the station", "err", err)
		}
	})
	events, unsubscribe := s.bus.Subscribe()
	defer unsubscribe()
	call, ready := "", false
	for {
		reg, changed := s.reg.get()
		user, listen := s.reg.agent()
		if err := s.notify.Status(statusLine(reg, user, listen, call)); err != nil {
			s.log.Warn("systemd", "err", err)
		}
		if !ready {
			// After the first status line, so that it shows from the start.
			if err := s.notify.Ready(); err != nil {
				s.log.Warn("systemd", "err", err)
			}
			ready = true
		}
		select {
		case <-changed:
		case ev, ok := <-events:
			if !ok {
				return
			}
			switch ev.Type {
			case "answered":
				call, _ = ev.Data["remote"].(string)
			case "hangup":
				call = ""
			}
		case <-ctx.Done():
			return
		}
	}
}

// statusLine is what `systemctl status intercom` shows.
func statusLine(reg device.RegistrationEvent, user, listen, call string) string {
	var line string
	switch reg.State {
	case "registered":
		line = fmt.Sprintf("registered to %s as %s", reg.Registrar, user)
	case "failed":
		line = fmt.Sprintf("registration to %s as %s failed: %v", reg.Registrar, user, reg.Err)
	case "disabled":
		line = "peer-to-peer, listening on " + listen
	default:
		line = fmt.Sprintf("registering to %s as %s", reg.Registrar, user)
	}
	if call != "" {
		line += "; in a call with " + call
	}
	return line
}

// ping is the watchdog's main-loop probe. No station (a rebuild in
// progress) counts as not answering: a rebuild that hangs must restart.
func (l *liveStation) ping(ctx context.Context) error {
	st, err := l.get()
	if err == nil {
		err = st.Ping(ctx)
	}
	if err != nil {
		return fmt.Errorf("main loop: %w", err)
	}
	return nil
}

// mediaFrames is the watchdog's media-loop counter; without a station
// there is no call, and ping reports the missing station.
func (l *liveStation) mediaFrames(ctx context.Context) (uint64, bool, error) {
	st, err := l.get()
	if err != nil {
		return 0, false, nil
	}
	return st.MediaFrames(ctx)
}
