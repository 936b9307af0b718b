package gpio

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/internal/clock/clocktest"
)

// shelly records the requests it gets and answers with status.
type shelly struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []*http.Request
	status int
}

func newShelly(t *testing.T) *shelly {
	t.Helper()
	s := &shelly{status: http.StatusOK}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		status := s.status
		s.mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"ison":true}`))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *shelly) setStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = code
}

func (s *shelly) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

type httpRig struct {
	clk    *clocktest.Fake
	shelly *shelly
	r      *HTTPRelay
	mu     sync.Mutex
	events []bool
}

func newHTTPRig(t *testing.T, cfg HTTPRelayConfig) *httpRig {
	t.Helper()
	hr := &httpRig{clk: clocktest.New(t0), shelly: newShelly(t)}
	cfg.Name = "door"
	cfg.URL = hr.shelly.srv.URL + cfg.URL
	cfg.Clock = hr.clk
	if cfg.MaxOn == 0 {
		cfg.MaxOn = maxOn
	}
	cfg.OnChange = func(active bool) {
		hr.mu.Lock()
		hr.events = append(hr.events, active)
		hr.mu.Unlock()
	}
	r, err := NewHTTPRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hr.r = r
	return hr
}

func (hr *httpRig) check(t *testing.T, active bool, cycles uint64, events ...bool) {
	t.Helper()
	hr.mu.Lock()
	got := slices.Clone(hr.events)
	hr.mu.Unlock()
	if hr.r.Active() != active || hr.r.Cycles() != cycles || !slices.Equal(got, events) {
		t.Fatalf("at %s: Active/Cycles/events = %v/%d/%v, want %v/%d/%v",
			hr.clk.Now().Sub(t0), hr.r.Active(), hr.r.Cycles(), got, active, cycles, events)
	}
}

func TestHTTPRelayShellyPulse(t *testing.T) {
	hr := newHTTPRig(t, HTTPRelayConfig{URL: "/relay/0?turn=on&timer={seconds}", User: "admin", Password: "s3cret-pw"})
	if err := hr.r.Pulse(2500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	reqs := hr.shelly.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	req := reqs[0]
	if req.Method != http.MethodGet || req.URL.Path != "/relay/0" || req.URL.RawQuery != "turn=on&timer=3" {
		t.Errorf("request %s %s, want GET /relay/0?turn=on&timer=3", req.Method, req.URL)
	}
	if u, p, ok := req.BasicAuth(); !ok || u != "admin" || p != "s3cret-pw" {
		t.Errorf("basic auth = %q/%q/%v", u, p, ok)
	}
	hr.check(t, true, 1, true)
	hr.clk.Advance(2500*time.Millisecond - time.Millisecond)
	hr.check(t, true, 1, true)
	hr.clk.Advance(time.Millisecond)
	hr.check(t, false, 1, true, false)
}

func TestHTTPRelayPOSTWithToken(t *testing.T) {
	hr := newHTTPRig(t, HTTPRelayConfig{URL: "/open/{seconds}", Method: "post", Token: "tok-123"})
	if err := hr.r.Pulse(time.Second); err != nil {
		t.Fatal(err)
	}
	req := hr.shelly.requests()[0]
	if req.Method != http.MethodPost || req.URL.Path != "/open/1" {
		t.Errorf("request %s %s, want POST /open/1", req.Method, req.URL)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer tok-123" {
		t.Errorf("Authorization = %q", got)
	}
	if req.ContentLength != 0 {
		t.Errorf("request body of %d bytes, want none", req.ContentLength)
	}
}

func TestHTTPRelayCapsAtMaxOn(t *testing.T) {
	hr := newHTTPRig(t, HTTPRelayConfig{URL: "/relay/0?timer={seconds}", MaxOn: 3500 * time.Millisecond})
	if err := hr.r.Pulse(time.Hour); err != nil {
		t.Fatal(err)
	}
	// Rounding 3.5 s up would pass max_on; the device's timer gets 3 s.
	if q := hr.shelly.requests()[0].URL.RawQuery; q != "timer=3" {
		t.Errorf("query %q, want timer=3", q)
	}
	hr.clk.Advance(3500*time.Millisecond - time.Millisecond)
	hr.check(t, true, 1, true)
	hr.clk.Advance(time.Millisecond)
	hr.check(t, false, 1, true, false)
}

func TestHTTPRelayRepulseExtendsAndCountsOneCycle(t *testing.T) {
	hr := newHTTPRig(t, HTTPRelayConfig{URL: "/"})
	for range 2 {
		if err := hr.r.Pulse(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		hr.clk.Advance(time.Second)
	}
	hr.check(t, true, 1, true)
	hr.clk.Advance(time.Second)
	hr.check(t, false, 1, true, false)
	if err := hr.r.Pulse(time.Second); err != nil {
		t.Fatal(err)
	}
	hr.check(t, true, 2, true, false, true)
	if n := len(hr.shelly.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestHTTPRelayErrorsNameStatusNotSecrets(t *testing.T) {
	const pw, token = "pw-do-not-show", "tok-do-not-show"
	for _, cfg := range []HTTPRelayConfig{
		{URL: "/relay/0?turn=on&key=" + token, User: "admin", Password: pw},
		{URL: "/relay/0?turn=on&key=" + token, Token: token},
	} {
		hr := newHTTPRig(t, cfg)
		hr.shelly.setStatus(http.StatusInternalServerError)
		err := hr.r.Pulse(time.Second)
		if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), `"door"`) {
			t.Fatalf("err = %v, want one naming the relay and status 500", err)
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), token) {
			t.Fatalf("error leaks a secret: %v", err)
		}
		hr.check(t, false, 0)
	}
}

func TestHTTPRelayUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := "http://admin:pw-do-not-show@" + srv.Listener.Addr().String() + "/relay?key=tok-do-not-show"
	srv.Close()
	r, err := NewHTTPRelay(HTTPRelayConfig{Name: "door", URL: url, MaxOn: maxOn, Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Pulse(time.Second)
	if err == nil || strings.Contains(err.Error(), "do-not-show") {
		t.Fatalf("err = %v, want an error without secrets", err)
	}
	if r.Active() {
		t.Fatal("active after a failed request")
	}
}

func TestHTTPRelayClose(t *testing.T) {
	hr := newHTTPRig(t, HTTPRelayConfig{URL: "/"})
	if err := hr.r.Pulse(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := hr.r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := hr.r.Pulse(time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pulse after Close = %v, want ErrClosed", err)
	}
	hr.clk.Advance(time.Hour)
	hr.check(t, false, 1, true)
	if n := len(hr.shelly.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if hr.clk.Pending() != 0 {
		t.Errorf("%d timers left after Close", hr.clk.Pending())
	}
}

func TestNewHTTPRelayErrors(t *testing.T) {
	for _, cfg := range []HTTPRelayConfig{
		{URL: "", MaxOn: maxOn},
		{URL: "ftp://host/x", MaxOn: maxOn},
		{URL: "http:///nohost", MaxOn: maxOn},
		{URL: "http://h/%zz", MaxOn: maxOn},
		{URL: "http://h/", Method: "DELETE", MaxOn: maxOn},
		{URL: "http://h/", Token: "t", User: "u", MaxOn: maxOn},
		{URL: "http://h/"},
		{URL: "http://u:pw-do-not-show@h/%zz", MaxOn: maxOn},
	} {
		_, err := NewHTTPRelay(cfg)
		if err == nil {
			t.Errorf("%+v accepted", cfg)
		} else if strings.Contains(err.Error(), "do-not-show") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
	r, err := NewHTTPRelay(HTTPRelayConfig{Name: "door", URL: "http://h/", MaxOn: maxOn})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Pulse(0); err == nil {
		t.Error("zero pulse accepted")
	}
}

func TestPulseSeconds(t *testing.T) {
	for _, tt := range []struct {
		d, maxOn time.Duration
		want     string
	}{
		{time.Second, 10 * time.Second, "1"},
		{1001 * time.Millisecond, 10 * time.Second, "2"},
		{3 * time.Second, 3 * time.Second, "3"},
		{2500 * time.Millisecond, 2500 * time.Millisecond, "2"},
		{300 * time.Millisecond, 300 * time.Millisecond, "1"},
	} {
		if got := pulseSeconds(tt.d, tt.maxOn); got != tt.want {
			t.Errorf("pulseSeconds(%s, %s) = %s, want %s", tt.d, tt.maxOn, got, tt.want)
		}
	}
}
