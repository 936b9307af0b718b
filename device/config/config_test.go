package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseErr parses doc as "t.yaml" and returns the error text, failing the
// test when the document is accepted.
func parseErr(t *testing.T, doc string) string {
	t.Helper()
	cfg, err := Parse("t.yaml", []byte(doc))
	if err == nil {
		t.Fatalf("Parse accepted:\n%s", doc)
	}
	if cfg != nil {
		t.Errorf("Parse returned a config with an error")
	}
	return err.Error()
}

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	cfg, err := Parse("t.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, doc)
	}
	return cfg
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // a line of the error: "t.yaml:LINE: key.path: message..."
	}{
		// sip
		{"transport", "sip:\n  transport: sctp\n", `t.yaml:2: sip.transport: "sctp" is not one of udp, tcp, tls`},
		{"listen no port", "sip:\n  listen: localhost\n", `t.yaml:2: sip.listen: "localhost" is not host:port`},
		{"listen bad port", "sip:\n  listen: 0.0.0.0:99999\n", `t.yaml:2: sip.listen: "0.0.0.0:99999": invalid port "99999"`},
		{"listen bad host", "sip:\n  listen: bad_host:5060\n", `t.yaml:2: sip.listen: "bad_host:5060": invalid host "bad_host"`},
		{"user required", "device: {name: x}\nsip:\n  registrar: pbx.example.com\n", `t.yaml:2: sip.user: required when sip.registrar is set`},
		{"register_expires", "sip:\n  register_expires: 0s\n", `t.yaml:2: sip.register_expires: must be at least 1s, got 0s`},
		{"keepalive negative", "sip:\n  keepalive: -1s\n", `t.yaml:2: sip.keepalive: must not be negative, got -1s`},
		{"nat", "sip:\n  nat: stun\n", `t.yaml:2: sip.nat: "stun" is not one of auto, off`},
		{"nat empty", "sip:\n  nat: ''\n", `t.yaml:2: sip.nat: "" is not one of auto, off`},
		{"defence rate", "sip:\n  defence:\n    rate: 0\n", `t.yaml:3: sip.defence.rate: must be a positive number of messages per second, got 0`},
		{"defence burst", "sip:\n  defence:\n    burst: 0\n", `t.yaml:3: sip.defence.burst: must be at least 1, got 0`},
		{"defence block_for", "sip:\n  defence:\n    block_for: 0s\n", `t.yaml:3: sip.defence.block_for: must be positive, got 0s`},
		{"defence scanners", "sip:\n  defence:\n    scanners: [evil, ' ']\n", `t.yaml:3: sip.defence.scanners[1]: must not be empty`},
		{"tls without tls transport", "sip:\n  tls:\n    ca: /etc/ca.pem\n", `t.yaml:2: sip.tls: only used with sip.transport tls, which is "udp"`},
		{"tls cert without key", "sip:\n  transport: tls\n  tls:\n    cert: /etc/c.pem\n", `t.yaml:3: sip.tls.key: required with sip.tls.cert`},
		{"tls client key without cert", "sip:\n  transport: tls\n  tls:\n    client_key: /etc/k.pem\n", `t.yaml:3: sip.tls.client_cert: required with sip.tls.client_key`},
		{"srtp value", "audio:\n  srtp: maybe\n", `t.yaml:2: audio.srtp: "maybe" is not one of required, optional, off`},
		{"srtp required without tls", "audio:\n  srtp: required\n", `t.yaml:2: audio.srtp: required needs sip.transport tls, which is "udp"`},
		// calls
		{"ring_timeout", "calls:\n  ring_timeout: 0s\n", `t.yaml:2: calls.ring_timeout: must be positive, got 0s`},
		{"max_duration", "calls:\n  max_duration: -3m\n", `t.yaml:2: calls.max_duration: must be positive, got -3m0s`},
		{"button_during_call", "calls:\n  button_during_call: transfer\n", `t.yaml:2: calls.button_during_call: "transfer" is not one of hangup, ignore`},
		{"hangup_after_door_open", "calls:\n  hangup_after_door_open: -10s\n", `t.yaml:2: calls.hangup_after_door_open: must not be negative`},
		{"auto_answer delay", "calls:\n  auto_answer:\n    delay: -1s\n", `t.yaml:3: calls.auto_answer.delay: must not be negative`},
		{"allow not a URI", "calls:\n  auto_answer:\n    allow:\n      - sip:*@pbx\n      - pbx.example.com\n", `t.yaml:5: calls.auto_answer.allow[1]: "pbx.example.com" is not a sip: or sips: URI pattern`},
		{"allow no host", "calls:\n  auto_answer:\n    allow: ['sip:']\n", `t.yaml:3: calls.auto_answer.allow[0]: "sip:" is not a sip: or sips: URI pattern`},
		{"allow params", "calls:\n  auto_answer:\n    allow: ['sip:*@pbx;transport=tcp']\n", `t.yaml:3: calls.auto_answer.allow[0]:`},
		// gpio and pins
		{"gpio driver", "gpio:\n  driver: sysfs\n", `t.yaml:2: gpio.driver: "sysfs" is not one of auto, sim`},
		{"button name empty", "buttons:\n  - pin: GPIO17\n    call: [sip:a@b]\n", `t.yaml:2: buttons[0].name: required`},
		{"button name chars", "buttons:\n  - name: front bell\n    pin: GPIO17\n    call: [sip:a@b]\n", `t.yaml:2: buttons[0].name: "front bell": use letters, digits`},
		{"button name twice", "buttons:\n  - {name: bell, pin: GPIO17, call: [sip:a@b]}\n  - {name: bell, pin: GPIO18, call: [sip:a@b]}\n", `t.yaml:3: buttons[1].name: "bell" is used by another entry in buttons`},
		{"button pin missing", "buttons:\n  - name: bell\n    call: [sip:a@b]\n", `t.yaml:2: buttons[0].pin: required`},
		{"pin used twice across kinds", "buttons:\n  - {name: bell, pin: GPIO17, call: [sip:a@b]}\nrelays:\n  - name: door\n    pin: gpio17\n", `t.yaml:5: relays[0].pin: pin gpio17 is already used by buttons[0].pin`},
		{"button active", "buttons:\n  - name: bell\n    pin: GPIO17\n    active: up\n    call: [sip:a@b]\n", `t.yaml:4: buttons[0].active: "up" is not one of low, high`},
		{"button pull", "buttons:\n  - name: bell\n    pin: GPIO17\n    pull: high\n    call: [sip:a@b]\n", `t.yaml:4: buttons[0].pull: "high" is not one of up, down, none`},
		{"button debounce negative", "buttons:\n  - name: bell\n    pin: GPIO17\n    debounce: -30ms\n    call: [sip:a@b]\n", `t.yaml:4: buttons[0].debounce: must not be negative, got -30ms`},
		{"button no call", "buttons:\n  - name: bell\n    pin: GPIO17\n", `t.yaml:2: buttons[0].call: at least one sip: or sips: URI is required`},
		{"button call empty list", "buttons:\n  - name: bell\n    pin: GPIO17\n    call: []\n", `t.yaml:4: buttons[0].call: at least one`},
		{"button call tel", "buttons:\n  - name: bell\n    pin: GPIO17\n    call:\n      - sip:201@pbx\n      - tel:+4930123\n", `t.yaml:6: buttons[0].call[1]: "tel:+4930123" is not a sip: or sips: URI`},
		{"button call wildcard", "buttons:\n  - name: bell\n    pin: GPIO17\n    call: ['sip:*@pbx']\n", `t.yaml:4: buttons[0].call[0]: "sip:*@pbx": wildcards are not allowed here`},
		{"button ring", "buttons:\n  - name: bell\n    pin: GPIO17\n    call: [sip:a@b]\n    ring: all\n", `t.yaml:5: buttons[0].ring: "all" is not one of parallel, sequential`},
		// relays, inputs, leds
		{"relay max_on zero", "relays:\n  - name: door\n    pin: GPIO27\n    max_on: 0s\n", `t.yaml:4: relays[0].max_on: must be positive, got 0s`},
		{"relay pulse zero", "relays:\n  - name: door\n    pin: GPIO27\n    pulse: 0s\n", `t.yaml:4: relays[0].pulse: must be positive, got 0s`},
		{"relay pulse over max_on", "relays:\n  - name: door\n    pin: GPIO27\n    pulse: 5s\n    max_on: 4s\n", `t.yaml:4: relays[0].pulse: 5s exceeds max_on 4s`},
		{"relay pulse over default max_on", "relays:\n  - name: door\n    pin: GPIO27\n    pulse: 11s\n", `t.yaml:4: relays[0].pulse: 11s exceeds max_on 10s`},
		{"relay active", "relays:\n  - {name: door, pin: GPIO27, active: on}\n", `t.yaml:2: relays[0].active:`},
		{"relay name twice", "relays:\n  - {name: door, pin: GPIO27}\n  - {name: door, pin: GPIO26}\n", `t.yaml:3: relays[1].name: "door" is used by another entry in relays`},
		{"input role", "inputs:\n  - name: contact\n    pin: GPIO5\n    role: doorbell\n", `t.yaml:4: inputs[0].role: "doorbell" is not one of door_sensor, exit_button, tamper, generic`},
		{"input pull", "inputs:\n  - {name: contact, pin: GPIO5, pull: strong}\n", `t.yaml:2: inputs[0].pull: "strong" is not one of up, down, none`},
		{"input pin missing", "inputs:\n  - {name: contact}\n", `t.yaml:2: inputs[0].pin: required`},
		{"led active", "leds:\n  - {name: status, pin: GPIO22, active: bright}\n", `t.yaml:2: leds[0].active: "bright" is not one of low, high`},
		{"led name empty", "leds:\n  - {name: '', pin: GPIO22}\n", `t.yaml:2: leds[0].name: required`},
		// door
		{"code character", "relays: [{name: door, pin: P1}]\ndoor:\n  codes:\n    - code: '12a4'\n      relay: door\n", `t.yaml:4: door.codes[0].code: invalid character: use digits 0-9, * and a trailing #`},
		{"code hash inside", "relays: [{name: door, pin: P1}]\ndoor:\n  codes:\n    - {code: '12#4', relay: door}\n", `t.yaml:4: door.codes[0].code: '#' may only end a code`},
		{"code only hash", "relays: [{name: door, pin: P1}]\ndoor:\n  codes:\n    - {code: '#', relay: door}\n", `t.yaml:4: door.codes[0].code: empty code`},
		{"code no digit", "relays: [{name: door, pin: P1}]\ndoor:\n  codes:\n    - {code: '**', relay: door}\n", `t.yaml:4: door.codes[0].code: needs at least one digit 0-9`},
		{"code missing", "relays: [{name: door, pin: P1}]\ndoor:\n  codes:\n    - {relay: door}\n", `t.yaml:4: door.codes[0].code: empty code`},
		{"code twice", "relays: [{name: door, pin: P1}]\ndoor:\n  codes:\n    - {code: '1234', relay: door}\n    - {code: '1234#', relay: door}\n", `t.yaml:5: door.codes[1].code: same code as door.codes[0]`},
		{"code relay missing", "relays: [{name: door, pin: P1}]\ndoor:\n  codes:\n    - code: '1234'\n", `t.yaml:4: door.codes[0].relay: required`},
		{"code relay unknown", "relays: [{name: door, pin: P1}]\ndoor:\n  codes:\n    - code: '1234'\n      relay: gate\n", `t.yaml:5: door.codes[0].relay: no relay named "gate" (relays: door)`},
		{"dtmf inband", "door:\n  dtmf: [rfc4733, inband]\n", `t.yaml:2: door.dtmf[1]: in-band DTMF never unlocks the door`},
		{"dtmf unknown", "door:\n  dtmf: [rfc2833]\n", `t.yaml:2: door.dtmf[0]: "rfc2833" is not one of rfc4733, sip_info`},
		{"dtmf empty with codes", "relays: [{name: door, pin: P1}]\ndoor:\n  codes: [{code: '1234', relay: door}]\n  dtmf: []\n", `t.yaml:4: door.dtmf: empty: the door codes could never be keyed`},
		{"lockout after", "door:\n  lockout: {after: 0, for: 5m}\n", `t.yaml:2: door.lockout.after: must be at least 1, got 0`},
		{"lockout for", "door:\n  lockout:\n    for: 0s\n", `t.yaml:3: door.lockout.for: must be positive, got 0s`},
		// audio
		{"audio backend", "audio:\n  backend: alsa\n", `t.yaml:2: audio.backend: "alsa" is not one of portaudio, file, null`},
		{"file input default", "audio:\n  backend: file\n  output: /tmp/out.wav\n", `t.yaml:1: audio.input: the file backend needs the path of a WAV file to play`},
		{"file output empty", "audio:\n  backend: file\n  input: in.wav\n  output: ''\n", `t.yaml:4: audio.output: the file backend needs the path of a WAV file to write`},
		{"codecs empty", "audio:\n  codecs: []\n", `t.yaml:2: audio.codecs: at least one codec is required`},
		{"codec unknown", "audio:\n  codecs: [PCMU, G722]\n", `t.yaml:2: audio.codecs[1]: "G722" is not one of PCMU, PCMA`},
		{"codec twice", "audio:\n  codecs:\n    - PCMA\n    - PCMA\n", `t.yaml:4: audio.codecs[1]: PCMA is listed twice`},
		{"ptime not multiple", "audio:\n  ptime: 25ms\n", `t.yaml:2: audio.ptime: must be 10ms, 20ms, 30ms or 40ms, got 25ms`},
		{"ptime too short", "audio:\n  ptime: 5ms\n", `t.yaml:2: audio.ptime: must be 10ms`},
		{"ptime too long", "audio:\n  ptime: 50ms\n", `t.yaml:2: audio.ptime: must be 10ms`},
		{"jitter min over max", "audio:\n  jitter:\n    min: 300ms\n", `t.yaml:3: audio.jitter.min: 300ms exceeds audio.jitter.max 200ms`},
		{"jitter max zero", "audio:\n  jitter: {min: 0s, max: 0s}\n", `t.yaml:2: audio.jitter.max: must be positive, got 0s`},
		{"jitter min negative", "audio:\n  jitter: {min: -1ms}\n", `t.yaml:2: audio.jitter.min: must not be negative`},
		{"gain", "audio:\n  mic_gain_db: 0\n  speaker_gain_db: 120\n", `t.yaml:3: audio.speaker_gain_db: must be between -60 and 40 dB, got 120`},
		{"ringback", "audio:\n  ringback: 425@1s\n", `t.yaml:2: audio.ringback: tone: cadence`},
		// api
		{"api public without token", "api:\n  listen: 0.0.0.0:8080\n", `t.yaml:2: api.listen: "0.0.0.0:8080" is not a loopback address: set api.token`},
		{"api all addresses without token", "api:\n  listen: ':8080'\n", `t.yaml:2: api.listen: ":8080" is not a loopback address`},
		{"api hostname without token", "api:\n  listen: door.local:8080\n", `t.yaml:2: api.listen: "door.local:8080" is not a loopback address`},
		{"api listen invalid", "api:\n  listen: 127.0.0.1\n", `t.yaml:2: api.listen: "127.0.0.1" is not host:port`},
		// provisioning
		{"provisioning scheme", "provisioning:\n  url: ftp://prov.example.com/x.yaml\n", `t.yaml:2: provisioning.url: scheme must be https or http, got "ftp"`},
		{"provisioning no host", "provisioning:\n  url: https:///x.yaml\n", `t.yaml:2: provisioning.url: has no host`},
		{"provisioning not a URL", "provisioning:\n  url: 'https://%zz'\n", `t.yaml:2: provisioning.url: not a valid URL`},
		{"provisioning interval", "provisioning:\n  interval: 0s\n", `t.yaml:2: provisioning.interval: must be positive, got 0s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErr(t, tt.doc)
			if !containsLine(got, tt.want) {
				t.Errorf("error\n%s\nhas no line starting with\n%s", got, tt.want)
			}
		})
	}
}

// containsLine reports whether one line of msg starts with prefix.
func containsLine(msg, prefix string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"unknown top-level key", "device:\n  name: x\ncolour: red\n", `t.yaml:3: colour: unknown key`},
		{"unknown key suggests", "sip:\n  user: '100'\n  pasword: x\n", `t.yaml:3: sip.pasword: unknown key (did you mean "password"?)`},
		{"unknown nested key", "calls:\n  auto_answer:\n    enable: false\n", `t.yaml:3: calls.auto_answer.enable: unknown key (did you mean "enabled"?)`},
		{"unknown key in list item", "buttons:\n  - name: bell\n    pin: GPIO17\n    call: [sip:a@b]\n    colour: red\n", `t.yaml:5: buttons[0].colour: unknown key`},
		{"unknown key in flow mapping", "leds:\n  - {name: status, pin: GPIO22, blink: true}\n", `t.yaml:2: leds[0].blink: unknown key`},
		{"duplicate key", "sip:\n  user: a\n  user: b\n", `t.yaml:3: invalid YAML: mapping key "user" already defined`},
		{"URI in flow mapping", "buttons:\n  - {name: bell, pin: P2, call: [sip:201@pbx]}\n", `t.yaml:2: buttons[0].call[0]: expected a string, got a mapping (quote values that contain ':'`},
		{"bad duration", "buttons:\n  - name: bell\n    pin: GPIO17\n    call: [sip:a@b]\n    debounce: 30x\n", `t.yaml:5: buttons[0].debounce: invalid duration "30x"`},
		{"duration without unit", "calls:\n  ring_timeout: 30\n", `t.yaml:2: calls.ring_timeout: invalid duration "30"`},
		{"duration as list", "calls:\n  ring_timeout: [30s]\n", `t.yaml:2: calls.ring_timeout: expected a duration such as 30s, got a list`},
		{"bool as string", "calls:\n  auto_answer:\n    enabled: 'yes'\n", `t.yaml:3: calls.auto_answer.enabled: expected true or false, got a string`},
		{"int as string", "door:\n  lockout: {after: 'three'}\n", `t.yaml:2: door.lockout.after: expected an integer, got a string`},
		{"int as float", "door:\n  lockout:\n    after: 1.5\n", `t.yaml:3: door.lockout.after: expected an integer, got a number`},
		{"int too large", "door:\n  lockout:\n    after: 99999999999\n", `t.yaml:3: door.lockout.after: integer out of range`},
		{"float as string", "audio:\n  mic_gain_db: loud\n", `t.yaml:2: audio.mic_gain_db: expected a number, got a string`},
		{"float infinite", "audio:\n  mic_gain_db: .inf\n", `t.yaml:2: audio.mic_gain_db: expected a number, got a number`},
		{"string as mapping", "device:\n  name: {first: x}\n", `t.yaml:2: device.name: expected a string, got a mapping`},
		{"list as mapping", "buttons:\n  name: bell\n", `t.yaml:2: buttons: expected a list, got a mapping`},
		{"section as list", "sip:\n  - udp\n", `t.yaml:2: sip: expected a mapping, got a list`},
		{"section as string", "sip: udp\n", `t.yaml:1: sip: expected a mapping, got a string`},
		{"top level list", "- a\n- b\n", `t.yaml:1: expected a mapping of sections at the top level, got a list`},
		{"top level scalar", "hello\n", `t.yaml:1: expected a mapping of sections at the top level, got a string`},
		{"merge key", "device: &d {name: x}\nsip:\n  <<: *d\n", `t.yaml:3: sip: merge keys (<<) are not supported`},
		{"syntax error", "sip:\n  listen: [127.0.0.1:5060\n", `t.yaml:2: invalid YAML:`},
		{"tab indentation", "sip:\n\tlisten: x\n", `t.yaml:2: invalid YAML:`},
		{"empty file", "", `t.yaml: empty configuration`},
		{"blank file", "  \n\n", `t.yaml: empty configuration`},
		{"comments only", "# nothing here\n# at all\n", `t.yaml: empty configuration`},
		{"two documents", "device: {name: a}\n---\ndevice: {name: b}\n", `t.yaml:3: more than one YAML document; expected one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErr(t, tt.doc)
			if !containsLine(got, tt.want) {
				t.Errorf("error\n%s\nhas no line starting with\n%s", got, tt.want)
			}
		})
	}
}

func TestParseCollectsAllErrorsInLineOrder(t *testing.T) {
	doc := `sip:
  transport: sctp
  colour: red
buttons:
  - name: bell
    pin: GPIO17
    debounce: 30x
    call: [sip:a@b]
audio:
  ptime: 25ms
`
	got := parseErr(t, doc)
	want := []string{
		`t.yaml:2: sip.transport: "sctp" is not one of udp, tcp, tls`,
		`t.yaml:3: sip.colour: unknown key`,
		`t.yaml:7: buttons[0].debounce: invalid duration "30x"`,
		`t.yaml:10: audio.ptime: must be 10ms, 20ms, 30ms or 40ms, got 25ms`,
	}
	if got != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestParseErrorsAreStructured(t *testing.T) {
	_, err := Parse("front.yaml", []byte("calls:\n  ring_timeout: 30x\n"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a *config.Error", err)
	}
	want := Error{File: "front.yaml", Line: 2, Path: "calls.ring_timeout", Msg: `invalid duration "30x"`}
	if *e != want {
		t.Errorf("got %+v, want %+v", *e, want)
	}
}

// A failed decode leaves the default in place; validation must not then
// report a second, confusing error about the same key.
func TestDecodeErrorIsNotRepeatedByValidation(t *testing.T) {
	got := parseErr(t, "audio:\n  codecs: PCMU\n")
	if n := strings.Count(got, "\n") + 1; n != 1 {
		t.Errorf("want one error, got %d:\n%s", n, got)
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	for _, doc := range []string{
		"relays: [{name: door, pin: P1}]\ndoor:\n  codes: [{code: '98x7', relay: door}]\n",
		"relays: [{name: door, pin: P1}]\ndoor:\n  codes: [{code: '9876', relay: door}, {code: '9876', relay: door}]\n",
		"sip:\n  password: [98x7]\n",
		"api:\n  token: {t: 98x7}\n",
		"provisioning:\n  url: 'https://u:98x7@%zz'\n",
	} {
		got := parseErr(t, doc)
		if strings.Contains(got, "98x7") || strings.Contains(got, "9876") {
			t.Errorf("error shows a secret:\n%s", got)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, `device:
  name: Front door
sip:
  user: "0100"
buttons:
  - name: bell
    pin: GPIO17
    call: [sip:201@pbx]
relays:
  - {name: door, pin: GPIO27}
inputs:
  - {name: contact, pin: GPIO5}
leds:
  - {name: status, pin: GPIO22}
`)
	want := &Config{
		Device: Device{Name: "Front door"},
		SIP: SIP{
			Transport: "udp", Listen: "0.0.0.0:5060", User: "0100", AuthUser: "0100",
			RegisterExpires: 300 * time.Second, Keepalive: 25 * time.Second, NAT: "auto",
			Defence: Defence{Rate: 5, Burst: 20, BlockFor: time.Minute},
		},
		Calls: Calls{
			RingTimeout: 30 * time.Second, MaxDuration: 3 * time.Minute, ButtonDuringCall: "hangup",
			HangupAfterDoorOpen: 10 * time.Second, AutoAnswer: AutoAnswer{Enabled: true},
			MaxDurationWarning: 10 * time.Second,
		},
		GPIO: GPIO{Driver: "auto"},
		Buttons: []Button{{Name: "bell", Pin: "GPIO17", Active: "low", Pull: "up",
			Debounce: 30 * time.Millisecond, Call: []string{"sip:201@pbx"}, Ring: "parallel"}},
		Relays: []Relay{{Name: "door", Pin: "GPIO27", Active: "high", Pulse: 3 * time.Second, MaxOn: 10 * time.Second, Mode: "pulse", Method: "GET"}},
		Inputs: []Input{{Name: "contact", Pin: "GPIO5", Active: "low", Pull: "up", Role: "generic", HeldOpen: time.Minute}},
		LEDs:   []LED{{Name: "status", Pin: "GPIO22", Active: "high", Role: "status"}},
		Door:   Door{DTMF: []string{"rfc4733", "sip_info"}, Lockout: Lockout{After: 3, For: 5 * time.Minute}},
		Audio: Audio{
			Backend: "portaudio", Input: "default", Output: "default", Codecs: []string{"PCMU", "PCMA"},
			Ptime: 20 * time.Millisecond, Jitter: Jitter{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}, Ringback: "425@1s/4s", SRTP: "optional",
		},
		API:          API{Listen: "127.0.0.1:8080"},
		Provisioning: Provisioning{Interval: time.Hour, RollbackAfter: 2 * time.Minute, StateDir: "/var/lib/intercom"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestExplicitValuesOverrideDefaults(t *testing.T) {
	cfg := mustParse(t, `sip:
  user: "100"
  auth_user: auth100
  nat: off
calls:
  hangup_after_door_open: 0
  auto_answer:
    enabled: false
    delay: 2s
door:
  dtmf: [sip_info]
api:
  listen: ""
audio:
  mic_gain_db: -6.5
  speaker_gain_db: 3
inputs:
  - {name: contact, pin: GPIO5, role: ""}
`)
	switch {
	case cfg.SIP.AuthUser != "auth100":
		t.Errorf("auth_user = %q", cfg.SIP.AuthUser)
	case cfg.SIP.NAT != "off":
		t.Errorf("nat = %q", cfg.SIP.NAT)
	case cfg.Calls.HangupAfterDoorOpen != 0:
		t.Errorf("hangup_after_door_open = %v, want 0 (disabled)", cfg.Calls.HangupAfterDoorOpen)
	case cfg.Calls.AutoAnswer.Enabled:
		t.Errorf("auto_answer.enabled = true, want false")
	case cfg.Calls.AutoAnswer.Delay != 2*time.Second:
		t.Errorf("delay = %v", cfg.Calls.AutoAnswer.Delay)
	case !reflect.DeepEqual(cfg.Door.DTMF, []string{"sip_info"}):
		t.Errorf("dtmf = %q", cfg.Door.DTMF)
	case cfg.API.Listen != "":
		t.Errorf("api.listen = %q, want empty (disabled)", cfg.API.Listen)
	case cfg.Audio.MicGainDB != -6.5 || cfg.Audio.SpeakerGainDB != 3:
		t.Errorf("gains = %v, %v", cfg.Audio.MicGainDB, cfg.Audio.SpeakerGainDB)
	case cfg.Inputs[0].Role != "generic":
		t.Errorf("empty role = %q, want generic", cfg.Inputs[0].Role)
	}
}

func TestEmptyValues(t *testing.T) {
	// An empty section keeps its defaults; an empty scalar is empty.
	cfg := mustParse(t, "sip:\napi:\n  listen:\ncalls:\n  auto_answer:\n    allow:\n")
	if cfg.SIP.Transport != "udp" || cfg.API.Listen != "" || cfg.Calls.AutoAnswer.Allow != nil {
		t.Errorf("got sip.transport %q, api.listen %q, allow %q", cfg.SIP.Transport, cfg.API.Listen, cfg.Calls.AutoAnswer.Allow)
	}
}

func TestScalarsKeepTheirText(t *testing.T) {
	cfg := mustParse(t, `sip:
  user: 0100
  password: 1e3
relays: [{name: door, pin: 27}]
door:
  codes:
    - {code: 0123, relay: door}
    - code: |-
        4567#
      relay: door
`)
	if cfg.SIP.User != "0100" || cfg.SIP.Password != "1e3" || cfg.Relays[0].Pin != "27" {
		t.Errorf("user %q, password %q, pin %q", cfg.SIP.User, cfg.SIP.Password, cfg.Relays[0].Pin)
	}
	if cfg.Door.Codes[0].Code != "0123" || cfg.Door.Codes[1].Code != "4567#" {
		t.Errorf("codes %q, %q; want 0123 and 4567# (kept as written)", cfg.Door.Codes[0].Code, cfg.Door.Codes[1].Code)
	}
}

func TestAnchorsAndAliases(t *testing.T) {
	cfg := mustParse(t, `buttons:
  - name: bell
    pin: GPIO17
    call: &flats [sip:201@pbx, sip:202@pbx]
  - name: bell2
    pin: GPIO18
    call: *flats
`)
	if !reflect.DeepEqual(cfg.Buttons[1].Call, []string{"sip:201@pbx", "sip:202@pbx"}) {
		t.Errorf("aliased call = %q", cfg.Buttons[1].Call)
	}
}

func TestAliasExpansionIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("calls:\n  auto_answer:\n    allow: &a [")
	for i := range 400 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("'sip:*@h'")
	}
	b.WriteString("]\nbuttons:\n")
	for i := range 400 {
		b.WriteString("  - {name: b" + strings.Repeat("x", i) + ", pin: P" + strings.Repeat("x", i) + ", call: *a}\n")
	}
	got := parseErr(t, b.String())
	if !strings.Contains(got, "document too large") {
		t.Errorf("error %q does not say the document is too large", got)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "front.yaml")
	if err := os.WriteFile(path, []byte("device:\n  name: Front door\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Device.Name != "Front door" {
		t.Errorf("device.name = %q", cfg.Device.Name)
	}
	_, err = Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("missing file: got %v", err)
	}
	if err := os.WriteFile(path, []byte("sip:\n  transport: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":2: sip.transport: ") {
		t.Errorf("invalid file: got %v", err)
	}
}

func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d examples, want sim.yaml and pbx.yaml at least", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			assertRoundTrip(t, cfg)
		})
	}
}

func TestSimExample(t *testing.T) {
	cfg, err := Load("../../examples/sim.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// What DESIGN §4 promises for examples/sim.yaml.
	if cfg.GPIO.Driver != "sim" || cfg.Audio.Backend != "file" || cfg.SIP.Registrar != "" || !isLoopback(cfg.API.Listen) {
		t.Errorf("sim.yaml: driver %q, backend %q, registrar %q, api %q", cfg.GPIO.Driver, cfg.Audio.Backend, cfg.SIP.Registrar, cfg.API.Listen)
	}
}

func assertRoundTrip(t *testing.T, cfg *Config) {
	t.Helper()
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("marshaled.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Marshal(cfg)): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Errorf("round trip changed the config:\n got %+v\nwant %+v\n%s", back, cfg, out)
	}
}

func TestMarshalUsesDesignKeys(t *testing.T) {
	cfg, err := Load("../../examples/pbx.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nsip:\n", "  register_expires: 5m0s\n", "  hangup_after_door_open: 10s\n",
		"      - sip:*@pbx.example.com\n", "    max_on: 10s\n", "  lockout:\n    after: 3\n    for: 5m0s\n",
		"  mic_gain_db: 0", "provisioning:\n  url: \"\"\n  interval: 1h0m0s\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Marshal output lacks %q:\n%s", want, out)
		}
	}
}

func TestMasked(t *testing.T) {
	cfg := mustParse(t, `sip:
  registrar: pbx
  user: "100"
  password: s3cret
relays: [{name: door, pin: P1}]
door:
  codes:
    - {code: "1234", relay: door}
    - {code: "9876#", relay: door}
api:
  listen: 0.0.0.0:8080
  token: tok3n
provisioning:
  url: https://door:pr0v@prov.example.com/intercom/{mac}.yaml
buttons:
  - {name: bell, pin: P2, call: ["sip:201@pbx"]}
calls:
  auto_answer:
    allow: [sip:*@pbx]
`)
	orig := cfg.clone()
	m := cfg.Masked()
	if m.SIP.Password != "***" || m.API.Token != "***" || m.Door.Codes[0].Code != "***" || m.Door.Codes[1].Code != "***" {
		t.Errorf("secrets not masked: %+v", m)
	}
	if m.SIP.User != "100" || m.Door.Codes[0].Relay != "door" {
		t.Errorf("non-secrets changed: user %q, relay %q", m.SIP.User, m.Door.Codes[0].Relay)
	}
	out, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "tok3n", "1234", "9876", "pr0v"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("masked output shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "https://door:%2A%2A%2A@prov.example.com/") && !strings.Contains(string(out), "https://door:***@prov.example.com/") {
		t.Errorf("provisioning url not masked readably:\n%s", out)
	}

	// Writing through every slice of the copy must not reach the original.
	m.Buttons[0].Call[0] = "x"
	m.Buttons[0].Name = "x"
	m.Calls.AutoAnswer.Allow[0] = "x"
	m.Relays[0].Name = "x"
	m.Door.DTMF[0] = "x"
	m.Audio.Codecs[0] = "x"
	if !reflect.DeepEqual(cfg, orig) {
		t.Errorf("Masked or its copy changed the original:\n got %+v\nwant %+v", cfg, orig)
	}
	if cfg.SIP.Password != "s3cret" || cfg.Door.Codes[0].Code != "1234" {
		t.Errorf("original lost its secrets")
	}
}

func TestMaskedLeavesEmptySecretsEmpty(t *testing.T) {
	m := Default().Masked()
	if m.SIP.Password != "" || m.API.Token != "" || m.Provisioning.URL != "" {
		t.Errorf("empty secrets became %q, %q, %q", m.SIP.Password, m.API.Token, m.Provisioning.URL)
	}
}

func TestDefaultIsValid(t *testing.T) {
	// A file with one harmless key must equal Default() with the defaults
	// that depend on other keys filled in: no hidden defaults.
	cfg := mustParse(t, "device: {}\n")
	want := Default()
	want.normalize()
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v, want Default() %+v", cfg, want)
	}
}

// SIP over TLS listens on its own port unless sip.listen says otherwise.
func TestListenDefaultFollowsTransport(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"sip: {transport: udp}\n", "0.0.0.0:5060"},
		{"sip: {transport: tcp}\n", "0.0.0.0:5060"},
		{"sip: {transport: tls, registrar: pbx.example.com, user: \"100\"}\n", "0.0.0.0:5061"},
		{"sip: {transport: tls, registrar: pbx.example.com, user: \"100\", listen: \"0.0.0.0:5060\"}\n", "0.0.0.0:5060"},
	} {
		if got := mustParse(t, tc.yaml).SIP.Listen; got != tc.want {
			t.Errorf("%q: sip.listen %q, want %q", tc.yaml, got, tc.want)
		}
	}
}
