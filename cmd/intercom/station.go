package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
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
	"intercom/internal/sdnotify"
	"intercom/media/tone"
	"intercom/media/wav"
	"intercom/sipagent"
)

// inputDebounce applies to door contacts and other inputs, whose config
// has no debounce key.
const inputDebounce = 30 * time.Millisecond

func runStation(path string, stderr io.Writer) error {
	local, localCfg, err := loadLocal(path)
	if err != nil {
		return usageError{err}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// sipgo logs some transport trouble through its package default.
	sip.SetDefaultLogger(sipagent.SipgoLogger(log))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	notify, err := sdnotify.FromEnv()
	if err != nil {
		return err
	}
	sup := newSupervisor(log)
	sup.notify = notify
	cfg := localCfg
	var prov *autoProvisioning
	if localCfg.Provisioning.URL != "" {
		prov, err = newAutoProvisioning(local, localCfg.Provisioning, sup, log.With("component", "provisioning"))
		if err != nil {
			return usageError{err}
		}
		sup.prov = prov
		cfg = effective(prov.store, local, localCfg)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if prov != nil {
		wg.Go(func() {
			if err := prov.p.Run(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("provisioning stopped", "err", err)
			}
		})
	}
	err = sup.run(runCtx, cfg, localCfg)
	log.Info("door station stopped")
	return err
}

// loadLocal reads and checks the configuration file on the board.
func loadLocal(path string) (config.Layer, *config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return config.Layer{}, nil, fmt.Errorf("config: %w", err)
	}
	local := config.Layer{Name: path, Data: data}
	cfg, err := config.ParseLayers(local)
	if err != nil {
		return config.Layer{}, nil, err
	}
	return local, cfg, nil
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

// newRelay opens a pin relay, or an HTTP relay when rc.URL is set; its
// cycle count starts at cycles.
func newRelay(pins *pins, rc config.Relay, cycles uint64) (closingRelay, error) {
	if rc.URL != "" {
		return gpio.NewHTTPRelay(gpio.HTTPRelayConfig{
			Name: rc.Name, URL: rc.URL, Method: rc.Method,
			User: rc.User, Password: rc.Password, Token: rc.Token, MaxOn: rc.MaxOn, Cycles: cycles,
		})
	}
	p, err := pins.out(rc.Pin)
	if err != nil {
		return nil, fmt.Errorf("relay %s: %w", rc.Name, err)
	}
	return gpio.NewRelay(gpio.RelayConfig{Name: rc.Name, Pin: p, ActiveLow: rc.Active == "low", MaxOn: rc.MaxOn, Cycles: cycles})
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

func (p *pins) led(lc config.LED) (*gpio.LED, error) {
	pin, err := p.out(lc.Pin)
	if err != nil {
		return nil, fmt.Errorf("led %s: %w", lc.Name, err)
	}
	return gpio.NewLED(gpio.LEDConfig{Name: lc.Name, Pin: pin, ActiveLow: lc.Active == "low"})
}

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
