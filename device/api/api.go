// Package api serves the door station's local HTTP API (DESIGN §5): status,
// commands, Server-Sent Events and Prometheus metrics.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"time"
)

// Errors a Station returns so that the API can pick the HTTP status.
var (
	ErrNotFound   = errors.New("not found")
	ErrBadRequest = errors.New("bad request")
	ErrConflict   = errors.New("conflict")
)

// maxBody bounds request bodies; every command body is a few bytes of JSON.
const maxBody = 4 << 10

// Station is what the API drives and reports on.
type Station interface {
	Status(ctx context.Context) (Status, error)
	PressButton(ctx context.Context, name string) error
	PulseRelay(ctx context.Context, name string, d time.Duration) error
	Call(ctx context.Context, uri string) error
	Hangup(ctx context.Context) error
	SetSimPin(ctx context.Context, pin string, high bool) error
	Subscribe() (events <-chan Event, cancel func())
	WriteMetrics(ctx context.Context, w io.Writer) error
	// CheckProvisioning starts a configuration fetch without waiting for
	// it; ErrConflict when provisioning is not configured.
	CheckProvisioning(ctx context.Context) error
	// ProvisioningStatus reports the configuration fetcher; nil when
	// provisioning is not configured.
	ProvisioningStatus() *ProvisioningStatus
}

// Status is the document of GET /api/v1/status.
type Status struct {
	Version      string                 `json:"version"`
	Uptime       string                 `json:"uptime"`
	Registration Registration           `json:"registration"`
	Call         CallStatus             `json:"call"`
	Relays       map[string]RelayStatus `json:"relays"`
	Inputs       map[string]InputStatus `json:"inputs"`
	Buttons      map[string]InputStatus `json:"buttons"`
	LEDs         map[string]string      `json:"leds"`
	Door         DoorStatus             `json:"door"`
	Media        *MediaStatus           `json:"media,omitempty"` // while a call's media runs
	Audio        *AudioStatus           `json:"audio,omitempty"` // sound-card health, when it is watched
	// Provisioning is filled in from Station.ProvisioningStatus.
	Provisioning *ProvisioningStatus `json:"provisioning,omitempty"`
	// SIPDefence counts what the SIP defence against strangers dropped.
	SIPDefence *SIPDefenceStatus `json:"sip_defence,omitempty"`
}

// SIPDefenceStatus counts SIP messages dropped without an answer since
// start: RateLimited from sources over their rate or blocked, Scanners
// requests with a scanner's User-Agent; Blocks counts the times a source
// was blocked, BlockedNow the sources blocked at the moment.
type SIPDefenceStatus struct {
	RateLimited uint64 `json:"rate_limited"`
	Scanners    uint64 `json:"scanners"`
	Blocks      uint64 `json:"blocks"`
	BlockedNow  int    `json:"blocked_now"`
}

// ProvisioningStatus reports the configuration fetcher: its state and
// last error, when it last checked and last applied a change (RFC 3339,
// "" for never), and counts of checks, refused documents and rollbacks.
type ProvisioningStatus struct {
	State      string `json:"state"`
	URL        string `json:"url"`
	Error      string `json:"error"`
	LastCheck  string `json:"last_check"`
	LastChange string `json:"last_change"`
	Checks     uint64 `json:"checks"`
	Refused    uint64 `json:"refused"`
	Rollbacks  uint64 `json:"rollbacks"`
}

// AudioStatus counts sound-card trouble since start: overruns and
// underruns, failed transfers or opens, and reopens after a failure; Down
// is how many streams are waiting to be reopened now.
type AudioStatus struct {
	Xruns    uint64 `json:"xruns"`
	Failures uint64 `json:"failures"`
	Reopens  uint64 `json:"reopens"`
	Down     int    `json:"down"`
}

// MediaStatus reports a call's audio: RTP counts, the jitter buffer, and
// the RTCP figures of RFC 3550 §6.4. Times are in milliseconds; loss
// fractions from 0 to 1. Lost counts our stream's loss as expected minus
// received packets; RemoteLost and RemoteLossFraction are what the far
// end's reports say of the stream we send, RTT is 0 until measured.
type MediaStatus struct {
	Codec              string  `json:"codec"`
	PtimeMS            float64 `json:"ptime_ms"`
	PacketsSent        uint64  `json:"packets_sent"`
	PacketsReceived    uint64  `json:"packets_received"`
	Lost               int64   `json:"lost"`
	LossFraction       float64 `json:"loss_fraction"`
	Late               uint64  `json:"late"`
	Concealed          uint64  `json:"concealed"`
	JitterMS           float64 `json:"jitter_ms"`
	JitterTargetMS     float64 `json:"jitter_target_ms"`
	RTTMS              float64 `json:"rtt_ms"`
	RemoteLost         int64   `json:"remote_lost"`
	RemoteLossFraction float64 `json:"remote_loss_fraction"`
	RemoteJitterMS     float64 `json:"remote_jitter_ms"`
	RTCPSent           uint64  `json:"rtcp_sent"`
	RTCPReceived       uint64  `json:"rtcp_received"`
	// SRTP is the SDES suite protecting the call, "none" for plain RTP;
	// SRTPRefused counts SRTP/SRTCP packets that failed authentication
	// or were replayed.
	SRTP        string `json:"srtp"`
	SRTPRefused uint64 `json:"srtp_refused"`
}

// Registration is the SIP registration part of Status.
type Registration struct {
	State     string `json:"state"`
	Registrar string `json:"registrar"`
	ExpiresIn string `json:"expires_in"`
	Error     string `json:"error,omitempty"`
	// Transport is the SIP transport in use, "udp" or "tcp"; Address the
	// registrar's (or outbound proxy's) IP:port that answered, "" until
	// one did.
	Transport string `json:"transport"`
	Address   string `json:"address"`
}

// CallStatus is the call part of Status. Direction is an active call's
// media direction from the station's side (RFC 3264 section 6.1):
// "sendrecv", or "sendonly", "recvonly" or "inactive" while one side holds
// the call, which Hold then reports; "" without an active call.
type CallStatus struct {
	State     string `json:"state"`
	Remote    string `json:"remote"`
	Since     string `json:"since"`
	Direction string `json:"direction,omitempty"`
	Hold      bool   `json:"hold"`
}

// RelayStatus reports one relay.
type RelayStatus struct {
	Active bool   `json:"active"`
	Cycles uint64 `json:"cycles"`
}

// InputStatus reports one debounced input or button. Inputs add their role
// and, for door_sensor and tamper, its state (open/closed, tampered/ok).
type InputStatus struct {
	Active bool   `json:"active"`
	Role   string `json:"role,omitempty"`
	State  string `json:"state,omitempty"`
}

// DoorStatus reports the code lock.
type DoorStatus struct {
	LockedOut  bool   `json:"locked_out"`
	LockoutFor string `json:"lockout_remaining,omitempty"`
}

// Event is one message of GET /api/v1/events.
type Event struct {
	Type string
	Time time.Time
	Data map[string]any
}

// MarshalJSON flattens Data beside "type" and "time".
func (e Event) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Data)+2)
	for k, v := range e.Data {
		m[k] = v
	}
	m["type"] = e.Type
	m["time"] = e.Time.UTC().Format(time.RFC3339Nano)
	return json.Marshal(m)
}

// Config configures the handler.
type Config struct {
	Station Station
	// Token, when set, is required as "Authorization: Bearer TOKEN".
	Token  string
	Logger *slog.Logger
}

// Handler returns the API's HTTP handler.
func Handler(cfg Config) http.Handler {
	h := &handler{st: cfg.Station, token: []byte(cfg.Token), log: cfg.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", h.status)
	mux.HandleFunc("POST /api/v1/buttons/{name}/press", h.press)
	mux.HandleFunc("POST /api/v1/relays/{name}/pulse", h.pulse)
	mux.HandleFunc("POST /api/v1/call", h.call)
	mux.HandleFunc("POST /api/v1/hangup", h.hangup)
	mux.HandleFunc("GET /api/v1/events", h.events)
	mux.HandleFunc("POST /api/v1/sim/pins/{pin}", h.simPin)
	mux.HandleFunc("POST /api/v1/provisioning/check", h.checkProvisioning)
	mux.HandleFunc("GET /metrics", h.metrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return h.auth(mux)
}

type handler struct {
	st    Station
	token []byte
	log   *slog.Logger
}

func (h *handler) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(h.token) > 0 {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), h.token) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="intercom"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.st.Status(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	st.Provisioning = h.st.ProvisioningStatus()
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) press(w http.ResponseWriter, r *http.Request) {
	if err := h.st.PressButton(r.Context(), r.PathValue("name")); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"result": "pressed"})
}

func (h *handler) pulse(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Duration string `json:"duration"`
	}
	if err := decodeBody(r, &body, true); err != nil {
		h.fail(w, err)
		return
	}
	var d time.Duration
	if body.Duration != "" {
		var err error
		d, err = time.ParseDuration(body.Duration)
		if err != nil || d <= 0 {
			h.fail(w, fmt.Errorf("duration %q: must be a positive Go duration such as \"3s\": %w", body.Duration, ErrBadRequest))
			return
		}
	}
	if err := h.st.PulseRelay(r.Context(), r.PathValue("name"), d); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"result": "pulsed"})
}

func (h *handler) call(w http.ResponseWriter, r *http.Request) {
	var body struct {
		URI string `json:"uri"`
	}
	if err := decodeBody(r, &body, false); err != nil {
		h.fail(w, err)
		return
	}
	if !strings.HasPrefix(body.URI, "sip:") && !strings.HasPrefix(body.URI, "sips:") {
		h.fail(w, fmt.Errorf("uri %q: must be a sip: or sips: URI: %w", body.URI, ErrBadRequest))
		return
	}
	if err := h.st.Call(r.Context(), body.URI); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"result": "calling"})
}

func (h *handler) hangup(w http.ResponseWriter, r *http.Request) {
	if err := h.st.Hangup(r.Context()); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"result": "hung up"})
}

func (h *handler) simPin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Level string `json:"level"`
	}
	if err := decodeBody(r, &body, false); err != nil {
		h.fail(w, err)
		return
	}
	var high bool
	switch strings.ToLower(body.Level) {
	case "high":
		high = true
	case "low":
	default:
		h.fail(w, fmt.Errorf("level %q: must be \"low\" or \"high\": %w", body.Level, ErrBadRequest))
		return
	}
	if err := h.st.SetSimPin(r.Context(), r.PathValue("pin"), high); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"pin": r.PathValue("pin"), "level": strings.ToLower(body.Level)})
}

func (h *handler) checkProvisioning(w http.ResponseWriter, r *http.Request) {
	if err := h.st.CheckProvisioning(r.Context()); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "checking"})
}

func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	events, cancel := h.st.Subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	// A comment line first so clients see the stream open before any event.
	_, _ = io.WriteString(w, ": intercom events\n\n")
	flusher.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case ev, ok := <-events:
			if !ok {
				return
			}
			data, err := json.Marshal(ev)
			if err != nil {
				h.log.Error("encode event", "type", ev.Type, "err", err)
				continue
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, data); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

func (h *handler) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := h.st.WriteMetrics(r.Context(), w); err != nil {
		h.log.Warn("write metrics", "err", err)
		return
	}
	if err := writeProvisioningMetrics(w, h.st.ProvisioningStatus()); err != nil {
		h.log.Warn("write metrics", "err", err)
		return
	}
	// Under the Go collector's standard name: a count that keeps growing
	// shows goroutines leaked, for example by calls.
	if _, err := fmt.Fprintf(w, "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine()); err != nil {
		h.log.Warn("write metrics", "err", err)
	}
}

// writeProvisioningMetrics adds the fetcher's counters, when there is one,
// to the station's exposition.
func writeProvisioningMetrics(w io.Writer, p *ProvisioningStatus) error {
	if p == nil {
		return nil
	}
	for _, m := range []struct {
		name, help string
		value      uint64
	}{
		{"intercom_provisioning_checks_total", "Provisioning fetches attempted.", p.Checks},
		{"intercom_provisioning_refused_total", "Fetched configurations refused by verification or validation.", p.Refused},
		{"intercom_provisioning_rollbacks_total", "Applied configurations rolled back because the station could not register with them.", p.Rollbacks},
	} {
		if _, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", m.name, m.help, m.name, m.name, m.value); err != nil {
			return err
		}
	}
	return nil
}

func (h *handler) fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code = http.StatusServiceUnavailable
	}
	if code == http.StatusInternalServerError {
		h.log.Error("api request failed", "err", err)
	}
	writeError(w, code, err.Error())
}

// decodeBody reads a small JSON object strictly; an empty body is accepted
// only when optional is set.
func decodeBody(r *http.Request, v any, optional bool) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read body: %v: %w", err, ErrBadRequest)
	}
	if len(data) > maxBody {
		return fmt.Errorf("body larger than %d bytes: %w", maxBody, ErrBadRequest)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		if optional {
			return nil
		}
		return fmt.Errorf("empty body, expected a JSON object: %w", ErrBadRequest)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %v: %w", err, ErrBadRequest)
	}
	// More misses a stray closing bracket; only the end of the input will do.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("body: trailing data after the JSON object: %w", ErrBadRequest)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
