package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
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
	prov    *ProvisioningStatus // nil: provisioning not configured
	checks  int
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
func (f *fakeStation) CheckProvisioning(context.Context) error {
	if f.prov == nil {
		return fmt.Errorf("provisioning is not configured: %w", ErrConflict)
	}
	f.checks++
	return nil
}
func (f *fakeStation) ProvisioningStatus() *ProvisioningStatus { return f.prov }

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
		{"POST", "/api/v1/relays/door/pulse", `{"duration":"1s"}}`, 400},
		{"POST", "/api/v1/call", `{"uri":"sip:201@pbx"}]`, 400},
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

func TestProvisioningCheck(t *testing.T) {
	f := newFake()
	h := Handler(Config{Station: f, Token: "s3cret"})
	code, body := do(t, h, "POST", "/api/v1/provisioning/check", "", "s3cret")
	if msg, _ := body["error"].(string); code != 409 || !strings.Contains(msg, "provisioning is not configured") {
		t.Errorf("without provisioning: %d %v, want 409", code, body)
	}
	f.prov = &ProvisioningStatus{State: "idle"}
	if code, _ := do(t, h, "POST", "/api/v1/provisioning/check", "", ""); code != 401 || f.checks != 0 {
		t.Errorf("without token: %d, %d checks; want 401 and none", code, f.checks)
	}
	if code, _ := do(t, h, "GET", "/api/v1/provisioning/check", "", "s3cret"); code != 404 || f.checks != 0 {
		t.Errorf("GET: %d, %d checks; want 404 and none", code, f.checks)
	}
	code, body = do(t, h, "POST", "/api/v1/provisioning/check", "", "s3cret")
	if code != 202 || body["status"] != "checking" || f.checks != 1 {
		t.Errorf("check: %d %v, %d checks; want 202 checking and one", code, body, f.checks)
	}
}

func TestStatusProvisioning(t *testing.T) {
	f := newFake()
	h := Handler(Config{Station: f})
	if _, body := do(t, h, "GET", "/api/v1/status", "", ""); body["provisioning"] != nil {
		t.Errorf("provisioning without a fetcher: %v", body["provisioning"])
	}
	f.prov = &ProvisioningStatus{State: "idle", URL: "https://prov/x.yaml", LastCheck: "2026-01-01T12:00:00Z", Checks: 3, Refused: 1}
	_, body := do(t, h, "GET", "/api/v1/status", "", "")
	want := map[string]any{"state": "idle", "url": "https://prov/x.yaml", "error": "", "last_check": "2026-01-01T12:00:00Z",
		"last_change": "", "checks": 3.0, "refused": 1.0, "rollbacks": 0.0}
	if !reflect.DeepEqual(body["provisioning"], want) {
		t.Errorf("provisioning\n got %v\nwant %v", body["provisioning"], want)
	}
}

func TestMetricsProvisioning(t *testing.T) {
	f := newFake()
	get := func() string {
		rec := httptest.NewRecorder()
		Handler(Config{Station: f}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	if m := get(); strings.Contains(m, "intercom_provisioning_") {
		t.Errorf("provisioning metrics without a fetcher:\n%s", m)
	}
	f.prov = &ProvisioningStatus{Checks: 7, Refused: 2, Rollbacks: 1}
	m := get()
	for _, line := range []string{
		"intercom_up 1\n",
		"# TYPE intercom_provisioning_checks_total counter\nintercom_provisioning_checks_total 7\n",
		"# TYPE intercom_provisioning_refused_total counter\nintercom_provisioning_refused_total 2\n",
		"# TYPE intercom_provisioning_rollbacks_total counter\nintercom_provisioning_rollbacks_total 1\n",
	} {
		if !strings.Contains(m, line) {
			t.Errorf("metrics lack %q:\n%s", line, m)
		}
	}
}
