package gpio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"intercom/internal/clock"
)

// defaultHTTPTimeout bounds one HTTP relay request when no client is given.
const defaultHTTPTimeout = 5 * time.Second

// secondsPlaceholder in an HTTP relay's URL is replaced by the pulse length
// in whole seconds, so a device with its own timer (a Shelly's
// "turn=on&timer={seconds}") switches off even if we crash.
const secondsPlaceholder = "{seconds}"

// HTTPRelayConfig describes a relay switched by an HTTP request, such as a
// Shelly.
type HTTPRelayConfig struct {
	Name     string
	URL      string // http or https; may contain {seconds}
	Method   string // GET (default) or POST
	User     string // basic auth, with Password
	Password string
	Token    string       // bearer token; not together with User/Password
	Client   *http.Client // nil means one with a 5 s timeout
	Clock    clock.Clock  // nil means clock.Real{}
	// MaxOn caps each pulse. It must be positive.
	MaxOn    time.Duration
	OnChange func(active bool) // called on each transition, in order, outside the relay's lock; may be nil
	// Cycles is where the cycle count starts, as in RelayConfig.
	Cycles uint64
}

// HTTPRelay is a relay behind a URL. One request switches it on; the device
// switches itself off (its own timer, through {seconds}), and the relay
// reports itself active until the pulse has passed.
type HTTPRelay struct {
	name     string
	url      *url.URL
	method   string
	user     string
	password string
	token    string
	client   *http.Client
	clock    clock.Clock
	maxOn    time.Duration
	events   notifier

	mu     sync.Mutex
	active bool        // a pulse is running
	cycles uint64      // off-to-on transitions
	closed bool        // Close was called
	timer  clock.Timer // ends the current pulse; nil while inactive
	gen    uint64      // identifies the current timer, so stale ones do nothing
}

// NewHTTPRelay checks the configuration; it sends nothing.
func NewHTTPRelay(cfg HTTPRelayConfig) (*HTTPRelay, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		// url.Parse's error quotes the URL, which may hold credentials.
		return nil, fmt.Errorf("gpio: http relay %q: invalid url", cfg.Name)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gpio: http relay %q: url must be http:// or https:// with a host", cfg.Name)
	}
	method := strings.ToUpper(cfg.Method)
	switch method {
	case "":
		method = http.MethodGet
	case http.MethodGet, http.MethodPost:
	default:
		return nil, fmt.Errorf("gpio: http relay %q: method %q: want GET or POST", cfg.Name, cfg.Method)
	}
	if cfg.Token != "" && (cfg.User != "" || cfg.Password != "") {
		return nil, fmt.Errorf("gpio: http relay %q: both a token and a user/password given", cfg.Name)
	}
	if cfg.MaxOn <= 0 {
		return nil, fmt.Errorf("gpio: http relay %q: max on-time %s must be positive", cfg.Name, cfg.MaxOn)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	return &HTTPRelay{
		name:     cfg.Name,
		url:      u,
		method:   method,
		user:     cfg.User,
		password: cfg.Password,
		token:    cfg.Token,
		client:   cfg.Client,
		clock:    cfg.Clock,
		maxOn:    cfg.MaxOn,
		events:   notifier{fn: cfg.OnChange},
		cycles:   cfg.Cycles,
	}, nil
}

// Pulse sends one request that switches the relay on for d, capped at
// MaxOn. Any status other than 2xx is an error.
func (r *HTTPRelay) Pulse(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("gpio: http relay %q: pulse duration %s must be positive", r.name, d)
	}
	d = min(d, r.maxOn)
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: %q", ErrClosed, r.name)
	}
	if err := r.send(d); err != nil {
		return err
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrClosed, r.name)
	}
	if !r.active {
		r.active = true
		r.cycles++
		r.events.add(true)
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	r.gen++
	gen := r.gen
	r.timer = r.clock.AfterFunc(d, func() { r.expire(gen) })
	r.mu.Unlock()
	r.events.deliver()
	return nil
}

func (r *HTTPRelay) send(d time.Duration) error {
	u := *r.url
	secs := pulseSeconds(d, r.maxOn)
	// url.Parse leaves the query raw and the path unescaped, so the
	// placeholder reads as written in both.
	u.RawQuery = strings.ReplaceAll(u.RawQuery, secondsPlaceholder, secs)
	u.Path = strings.ReplaceAll(u.Path, secondsPlaceholder, secs)
	u.RawPath = ""
	req, err := http.NewRequestWithContext(context.Background(), r.method, u.String(), http.NoBody)
	if err != nil {
		return fmt.Errorf("gpio: http relay %q: %s %s: %w", r.name, r.method, r.where(), err)
	}
	switch {
	case r.token != "":
		req.Header.Set("Authorization", "Bearer "+r.token)
	case r.user != "" || r.password != "":
		req.SetBasicAuth(r.user, r.password)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		// The client's *url.Error repeats the whole URL, query included;
		// keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("gpio: http relay %q: %s %s: %w", r.name, r.method, r.where(), err)
	}
	defer resp.Body.Close()
	// Reading a little of the body lets the connection be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("gpio: http relay %q: %s %s: status %s", r.name, r.method, r.where(), resp.Status)
	}
	return nil
}

// where names the relay's endpoint for errors: scheme, host and path, never
// the user info or the query, which may hold credentials.
func (r *HTTPRelay) where() string {
	return r.url.Scheme + "://" + r.url.Host + r.url.EscapedPath()
}

// pulseSeconds is d rounded up to whole seconds, but not past maxOn's whole
// seconds, and at least 1.
func pulseSeconds(d, maxOn time.Duration) string {
	s := (d + time.Second - 1) / time.Second
	if limit := maxOn / time.Second; s > limit {
		s = max(limit, 1)
	}
	return strconv.FormatInt(int64(s), 10)
}

func (r *HTTPRelay) expire(gen uint64) {
	r.mu.Lock()
	if gen != r.gen {
		r.mu.Unlock()
		return
	}
	r.timer = nil
	r.active = false
	r.events.add(false)
	r.mu.Unlock()
	r.events.deliver()
}

// Active reports whether a pulse sent by a successful request is running.
func (r *HTTPRelay) Active() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active
}

// Cycles returns the number of pulses that switched the relay on from off.
func (r *HTTPRelay) Cycles() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cycles
}

// Close refuses further pulses and stops tracking the current one, which
// the device's own timer ends: there is no request that switches it off.
// Active is false after Close, and OnChange is not called again.
func (r *HTTPRelay) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.active = false
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.gen++
	return nil
}
