package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fuzzToken is the bearer token the fuzzed API requires.
const fuzzToken = "s3cret"

// FuzzCommandBodies sends an operator's command to the API: one of the
// commands that take a body or a name (pulse, call, SIM pin, press), the
// name in its path, the JSON body and the Authorization header.
// Invariants: no panic; the answer is JSON with a status the API
// documents; a refused request (wrong token, bad body) reaches nothing in
// the station; an accepted one passes on exactly what the body said.
func FuzzCommandBodies(f *testing.F) {
	f.Add(uint8(0), "door", `{"duration":"3s"}`, "Bearer "+fuzzToken)
	f.Add(uint8(0), "door", "", "Bearer "+fuzzToken)
	f.Add(uint8(1), "", `{"uri":"sip:201@pbx"}`, "Bearer "+fuzzToken)
	f.Add(uint8(2), "GPIO17", `{"level":"HIGH"}`, "Bearer "+fuzzToken)
	f.Add(uint8(3), "bell", "", "Bearer "+fuzzToken)
	f.Add(uint8(0), "door", `{"duration":"-1s"}`, "Bearer "+fuzzToken)
	f.Add(uint8(1), "", `{"uri":"tel:+1"} {}`, "Bearer "+fuzzToken)
	f.Add(uint8(2), "x", `{"level":"high","extra":1}`, "Bearer wrong")
	f.Fuzz(func(t *testing.T, cmd uint8, name, body, auth string) {
		st := newFake()
		h := Handler(Config{Station: st, Token: fuzzToken})
		var path string
		switch cmd % 4 {
		case 0:
			path = "/api/v1/relays/" + url.PathEscape(name) + "/pulse"
		case 1:
			path = "/api/v1/call"
		case 2:
			path = "/api/v1/sim/pins/" + url.PathEscape(name)
		case 3:
			path = "/api/v1/buttons/" + url.PathEscape(name) + "/press"
		}
		req, err := http.NewRequest(http.MethodPost, "http://station"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", auth)
		if req.Header.Get("Authorization") != auth {
			return // not representable as a header value
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		touched := len(st.pressed) + len(st.pulses) + len(st.simPins) + len(st.calls)
		if rec.Code >= 300 && rec.Code < 400 {
			// net/http redirects an unclean path (an empty or dot name).
			if touched != 0 {
				t.Fatalf("POST %s: redirected %d but reached the station", path, rec.Code)
			}
			return
		}
		var answer map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("POST %s %q: answer %q is not JSON: %v", path, body, rec.Body, err)
		}
		switch rec.Code {
		case http.StatusOK, http.StatusAccepted:
		case http.StatusUnauthorized, http.StatusBadRequest, http.StatusNotFound:
			if _, ok := answer["error"].(string); !ok {
				t.Fatalf("POST %s %q: %d without an error: %v", path, body, rec.Code, answer)
			}
			if touched != 0 {
				t.Fatalf("POST %s %q: refused %d but reached the station", path, body, rec.Code)
			}
			return
		default:
			t.Fatalf("POST %s %q: status %d", path, body, rec.Code)
		}
		if auth != "Bearer "+fuzzToken {
			t.Fatalf("POST %s with Authorization %q accepted", path, auth)
		}
		if touched != 1 {
			t.Fatalf("POST %s %q: %d station calls", path, body, touched)
		}
		switch cmd % 4 {
		case 0:
			checkPulse(t, st, name, body)
		case 1:
			var b struct{ URI string }
			_ = json.Unmarshal([]byte(body), &b)
			if got := st.calls[0]; got != b.URI || !(strings.HasPrefix(got, "sip:") || strings.HasPrefix(got, "sips:")) {
				t.Fatalf("body %q called %q", body, got)
			}
		case 2:
			var b struct{ Level string }
			_ = json.Unmarshal([]byte(body), &b)
			if high, ok := st.simPins[name]; !ok || high != strings.EqualFold(b.Level, "high") {
				t.Fatalf("body %q set pin %q: %v", body, name, st.simPins)
			}
		}
	})
}

// checkPulse checks that an accepted pulse reached the named relay with
// the body's duration, or 0 (the relay's own) without one.
func checkPulse(t *testing.T, st *fakeStation, name, body string) {
	t.Helper()
	d, ok := st.pulses[name]
	if !ok {
		t.Fatalf("pulse of %q reached %v", name, st.pulses)
	}
	var b struct{ Duration string }
	_ = json.Unmarshal([]byte(body), &b)
	want := time.Duration(0)
	if b.Duration != "" {
		var err error
		if want, err = time.ParseDuration(b.Duration); err != nil || want <= 0 {
			t.Fatalf("body %q accepted", body)
		}
	}
	if d != want {
		t.Fatalf("body %q pulsed %v", body, d)
	}
}
