package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"

	"github.com/emiago/sipgo/sip"

	"intercom/device"
	"intercom/device/api"
	"intercom/device/config"
	"intercom/gpio"
	"intercom/gpio/sim"
	"intercom/media"
	"intercom/media/dsp"
	"intercom/media/tone"
	"intercom/media/wav"
	"intercom/sipagent"
)

// inputDebounce applies to door contacts and other inputs, whose config
// has no debounce key.
const inputDebounce = 30 * time.Millisecond

func runStation(path string, stderr io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return usageError{err}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// sipgo logs some transport trouble through its package default.
	sip.SetDefaultLogger(log.With("component", "sipgo"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pins, err := newPins(cfg.GPIO.Driver)
	if err != nil {
		return err
	}
	// Relays go inactive before anything else can fail (DESIGN §7), and
	// again on every way out of this function.
	relays := map[string]device.Relay{}
	for _, rc := range cfg.Relays {
		r, err := newRelay(pins, rc)
		if err != nil {
			return err
		}
		defer r.Close()
		relays[rc.Name] = r
	}
	leds := map[string]device.LED{}
	for _, lc := range cfg.LEDs {
		p, err := pins.out(lc.Pin)
		if err != nil {
			return fmt.Errorf("led %s: %w", lc.Name, err)
		}
		l, err := gpio.NewLED(gpio.LEDConfig{Name: lc.Name, Pin: p, ActiveLow: lc.Active == "low"})
		if err != nil {
			return err
		}
		defer l.Close()
		leds[lc.Name] = l
	}
	buttons := map[string]device.Input{}
	for _, bc := range cfg.Buttons {
		in, err := pins.input(bc.Name, bc.Pin, bc.Active, bc.Pull, bc.Debounce, bc.LongPress)
		if err != nil {
			return fmt.Errorf("button %s: %w", bc.Name, err)
		}
		buttons[bc.Name] = in
	}
	inputs := map[string]device.Input{}
	for _, ic := range cfg.Inputs {
		in, err := pins.input(ic.Name, ic.Pin, ic.Active, ic.Pull, inputDebounce, 0)
		if err != nil {
			return fmt.Errorf("input %s: %w", ic.Name, err)
		}
		inputs[ic.Name] = in
	}

	if cfg.Audio.Backend == "portaudio" {
		terminate, err := media.InitPortAudio()
		if err != nil {
			return err
		}
		defer terminate()
	}
	backend, err := media.NewBackend(cfg.Audio.Backend, media.BackendConfig{
		Input: cfg.Audio.Input, Output: cfg.Audio.Output, Logger: log.With("component", "audio"),
	})
	if err != nil {
		return err
	}
	agent, err := sipagent.New(sipagent.Config{
		Transport: cfg.SIP.Transport, Listen: cfg.SIP.Listen, Registrar: cfg.SIP.Registrar,
		OutboundProxy: cfg.SIP.OutboundProxy, User: cfg.SIP.User, AuthUser: cfg.SIP.AuthUser,
		Password: cfg.SIP.Password, DisplayName: cfg.SIP.DisplayName,
		RegisterExpires: cfg.SIP.RegisterExpires, Keepalive: cfg.SIP.Keepalive,
		UserAgent: "intercom/" + version, Logger: log.With("component", "sip"),
	})
	if err != nil {
		return err
	}
	// A sound card that fails mid-call (an unplugged USB card) is reopened
	// with back-off while the call goes on; file and null backends fail
	// loudly instead, since their errors are configuration mistakes.
	var health device.AudioHealth
	if cfg.Audio.Backend == "portaudio" {
		resilient := media.Resilient(backend, media.ResilientConfig{Logger: log.With("component", "audio")})
		backend, health = resilient, resilient
	}
	micGain, err := dsp.NewGain(cfg.Audio.MicGainDB)
	if err != nil {
		return usageError{fmt.Errorf("audio.mic_gain_db: %w", err)}
	}
	speakerGain, err := dsp.NewGain(cfg.Audio.SpeakerGainDB)
	if err != nil {
		return usageError{fmt.Errorf("audio.speaker_gain_db: %w", err)}
	}
	ringback, err := tone.ParseCadence(cfg.Audio.Ringback)
	if err != nil {
		return usageError{fmt.Errorf("audio.ringback: %w", err)}
	}
	prompts, err := loadPrompts(cfg.Audio.Prompts)
	if err != nil {
		return usageError{err}
	}
	rtpMedia := &device.RTPMedia{
		Backend: backend, Jitter: media.JitterConfig{Min: cfg.Audio.Jitter.Min, Max: cfg.Audio.Jitter.Max},
		Ptime: cfg.Audio.Ptime, MicGain: micGain, SpeakerGain: speakerGain,
		Ringback: ringback, EchoSuppression: cfg.Audio.EchoSuppression, Logger: log.With("component", "media"),
	}
	defer rtpMedia.Close()
	var simPins device.SimPins
	if pins.bank != nil {
		simPins = pins
	}
	station, err := device.New(device.Config{
		Config:  cfg,
		Phone:   device.SIPPhone{Agent: agent},
		Media:   rtpMedia,
		MediaIP: listenIP(cfg.SIP.Listen),
		Relays:  relays, LEDs: leds, Buttons: buttons, Inputs: inputs, SimPins: simPins, Audio: health,
		Logger: log.With("component", "device"), Version: version, Prompts: prompts,
	})
	if err != nil {
		return err
	}

	// The SIP agent outlives the station by a moment so that a call in
	// progress is hung up before the agent un-registers and closes.
	agentCtx, stopAgent := context.WithCancel(context.Background())
	defer stopAgent()
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Run(agentCtx) }()

	apiDone := make(chan error, 1)
	if cfg.API.Listen != "" {
		ln, err := net.Listen("tcp", cfg.API.Listen)
		if err != nil {
			stopAgent()
			<-agentDone
			return fmt.Errorf("api: %w", err)
		}
		srv := &http.Server{
			Handler:           api.Handler(api.Config{Station: station, Token: cfg.API.Token, Logger: log.With("component", "api")}),
			ReadHeaderTimeout: 5 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return ctx },
		}
		go func() { apiDone <- srv.Serve(ln) }()
		defer srv.Close()
		log.Info("api listening", "addr", ln.Addr().String())
	}

	log.Info("door station starting", "name", cfg.Device.Name, "version", version, "sip", cfg.SIP.Listen, "registrar", cfg.SIP.Registrar)
	stationErr := station.Run(ctx, device.SIPEvents(agentCtx, agent.Events()))
	stopAgent()
	agentErr := <-agentDone
	select {
	case err := <-apiDone:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("api: %w", err)
		}
	default:
	}
	log.Info("door station stopped")
	return errors.Join(stationErr, agentErr)
}

// maxPrompt bounds a recorded prompt: the visitor waits through it, and a
// longer file is most likely the wrong one.
const maxPrompt = 10 * time.Second

// loadPrompts reads the configured prompt recordings; a key left empty
// keeps the device's generated tone.
func loadPrompts(p config.Prompts) (device.Prompts, error) {
	var out device.Prompts
	for _, f := range []struct {
		key, path string
		spec      *tone.Spec
	}{
		{"audio.prompts.door_opened", p.DoorOpened, &out.DoorOpened},
		{"audio.prompts.rejected", p.Rejected, &out.Rejected},
		{"audio.prompts.busy", p.Busy, &out.Busy},
		{"audio.prompts.unreachable", p.Unreachable, &out.Unreachable},
	} {
		if f.path == "" {
			continue
		}
		samples, err := loadPrompt(f.path)
		if err != nil {
			return device.Prompts{}, fmt.Errorf("%s: %w", f.key, err)
		}
		*f.spec = tone.Spec{Samples: samples}
	}
	return out, nil
}

// loadPrompt reads a WAV file the door can play as it is: 8 kHz mono
// 16-bit PCM, the rate of G.711, so that no resampling happens per call.
func loadPrompt(path string) ([]int16, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	info, err := wav.Parse(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if info.Format != 1 || info.BitsPerSample != 16 || info.Channels != 1 || info.SampleRate != tone.SampleRate {
		pcm := ""
		if info.Format != 1 {
			pcm = fmt.Sprintf(", not PCM (format %d)", info.Format)
		}
		return nil, fmt.Errorf("%s is %d Hz, %d channels, %d bits%s; prompts must be 8 kHz mono 16-bit PCM, convert with: sox in.wav -r 8000 -c 1 -b 16 out.wav",
			path, info.SampleRate, info.Channels, info.BitsPerSample, pcm)
	}
	if info.DataSize < 2 {
		return nil, fmt.Errorf("%s holds no audio", path)
	}
	if d := time.Duration(info.DataSize/2) * time.Second / tone.SampleRate; d > maxPrompt {
		return nil, fmt.Errorf("%s: %v long, at most %v (trim it, e.g. sox in.wav out.wav trim 0 %d)", path, d, maxPrompt, int(maxPrompt.Seconds()))
	}
	samples, _, err := wav.ReadFile(path)
	return samples, err
}

// closingRelay is a relay the station drives and main releases on exit.
type closingRelay interface {
	device.Relay
	Close() error
}

var (
	_ closingRelay = (*gpio.Relay)(nil)
	_ closingRelay = (*gpio.HTTPRelay)(nil)
)

// newRelay opens a pin relay, or an HTTP relay when rc.URL is set.
func newRelay(pins *pins, rc config.Relay) (closingRelay, error) {
	if rc.URL != "" {
		return gpio.NewHTTPRelay(gpio.HTTPRelayConfig{
			Name: rc.Name, URL: rc.URL, Method: rc.Method,
			User: rc.User, Password: rc.Password, Token: rc.Token, MaxOn: rc.MaxOn,
		})
	}
	p, err := pins.out(rc.Pin)
	if err != nil {
		return nil, fmt.Errorf("relay %s: %w", rc.Name, err)
	}
	return gpio.NewRelay(gpio.RelayConfig{Name: rc.Name, Pin: p, ActiveLow: rc.Active == "low", MaxOn: rc.MaxOn})
}

func listenIP(listen string) netip.Addr {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.IPv4Unspecified()
	}
	return ip
}

// pins looks pins up by name on the sim bank or on the real board.
type pins struct {
	bank   *sim.Bank
	inputs map[string]bool
}

var _ device.SimPins = (*pins)(nil)

func newPins(driver string) (*pins, error) {
	if driver == "sim" {
		return &pins{bank: sim.NewBank(), inputs: map[string]bool{}}, nil
	}
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("gpio: init host drivers: %w", err)
	}
	return &pins{}, nil
}

func (p *pins) pin(name string) (pgpio.PinIO, error) {
	if p.bank != nil {
		return p.bank.Pin(name), nil
	}
	pin := gpioreg.ByName(name)
	if pin == nil {
		return nil, fmt.Errorf("gpio: no pin named %q on this board (gpio.driver sim simulates pins)", name)
	}
	return pin, nil
}

func (p *pins) out(name string) (pgpio.PinOut, error) { return p.pin(name) }

func (p *pins) input(name, pinName, active, pull string, debounce, longPress time.Duration) (*gpio.Input, error) {
	pin, err := p.pin(pinName)
	if err != nil {
		return nil, err
	}
	if p.inputs != nil {
		p.inputs[pinName] = true
	}
	pl := pgpio.Float
	switch pull {
	case "up":
		pl = pgpio.PullUp
	case "down":
		pl = pgpio.PullDown
	}
	return gpio.NewInput(gpio.InputConfig{Name: name, Pin: pin, ActiveLow: active == "low", Pull: pl, Debounce: debounce, LongPress: longPress})
}

// Drive sets a virtual input pin; only pins configured as inputs can be
// driven from outside, as on a real board.
func (p *pins) Drive(name string, high bool) error {
	if !p.inputs[name] {
		return fmt.Errorf("no virtual input pin %q: %w", name, api.ErrNotFound)
	}
	lvl := pgpio.Low
	if high {
		lvl = pgpio.High
	}
	p.bank.Pin(name).Drive(lvl)
	return nil
}
