package e2e

// Acceptance 3 of issue 4: door inputs and relays through the sim driver
// and the real binary: a door contact opened without an unlock raises an
// alarm over SSE, the exit button pulses the relay, and an HTTP relay
// receives its request when the right code is keyed in a call.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"
)

// inputsYAML is a station with a door contact, an exit button and a tamper
// switch on virtual pins, the door relay on a pin and the gate relay behind
// an HTTP URL that code 1234 opens.
const inputsYAML = `device:
  name: e2e inputs
sip:
  listen: {{.SIPListen}}
  registrar: "{{.Registrar}}"
  user: "100"
  password: pw-100
  register_expires: 60s
calls:
  hangup_after_door_open: 0s
gpio:
  driver: sim
relays:
  - {name: door, pin: GPIO27, active: high, pulse: 1s, max_on: 5s}
  - name: gate
    url: "{{.RelayURL}}/relay/0?turn=on&timer={seconds}"
    method: POST
    token: gate-token
    pulse: 2s
    max_on: 5s
inputs:
  - {name: door_contact, pin: GPIO5, active: low, pull: up, role: door_sensor, relay: door, held_open: 2s}
  - {name: exit, pin: GPIO6, active: low, pull: up, role: exit_button, relay: door}
  - {name: lid, pin: GPIO13, active: high, pull: down, role: tamper, block_relays: true}
door:
  codes:
    - {code: "1234", relay: gate}
audio:
  backend: "null"
api:
  listen: {{.API}}
`

// relayServer is the HTTP relay (a Shelly, say): it records each request.
type relayServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []relayRequest
}

type relayRequest struct {
	Method, Path, Query, Auth string
}

func startRelayServer(t *testing.T) *relayServer {
	t.Helper()
	rs := &relayServer{}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rs.mu.Lock()
		rs.reqs = append(rs.reqs, relayRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization")})
		rs.mu.Unlock()
		fmt.Fprintln(w, `{"ison": true}`)
	}))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *relayServer) requests() []relayRequest {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]relayRequest(nil), rs.reqs...)
}

// startInputsStation runs the station of inputsYAML; registrar may be nil
// (peer-to-peer).
func startInputsStation(t *testing.T, registrar *kamailio, relayURL string) *station {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "station")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := &station{
		SIPAddr: fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)),
		API:     fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)),
		Events:  &eventLog{},
	}
	reg := ""
	if registrar != nil {
		reg = registrar.Addr
	}
	st.runTemplate(t, dir, template.Must(template.New("inputs").Parse(inputsYAML)), map[string]string{
		"SIPListen": st.SIPAddr, "Registrar": reg, "RelayURL": relayURL,
		"API": strings.TrimPrefix(st.API, "http://"),
	})
	return st
}

// TestDoorContactAlarms: the door contact opens with no relay pulsed: an
// alarm "opened_without_unlock" at once and "held_open" after 2 s; after
// the exit button pulsed the door relay, opening raises no alarm.
func TestDoorContactAlarms(t *testing.T) {
	t.Parallel()
	rs := startRelayServer(t)
	st := startInputsStation(t, nil, rs.URL)
	ms := st.Events.mark()

	st.setPin(t, "GPIO5", "low") // the contact is active low: the door opens
	ev := st.Events.waitFor(t, ms, "alarm", 5*time.Second)
	if ev.Fields["reason"] != "opened_without_unlock" || ev.Fields["input"] != "door_contact" {
		t.Fatalf("first alarm: %s", ev.Raw)
	}
	eventually(t, 10*time.Second, "held-open alarm", func() error {
		for _, e := range st.Events.since(ms, "alarm") {
			if e.Fields["reason"] == "held_open" {
				return nil
			}
		}
		return fmt.Errorf("alarms so far: %s", st.Events.summary(ms))
	})
	if es := st.Events.since(ms, "input"); len(es) == 0 || es[0].Fields["state"] != "open" {
		t.Errorf("input events for the open door: %v", es)
	}
	st.setPin(t, "GPIO5", "high")
	eventually(t, 5*time.Second, "door closed", func() error {
		for _, e := range st.Events.since(ms, "input") {
			if e.Fields["state"] == "closed" {
				return nil
			}
		}
		return fmt.Errorf("events: %s", st.Events.summary(ms))
	})

	m2 := st.Events.mark()
	st.setPin(t, "GPIO6", "low") // exit button pressed
	st.Events.waitFor(t, m2, "door_opened", 5*time.Second)
	st.setPin(t, "GPIO6", "high")
	st.setPin(t, "GPIO5", "low")
	eventually(t, 5*time.Second, "door contact open after the exit button", func() error {
		for _, e := range st.Events.since(m2, "input") {
			if e.Fields["name"] == "door_contact" && e.Fields["state"] == "open" {
				return nil
			}
		}
		return fmt.Errorf("events: %s", st.Events.summary(m2))
	})
	consistently(t, time.Second, "no alarm after the exit button unlocked the door", func() error {
		for _, e := range st.Events.since(m2, "alarm") {
			if e.Fields["reason"] == "opened_without_unlock" {
				return fmt.Errorf("alarm: %s", e.Raw)
			}
		}
		return nil
	})
}

// TestExitButtonAndTamper: the exit button pulses the door relay (seen in
// the status and a door_opened event); an open tamper switch makes the API
// refuse to open the door but leaves the exit button working.
func TestExitButtonAndTamper(t *testing.T) {
	t.Parallel()
	rs := startRelayServer(t)
	st := startInputsStation(t, nil, rs.URL)
	before := st.Status(t).Relays["door"].Cycles
	ms := st.Events.mark()

	st.setPin(t, "GPIO6", "low")
	eventually(t, 5*time.Second, "door relay on", st.relayActive("door", true))
	st.setPin(t, "GPIO6", "high")
	ev := st.Events.waitFor(t, ms, "door_opened", 5*time.Second)
	if ev.Fields["relay"] != "door" || ev.Fields["source"] != "exit_button" {
		t.Errorf("door_opened: %s", ev.Raw)
	}
	eventually(t, 5*time.Second, "door relay off after its pulse", st.relayActive("door", false))
	if got := st.Status(t).Relays["door"].Cycles; got != before+1 {
		t.Errorf("door relay cycles %d, want %d", got, before+1)
	}

	m2 := st.Events.mark()
	st.setPin(t, "GPIO13", "high") // the lid is opened
	if ev := st.Events.waitFor(t, m2, "alarm", 5*time.Second); ev.Fields["reason"] != "tamper" {
		t.Fatalf("alarm: %s", ev.Raw)
	}
	code, body := st.post(t, "/api/v1/relays/door/pulse", nil)
	if code != http.StatusConflict || !strings.Contains(string(body), "tamper") {
		t.Errorf("API pulse while tampered: %d %s", code, body)
	}
	st.setPin(t, "GPIO6", "low")
	eventually(t, 5*time.Second, "exit button works while tampered", func() error {
		if n := len(st.Events.since(m2, "door_opened")); n != 1 {
			return fmt.Errorf("%d door_opened events: %s", n, st.Events.summary(m2))
		}
		return nil
	})
	st.setPin(t, "GPIO6", "high")
	st.setPin(t, "GPIO13", "low")
	eventually(t, 5*time.Second, "API opens the door once the lid is closed", func() error {
		if code, body := st.post(t, "/api/v1/relays/door/pulse", nil); code/100 != 2 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	if len(rs.requests()) != 0 {
		t.Errorf("the gate's HTTP relay was called: %v", rs.requests())
	}
}

// TestHTTPRelayOpensOnDTMF: code 1234 keyed as RFC 4733 events in a call
// through kamailio makes the station send its one request to the gate's
// HTTP relay, with the pulse length and the bearer token.
func TestHTTPRelayOpensOnDTMF(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	rs := startRelayServer(t)
	k := startKamailio(t, kamailioOptions{AuthInvite: true, RecordRoute: true})
	st := startInputsStation(t, k, rs.URL)
	eventually(t, registerTimeout, "station registered", all(k.registered("100"), st.registrationIs("registered")))
	ms := st.Events.mark()

	call := callFrom301(k, "gate-code", 200, "1234").start(t)
	eventually(t, 30*time.Second, "the HTTP relay got a request", func() error {
		if len(rs.requests()) == 0 {
			return fmt.Errorf("no request yet; station events %s", st.Events.summary(ms))
		}
		return nil
	})
	if err := call.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	reqs := rs.requests()
	want := relayRequest{Method: "POST", Path: "/relay/0", Query: "turn=on&timer=2", Auth: "Bearer gate-token"}
	if len(reqs) != 1 || reqs[0] != want {
		t.Fatalf("HTTP relay requests %+v, want one %+v", reqs, want)
	}
	if ev := st.Events.waitFor(t, ms, "door_opened", 5*time.Second); ev.Fields["relay"] != "gate" || ev.Fields["source"] != "dtmf" {
		t.Errorf("door_opened: %s", ev.Raw)
	}
	if c := st.Status(t).Relays["gate"].Cycles; c != 1 {
		t.Errorf("gate relay cycles %d, want 1", c)
	}
}
