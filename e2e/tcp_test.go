package e2e

// Acceptance 1 of issue 8: registration and calls over TCP through
// kamailio, and reconnecting after kamailio restarts.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// streamStationYAML is testdata/station.yaml.tmpl over {{.Transport}}
// (tcp or tls) with a registration interval far above the reconnect
// bound; with {{.CA}} set, TLS trusts only that CA, and {{.Cert}} gives
// the station a server certificate.
const streamStationYAML = `device:
  name: e2e door {{.Transport}}
sip:
  transport: {{.Transport}}
  listen: {{.SIPListen}}
  registrar: "{{.Registrar}}"
  user: "100"
  password: pw-100
  register_expires: 300s
  keepalive: 25s
  nat: auto
{{- if .CA}}
  tls:
    ca: {{.CA}}
{{- if .Cert}}
    cert: {{.Cert}}
    key: {{.Key}}
{{- end}}
{{- end}}
` + fileStationYAML

// fileStationYAML is the part of the e2e station configs after sip: a
// bell on GPIO17 calling {{.Call}}, the file audio backend, the API.
const fileStationYAML = `calls:
  ring_timeout: 20s
  max_duration: 3m
  auto_answer:
    enabled: true
gpio:
  driver: sim
buttons:
  - name: bell
    pin: GPIO17
    active: low
    pull: up
    debounce: 30ms
    call: ["{{.Call}}"]
relays:
  - {name: door, pin: GPIO27, active: high, pulse: 1s, max_on: 5s}
audio:
  backend: file
  input: {{.Input}}
  output: {{.Output}}
  codecs: [PCMU, PCMA]
api:
  listen: {{.API}}
`

// newFileStation prepares a station that runs in its own directory with
// free SIP and API ports and a 440 Hz tone as its microphone; data holds
// what fileStationYAML and a sip section with {{.SIPListen}} need.
func newFileStation(t *testing.T) (*station, string, map[string]any) {
	t.Helper()
	requireTools(t, "sox")
	dir := filepath.Join(t.TempDir(), "station")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := &station{
		SIPAddr: fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)),
		API:     fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)),
		Output:  filepath.Join(dir, "speaker.wav"),
		Events:  &eventLog{},
	}
	input := filepath.Join(dir, "mic.wav")
	sineWAV(t, input, 440, 10)
	return st, dir, map[string]any{
		"SIPListen": st.SIPAddr, "Input": input, "Output": st.Output,
		"API": strings.TrimPrefix(st.API, "http://"),
	}
}

// startTCPStation runs a station registered to k over TCP as user 100,
// its bell calling 201 at k, its microphone a 440 Hz tone.
func startTCPStation(t *testing.T, k *kamailio) *station {
	t.Helper()
	st, dir, data := newFileStation(t)
	data["Transport"], data["Registrar"], data["Call"] = "tcp", k.Addr, k.URI("201")
	st.runTemplate(t, dir, template.Must(template.New("station").Parse(streamStationYAML)), data)
	return st
}

// registeredOver is a condition: kamailio's location table holds user's
// contact with transport=transport.
func (k *kamailio) registeredOver(user, transport string) func() error {
	return func() error {
		if err := k.registered(user)(); err != nil {
			return err
		}
		c, err := k.Contacts()
		if err != nil {
			return err
		}
		for _, addr := range c[user] {
			if strings.Contains(addr, "transport="+transport) {
				return nil
			}
		}
		return fmt.Errorf("%s registered as %v, not over %s", user, c[user], transport)
	}
}

// bellCallWithTones presses the bell, lets phone p accept, checks audio
// both ways (440 Hz from the door, 1000 Hz from the phone) and hangs up.
func bellCallWithTones(t *testing.T, st *station, p *phone) {
	t.Helper()
	hangupWithTones(t, st, p, bellAnswered(t, st, p))
}

// bellAnswered presses the bell and lets phone p accept; it returns the
// phone's event mark from before the press.
func bellAnswered(t *testing.T, st *station, p *phone) int {
	t.Helper()
	mp, ms := p.Events.mark(), st.Events.mark()
	st.setPin(t, "GPIO17", "low") // the bell is active low
	eventually(t, 5*time.Second, "bell press starts a call",
		st.cond("call.state calling", func(s stationStatus) bool { return s.Call.State == "calling" }))
	st.setPin(t, "GPIO17", "high")
	p.Events.waitFor(t, mp, "CALL_INCOMING", 10*time.Second)
	p.Accept(t)
	p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))
	st.Events.waitFor(t, ms, "answered", 5*time.Second)
	return mp
}

// phoneCallsStation has p call the station (user 100 at k) and waits until
// both are in the call; it returns p's event mark from before the call.
func phoneCallsStation(t *testing.T, st *station, p *phone, k *kamailio) int {
	t.Helper()
	mp, ms := p.Events.mark(), st.Events.mark()
	p.Dial(t, k.URI("100"))
	p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	eventually(t, 5*time.Second, "station in the incoming call", st.callIs("active"))
	st.Events.waitFor(t, ms, "answered", 5*time.Second)
	return mp
}

// hangupWithTones lets the call between the station and phone p run until
// p has heard the door, hangs up from the station and checks the tones
// both ways; mp is the phone's event mark from before the call.
func hangupWithTones(t *testing.T, st *station, p *phone, mp int) {
	t.Helper()
	out := st.Output
	eventually(t, 15*time.Second, p.User+" hears the door for 2s", p.heard(2*time.Second))
	st.postOK(t, "/api/v1/hangup", nil)
	p.Events.waitFor(t, mp, "CALL_CLOSED", 10*time.Second)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))

	rec, err := p.decRecording()
	if err != nil {
		t.Fatal(err)
	}
	assertTone(t, p.User+" hears the door's microphone", rec, 440, 650)
	// The file backend rewrites its header about once a second and at close.
	_ = poll(5*time.Second, heardTone(out, 1000, 1300))
	assertTone(t, "the door's speaker plays "+p.User+"'s microphone", out, 1000, 1300)
}

// TestTCPRegisterCallAndReconnect: the station registers through kamailio
// over TCP and rings phone 201 with audio both ways; kamailio restarts
// (registrations and connections lost) and the station is registered
// again over a new connection long before its 300 s refresh; then a call
// from the phone reaches the station over TCP, and the bell rings 201
// again.
func TestTCPRegisterCallAndReconnect(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k := startKamailio(t, kamailioOptions{TCP: true, RecordRoute: true})
	p := startPhone(t, phoneOptions{User: "201", Registrar: k, ToneHz: 1000})
	st := startTCPStation(t, k)
	eventually(t, registerTimeout, "station registered over TCP",
		all(k.registeredOver("100", "tcp"), st.registrationIs("registered")))
	if r := st.Status(t).Registration; r.Transport != "tcp" || r.Address != k.Addr {
		t.Errorf("status registration transport %q address %q, want tcp and kamailio's %s", r.Transport, r.Address, k.Addr)
	}

	bellCallWithTones(t, st, p)

	k.Stop(t)
	k.Start(t)
	// The restart lost every binding; the phone's comes back only at its
	// own refresh, the station's at once.
	eventually(t, 30*time.Second, "station registered again over TCP after the restart",
		all(k.registeredOver("100", "tcp"), st.registrationIs("registered")))

	// kamailio routes a call to the station's TCP contact.
	phoneCallsStation(t, st, p, k)
	p.Hangup(t)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))

	// A phone that registers after the restart gets the bell.
	p.proc.stop(t)
	p2 := startPhone(t, phoneOptions{User: "201", Registrar: k, ToneHz: 1000})
	bellCallWithTones(t, st, p2)
}
