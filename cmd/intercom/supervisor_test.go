package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"intercom/device/config"
)

const supervisedYAML = `
device: {name: Front door}
sip: {listen: "127.0.0.1:0", user: door}
gpio: {driver: sim}
buttons:
  - {name: bell, pin: GPIO17, call: ["sip:flat@127.0.0.1:5999"]}
relays:
  - {name: door, pin: GPIO27}
leds:
  - {name: status, pin: GPIO22}
audio: {backend: "null"}
api: {listen: ""}
`

func parseCfg(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startSupervisor runs a supervisor on cfg until the test ends. Its fields
// belong to run's goroutine; a test reads them only after an apply has
// returned, which orders the reads after run's writes.
func startSupervisor(t *testing.T, cfg *config.Config) *supervisor {
	t.Helper()
	s := newSupervisor(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx, cfg, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	if err := s.apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReconfigureKeepsTheSIPAgent(t *testing.T) {
	s := startSupervisor(t, parseCfg(t, supervisedYAML))
	agent := s.sip.agent
	next := parseCfg(t, strings.Replace(supervisedYAML, "GPIO22", "GPIO23", 1))
	if err := s.apply(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if s.sip.agent != agent {
		t.Error("a new LED pin restarted the SIP agent")
	}
	if s.sipChanged.Load() {
		t.Error("sipChanged set for an LED change")
	}
	if got := s.cfg.LEDs[0].Pin; got != "GPIO23" {
		t.Errorf("running LED pin %s", got)
	}
	if err := s.registered(context.Background()); err != nil {
		t.Errorf("registered after a change outside sip: %v", err)
	}
}

func TestReconfigureRestartsSIPForSIPChanges(t *testing.T) {
	s := startSupervisor(t, parseCfg(t, supervisedYAML))
	agent := s.sip.agent
	next := parseCfg(t, strings.Replace(supervisedYAML, "user: door", "user: door2", 1))
	if err := s.apply(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if s.sip.agent == agent {
		t.Error("a new SIP user kept the old agent")
	}
	if !s.sipChanged.Load() {
		t.Error("sipChanged not set")
	}
	// Peer-to-peer: nothing to wait for.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.registered(ctx); err != nil {
		t.Errorf("registered without a registrar: %v", err)
	}
}

func TestReconfigureFailureKeepsThePreviousConfig(t *testing.T) {
	s := startSupervisor(t, parseCfg(t, supervisedYAML))
	bad := strings.Replace(supervisedYAML, `audio: {backend: "null"}`, `audio: {backend: file, input: /nonexistent/mic.wav, output: /nonexistent/out.wav}`, 1)
	bad = strings.Replace(bad, "Front door", "Broken door", 1)
	err := s.apply(context.Background(), parseCfg(t, bad))
	if err == nil || !strings.Contains(err.Error(), "mic.wav") {
		t.Fatalf("apply of a config whose sound cannot open: %v", err)
	}
	if got := s.cfg.Device.Name; got != "Front door" {
		t.Fatalf("running configuration %q, want the previous one back", got)
	}
	if _, err := s.live.Status(context.Background()); err != nil {
		t.Fatalf("no station running after the failed change: %v", err)
	}
}

func TestRegisteredTimesOut(t *testing.T) {
	yaml := strings.Replace(supervisedYAML, "user: door}", "user: door, registrar: \"127.0.0.1:9\", register_expires: 60s}", 1)
	s := startSupervisor(t, parseCfg(t, supervisedYAML))
	if err := s.apply(context.Background(), parseCfg(t, yaml)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.registered(ctx); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("registered with a registrar that does not answer: %v", err)
	}
}

func TestReconfigureKeepsRelayCycles(t *testing.T) {
	s := startSupervisor(t, parseCfg(t, supervisedYAML))
	ctx := context.Background()
	if err := s.live.PulseRelay(ctx, "door", 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	next := parseCfg(t, strings.Replace(supervisedYAML, "GPIO22", "GPIO23", 1))
	if err := s.apply(ctx, next); err != nil {
		t.Fatal(err)
	}
	st, err := s.live.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Relays["door"].Cycles; got != 1 {
		t.Fatalf("door relay cycles %d after a rebuild, want the 1 from before", got)
	}
}
