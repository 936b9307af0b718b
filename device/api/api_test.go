package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeStation struct {
	pressed []string
	pulses  map[string]time.Duration
	simPins map[string]bool
	calls   []string
	events  chan Event
}

func newFake() *fakeStation {
	return &fakeStation{pulses: map[string]time.Duration{}, simPins: map[string]bool{}, events: make(chan Event, 4)}
}

func (f *fakeStation) Status(context.Context) (Status, error) {
	return Status{Version: "1.0", Call: CallStatus{State: "idle"}, Relays: map[string]RelayStatus{"door": {Cycles: 3}}}, nil
}
func (f *fakeStation) PressButton(_ context.Context, name string) error {
	if name != "bell" {
		return fmt.Errorf("button %q: %w", name, ErrNotFound)
	}
	f.pressed = append(f.pressed, name)
	return nil
}
func (f *fakeStation) PulseRelay(_ context.Context, name string, d time.Duration) error {
	f.pulses[name] = d
	return nil
}
func (f *fakeStation) Call(_ context.Context, uri string) error {
	f.calls = append(f.calls, uri)
	return nil
}
func (f *fakeStation) Hangup(context.Context) error { return fmt.Errorf("no call: %w", ErrConflict) }
func (f *fakeStation) SetSimPin(_ context.Context, pin string, high bool) error {
	f.simPins[pin] = high
	return nil
}
func (f *fakeStation) Subscribe() (<-chan Event, func()) { return f.events, func() {} }
func (f *fakeStation) WriteMetrics(_ context.Context, w io.Writer) error {
	_, err := io.WriteString(w, "intercom_up 1\n")
	return err
}

func do(t *testing.T, h http.Handler, method, path, body, token string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m map[string]any
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, rec.Body.String(), err)
		}
	}
	return rec.Code, m
}

func TestCommands(t *testing.T) {
	f := newFake()
	h := Handler(Config{Station: f})
	tests := []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/api/v1/status", "", 200},
		{"POST", "/api/v1/buttons/bell/press", "", 202},
		{"POST", "/api/v1/buttons/nope/press", "", 404},
		{"POST", "/api/v1/relays/door/pulse", "", 202},
		{"POST", "/api/v1/relays/gate/pulse", `{"duration":"2s"}`, 202},
		{"POST", "/api/v1/relays/door/pulse", `{"duration":"forever"}`, 400},
		{"POST", "/api/v1/relays/door/pulse", `{"duration":"-1s"}`, 400},
		{"POST", "/api/v1/relays/door/pulse", `{"duration":"1s","extra":1}`, 400},
		{"POST", "/api/v1/relays/door/pulse", `{"duration":"1s"}{}`, 400},
		{"POST", "/api/v1/relays/door/pulse", `[`, 400},
		{"POST", "/api/v1/call", `{"uri":"sip:201@pbx"}`, 202},
		{"POST", "/api/v1/call", `{"uri":"http://x"}`, 400},
		{"POST", "/api/v1/call", ``, 400},
		{"POST", "/api/v1/call", `{"uri":"sip:` + strings.Repeat("a", maxBody) + `"}`, 400},
		{"POST", "/api/v1/hangup", "", 409},
		{"POST", "/api/v1/sim/pins/GPIO17", `{"level":"low"}`, 200},
		{"POST", "/api/v1/sim/pins/GPIO17", `{"level":"sideways"}`, 400},
		{"GET", "/api/v1/nothing", "", 404},
		{"DELETE", "/api/v1/status", "", 404},
	}
	for _, tt := range tests {
		code, body := do(t, h, tt.method, tt.path, tt.body, "")
		if code != tt.code {
			t.Errorf("%s %s %q: status %d, want %d (%v)", tt.method, tt.path, tt.body, code, tt.code, body)
		}
		if code >= 400 && body["error"] == "" {
			t.Errorf("%s %s: error body %v", tt.method, tt.path, body)
		}
	}
	if len(f.pressed) != 1 || f.pulses["door"] != 0 || f.pulses["gate"] != 2*time.Second {
		t.Errorf("commands reached the station wrongly: pressed %v pulses %v", f.pressed, f.pulses)
	}
	if len(f.calls) != 1 || f.calls[0] != "sip:201@pbx" || f.simPins["GPIO17"] {
		t.Errorf("calls %v sim pins %v", f.calls, f.simPins)
	}
}

func TestToken(t *testing.T) {
	h := Handler(Config{Station: newFake(), Token: "s3cret"})
	for _, tok := range []string{"", "wrong", "s3cret2", "s3cre"} {
		if code, _ := do(t, h, "GET", "/api/v1/status", "", tok); code != 401 {
			t.Errorf("token %q: status %d, want 401", tok, code)
		}
	}
	if code, _ := do(t, h, "GET", "/api/v1/status", "", "s3cret"); code != 200 {
		t.Errorf("right token: status %d", code)
	}
}

func TestEventsStream(t *testing.T) {
	f := newFake()
	srv := httptest.NewServer(Handler(Config{Station: f}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	f.events <- Event{Type: "door_opened", Time: time.Unix(0, 0), Data: map[string]any{"relay": "door"}}
	r := bufio.NewReader(resp.Body)
	var lines []string
	for len(lines) < 2 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, ":") {
			lines = append(lines, line)
		}
	}
	if lines[0] != "event: door_opened" {
		t.Fatalf("event line %q", lines[0])
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &data); err != nil {
		t.Fatal(err)
	}
	if data["type"] != "door_opened" || data["relay"] != "door" || data["time"] != "1970-01-01T00:00:00Z" {
		t.Fatalf("data %v", data)
	}
}

func TestMetrics(t *testing.T) {
	req := httptest.NewRequest("GET", "/metrics", nil)
	rec := httptest.NewRecorder()
	Handler(Config{Station: newFake()}).ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "intercom_up 1") {
		t.Fatalf("metrics %d %q", rec.Code, rec.Body.String())
	}
}
