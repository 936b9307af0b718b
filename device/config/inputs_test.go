package config

import (
	"strings"
	"testing"
	"time"
)

func TestInputAndRelayDefaults(t *testing.T) {
	cfg := mustParse(t, `relays:
  - {name: door, pin: GPIO27}
  - {name: gate, url: "http://10.0.0.9/relay/0?turn=on&timer={seconds}"}
inputs:
  - {name: contact, pin: GPIO5, role: door_sensor}
  - {name: exit, pin: GPIO6, role: exit_button}
  - {name: lid, pin: GPIO13, role: tamper}
  - {name: spare, pin: GPIO19}
`)
	door, gate := cfg.Relays[0], cfg.Relays[1]
	if door.Mode != "pulse" || door.Method != "GET" || door.URL != "" {
		t.Errorf("pin relay defaults: %+v", door)
	}
	if gate.Pin != "" || gate.Mode != "pulse" || gate.Method != "GET" || gate.Pulse != 3*time.Second || gate.MaxOn != 10*time.Second {
		t.Errorf("HTTP relay defaults: %+v", gate)
	}
	contact, exit, lid, spare := cfg.Inputs[0], cfg.Inputs[1], cfg.Inputs[2], cfg.Inputs[3]
	if contact.HeldOpen != time.Minute || contact.Relay != "" {
		t.Errorf("door_sensor defaults: held_open %v, relay %q", contact.HeldOpen, contact.Relay)
	}
	if exit.Relay != "door" {
		t.Errorf("exit_button relay defaults to %q, want the first relay", exit.Relay)
	}
	if lid.BlockRelays || spare.Role != "generic" {
		t.Errorf("tamper %+v, generic %+v", lid, spare)
	}
	assertRoundTrip(t, cfg)
}

func TestInputAndRelayValues(t *testing.T) {
	cfg := mustParse(t, `relays:
  - {name: door, pin: GPIO27, mode: latch}
  - name: gate
    url: https://gate.example.com/open
    method: POST
    user: admin
    password: pw
  - {name: shelly, url: "http://10.0.0.9/rpc", token: t0k}
inputs:
  - {name: contact, pin: GPIO5, role: door_sensor, held_open: 0s, relay: gate}
  - {name: exit, pin: GPIO6, role: exit_button, relay: shelly}
  - {name: lid, pin: GPIO13, role: tamper, block_relays: true}
`)
	if cfg.Relays[0].Mode != "latch" || cfg.Relays[1].Method != "POST" || cfg.Relays[1].User != "admin" || cfg.Relays[2].Token != "t0k" {
		t.Errorf("relays %+v", cfg.Relays)
	}
	if cfg.Inputs[0].HeldOpen != 0 || cfg.Inputs[0].Relay != "gate" || cfg.Inputs[1].Relay != "shelly" || !cfg.Inputs[2].BlockRelays {
		t.Errorf("inputs %+v", cfg.Inputs)
	}
	assertRoundTrip(t, cfg)
}

func TestInputAndRelayValidation(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"pin or url", "relays:\n  - {name: door}\n", `t.yaml:2: relays[0].pin: required`},
		{"pin and url", "relays:\n  - {name: door, pin: P1, url: 'http://x/'}\n", `t.yaml:2: relays[0].url: set either pin or url`},
		{"url scheme", "relays:\n  - {name: door, url: 'ftp://x/'}\n", `t.yaml:2: relays[0].url: scheme must be http or https, got "ftp"`},
		{"url host", "relays:\n  - {name: door, url: 'http:///open'}\n", `t.yaml:2: relays[0].url: has no host`},
		{"url invalid", "relays:\n  - {name: door, url: 'http://x:bad/'}\n", `t.yaml:2: relays[0].url: not a valid URL`},
		{"method", "relays:\n  - {name: door, url: 'http://x/', method: DELETE}\n", `t.yaml:2: relays[0].method: "DELETE" is not one of GET, POST`},
		{"password alone", "relays:\n  - {name: door, url: 'http://x/', password: pw}\n", `t.yaml:2: relays[0].password: needs user`},
		{"basic and bearer", "relays:\n  - {name: door, url: 'http://x/', user: u, token: t}\n", `t.yaml:2: relays[0].token: use either`},
		{"credentials on a pin", "relays:\n  - {name: door, pin: P1, token: t}\n", `t.yaml:2: relays[0].token: only an HTTP relay (url) takes credentials`},
		{"mode", "relays:\n  - {name: door, pin: P1, mode: toggle}\n", `t.yaml:2: relays[0].mode: "toggle" is not one of pulse, latch`},
		{"latch over http", "relays:\n  - {name: door, url: 'http://x/', mode: latch}\n", `t.yaml:2: relays[0].mode: latch needs a pin`},
		{"held_open", "inputs:\n  - {name: c, pin: P1, role: door_sensor, held_open: -1s}\n", `t.yaml:2: inputs[0].held_open: must not be negative`},
		{"block_relays role", "inputs:\n  - {name: c, pin: P1, role: generic, block_relays: true}\n", `t.yaml:2: inputs[0].block_relays: only a tamper input blocks relays`},
		{"relay role", "relays: [{name: door, pin: P2}]\ninputs:\n  - {name: c, pin: P1, role: tamper, relay: door}\n", `t.yaml:3: inputs[0].relay: only exit_button and door_sensor inputs name a relay`},
		{"relay unknown", "relays: [{name: door, pin: P2}]\ninputs:\n  - {name: c, pin: P1, role: exit_button, relay: gate}\n", `t.yaml:3: inputs[0].relay: no relay named "gate"`},
		{"exit without relays", "inputs:\n  - {name: c, pin: P1, role: exit_button}\n", `t.yaml:2: inputs[0].relay: an exit_button opens a relay, and no relays are configured`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseErr(t, tt.doc); !containsLine(got, tt.want) {
				t.Errorf("error\n%s\nhas no line starting with\n%s", got, tt.want)
			}
		})
	}
}

func TestHTTPRelaySecretsMaskedAndOutOfErrors(t *testing.T) {
	cfg := mustParse(t, `relays:
  - {name: a, url: "http://admin:urlpw@10.0.0.9/relay/0?turn=on", user: admin, password: s3cret}
  - {name: b, url: "http://10.0.0.9/rpc", token: t0ken}
`)
	m := cfg.Masked()
	out, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"urlpw", "s3cret", "t0ken"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("masked output shows %q:\n%s", secret, out)
		}
	}
	if m.Relays[0].User != "admin" || !strings.Contains(m.Relays[0].URL, "10.0.0.9/relay/0?turn=on") {
		t.Errorf("non-secrets changed: %+v", m.Relays[0])
	}
	if cfg.Relays[0].Password != "s3cret" || cfg.Relays[1].Token != "t0ken" || !strings.Contains(cfg.Relays[0].URL, "urlpw") {
		t.Errorf("Masked changed the original: %+v", cfg.Relays)
	}

	got := parseErr(t, "relays:\n  - {name: a, url: 'ftp://u:98x7@host/'}\n  - {name: b, url: 'http://u:98x7@%zz/'}\n")
	if strings.Contains(got, "98x7") {
		t.Errorf("error shows a secret:\n%s", got)
	}
}
