// Package provisioning fetches, verifies and stores the station's
// configuration documents over HTTP(S).
package provisioning

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"intercom/internal/clock"
)

// Defaults of Config.
const (
	DefaultInterval      = time.Hour
	DefaultRollbackAfter = 2 * time.Minute
)

const (
	// intervalSpread spreads each wait over Interval ±10% so that a fleet
	// that booted together does not hit the server together.
	intervalSpread = 0.10
	backoffMin     = 30 * time.Second
	backoffMax     = 30 * time.Minute
	// backoffJitter takes up to 20% off each back-off wait.
	backoffJitter = 0.20
)

// Event kinds.
const (
	EventProvisioned = "provisioned"
	EventRefused     = "refused"
	EventRolledBack  = "rolled_back"
	EventUnchanged   = "unchanged"
	EventError       = "error"
)

// States of Status.State.
const (
	StateIdle       = "idle"
	StateChecking   = "checking"
	StateApplied    = "applied"
	StateRefused    = "refused"
	StateRolledBack = "rolled_back"
	StateError      = "error"
)

// Config wires a Provisioner. Station.URL, Store, Check and Apply are
// required; the rest has defaults.
type Config struct {
	// Common is the fleet-wide document; its URL may be empty.
	Common, Station Source
	// Client defaults to NewClient(TLSConfig{}).
	Client *http.Client
	Store  *Store
	// Interval between checks, each wait spread over ±10%; default 1h.
	Interval time.Duration
	// RollbackAfter bounds the wait for registration with a new bundle;
	// default 2m.
	RollbackAfter time.Duration
	// Check validates a bundle strictly, merged with the local file; an
	// error refuses the bundle.
	Check func(Bundle) error
	// Apply makes b the running configuration; a zero Bundle means the
	// local file alone.
	Apply func(ctx context.Context, b Bundle) error
	// Registered blocks until the station registered with the applied
	// configuration; ctx is cancelled at the rollback deadline, timed on
	// Clock (so it has no Deadline). Nil (peer-to-peer) confirms a bundle
	// as soon as it is applied.
	Registered func(ctx context.Context) error
	// OnEvent reports each check's outcome; it must not block.
	OnEvent func(Event)
	Clock   clock.Clock
	// Rand returns a number in [0, 1); default math/rand/v2.
	Rand   func() float64
	Logger *slog.Logger
}

// Event is the outcome of a check.
type Event struct {
	Kind   string
	URL    string // masked
	Reason string
}

// Status is a snapshot of the provisioner.
type Status struct {
	URL                   string // masked
	LastCheck, LastChange time.Time
	State                 string
	Error                 string
	ETag                  string // of the station document in effect
	Checks, Refused       uint64
	Rollbacks             uint64
}

// Provisioner checks the server periodically and on Trigger, and applies
// what changed: check, save, apply, then confirm once the station
// registered, or roll back to the last good bundle.
type Provisioner struct {
	cfg     Config
	trigger chan struct{}
	running atomic.Bool

	// seen is the bundle last fetched (applied or not), whose validators
	// make the next fetch conditional: a refused or rolled back document
	// is not fetched and applied again until the server changes it.
	seen Bundle

	mu            sync.Mutex
	status        Status
	settled       string // the state an unchanged check returns to
	settledReason string
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Provisioner, error) {
	switch {
	case cfg.Station.URL == "":
		return nil, errors.New("provisioning: no station url")
	case cfg.Store == nil:
		return nil, errors.New("provisioning: no store")
	case cfg.Check == nil || cfg.Apply == nil:
		return nil, errors.New("provisioning: Check and Apply are required")
	case cfg.Interval < 0 || cfg.RollbackAfter < 0:
		return nil, errors.New("provisioning: negative interval or rollback time")
	case strings.ContainsAny(cfg.Station.URL+cfg.Common.URL, "{}"):
		return nil, errors.New("provisioning: url has a placeholder left: Expand it first")
	}
	if cfg.Client == nil {
		c, err := NewClient(TLSConfig{})
		if err != nil {
			return nil, err
		}
		cfg.Client = c
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.RollbackAfter == 0 {
		cfg.RollbackAfter = DefaultRollbackAfter
	}
	if cfg.OnEvent == nil {
		cfg.OnEvent = func(Event) {}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provisioner{
		cfg:     cfg,
		trigger: make(chan struct{}, 1),
		settled: StateIdle,
		status:  Status{URL: MaskURL(cfg.Station.URL), State: StateIdle},
	}
	return p, nil
}

// LoadEffective picks the bundle to start with: the current one if it
// passes check, else the good one if it does, else none (the local file
// alone). It never fails: a station must start even with a broken state
// directory.
func LoadEffective(store *Store, check func(Bundle) error) (Bundle, bool) {
	for _, load := range []func() (Bundle, bool, error){store.Current, store.Good} {
		if b, ok, err := load(); err == nil && ok && (check == nil || check(b) == nil) {
			return b, true
		}
	}
	return Bundle{}, false
}

// Trigger asks for a check now. Triggers that arrive while one is pending
// coalesce into one check; Trigger never blocks.
func (p *Provisioner) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Status returns a snapshot; safe from any goroutine.
func (p *Provisioner) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Run checks at once, then every Interval ±10%, or after a capped
// exponential back-off when a check failed, until ctx is done. A bundle
// the station started with but never confirmed (the station stopped while
// it waited for registration) is verified first. Run may be called once.
func (p *Provisioner) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("provisioning: Run called twice")
	}
	p.resume(ctx)
	failures := 0
	for ctx.Err() == nil {
		var wait time.Duration
		if err := p.check(ctx); err != nil {
			failures++
			wait = p.backoff(failures)
		} else {
			failures = 0
			wait = p.spread()
		}
		t := p.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C():
		case <-p.trigger:
			t.Stop()
		}
	}
	return nil
}

func (p *Provisioner) spread() time.Duration {
	f := 1 - intervalSpread + 2*intervalSpread*p.cfg.Rand()
	return time.Duration(float64(p.cfg.Interval) * f)
}

// backoff is 30s doubling per failure, capped at min(Interval, 30m).
func (p *Provisioner) backoff(failures int) time.Duration {
	limit := min(p.cfg.Interval, backoffMax)
	d := min(backoffMin, limit)
	for i := 1; i < failures && d < limit; i++ {
		d = min(2*d, limit)
	}
	return time.Duration(float64(d) * (1 - backoffJitter*p.cfg.Rand()))
}

// resume loads what the station runs and verifies it if it was never
// confirmed. It mirrors LoadEffective's choice: an unconfirmed current
// bundle is running only if it passes Check.
func (p *Provisioner) resume(ctx context.Context) {
	cur, ok, err := p.cfg.Store.Current()
	if err != nil || !ok {
		return
	}
	p.seen = cur
	p.mu.Lock()
	p.status.ETag = cur.Station.ETag
	p.mu.Unlock()
	good, gok, err := p.cfg.Store.Good()
	if err == nil && gok && sameContent(cur, good) {
		return
	}
	if p.cfg.Check(cur) != nil {
		return
	}
	p.confirmOrRollBack(ctx, cur)
}

// check runs one check; the error, for back-off, is a fetch or store failure.
func (p *Provisioner) check(ctx context.Context) error {
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	p.status.State = StateChecking
	p.status.LastCheck = now
	p.status.Checks++
	p.mu.Unlock()

	var b Bundle
	if p.cfg.Common.URL != "" {
		doc, _, err := fetch(ctx, p.cfg.Client, p.cfg.Common, p.seen.Common, now)
		if err != nil {
			return p.fail(ctx, p.cfg.Common.URL, err)
		}
		b.Common = doc
	}
	doc, _, err := fetch(ctx, p.cfg.Client, p.cfg.Station, p.seen.Station, now)
	if err != nil {
		return p.fail(ctx, p.cfg.Station.URL, err)
	}
	b.Station = doc
	// Compared by content, not by status code: a server without validators
	// answers 200 every time, and that must not re-apply the same bundle.
	if sameContent(b, p.seen) {
		p.seen = b
		p.unchanged()
		p.emit(EventUnchanged, p.cfg.Station.URL, "")
		return nil
	}
	p.seen = b
	if err := p.cfg.Check(b); err != nil {
		p.mu.Lock()
		p.status.Refused++
		p.mu.Unlock()
		p.settle(StateRefused, err.Error())
		p.emit(EventRefused, p.cfg.Station.URL, err.Error())
		return nil
	}
	if err := p.cfg.Store.Save(b); err != nil {
		// Forget the bundle so the next check tries to save it again.
		p.seen = Bundle{}
		return p.fail(ctx, p.cfg.Station.URL, err)
	}
	p.mu.Lock()
	p.status.ETag = b.Station.ETag
	p.mu.Unlock()
	if err := p.cfg.Apply(ctx, b); err != nil {
		if ctx.Err() == nil {
			p.rollBack(ctx, fmt.Sprintf("apply: %v", err))
		}
		return nil
	}
	p.confirmOrRollBack(ctx, b)
	return nil
}

var errRegisterTimeout = errors.New("not registered in time")

// confirmOrRollBack waits for registration with the applied bundle b,
// at most RollbackAfter. A shutdown meanwhile leaves b unconfirmed for
// the next start to verify.
func (p *Provisioner) confirmOrRollBack(ctx context.Context, b Bundle) {
	if p.cfg.Registered != nil {
		rctx, cancel := context.WithCancelCause(ctx)
		t := p.cfg.Clock.AfterFunc(p.cfg.RollbackAfter, func() { cancel(errRegisterTimeout) })
		err := p.cfg.Registered(rctx)
		t.Stop()
		cause := context.Cause(rctx)
		cancel(nil)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(cause, errRegisterTimeout) {
			// Registered's own error says why (a 401, no answer); keep it.
			if err == nil || errors.Is(err, context.Canceled) {
				err = errRegisterTimeout
			}
			err = fmt.Errorf("%w (rollback_after %v)", err, p.cfg.RollbackAfter)
		}
		if err != nil {
			p.rollBack(ctx, err.Error())
			return
		}
	}
	if err := p.cfg.Store.Confirm(); err != nil {
		p.fail(ctx, p.cfg.Station.URL, err)
		return
	}
	p.settle(StateApplied, "")
	p.emit(EventProvisioned, b.Station.URL, "")
}

// rollBack returns to the good bundle (or the local file alone) and
// applies it.
func (p *Provisioner) rollBack(ctx context.Context, reason string) {
	good, err := p.cfg.Store.Rollback()
	if err != nil {
		p.fail(ctx, p.cfg.Station.URL, fmt.Errorf("provisioning: rollback after %s: %w", reason, err))
		return
	}
	p.mu.Lock()
	p.status.Rollbacks++
	p.status.ETag = good.Station.ETag
	p.mu.Unlock()
	applyErr := p.cfg.Apply(ctx, good)
	p.settle(StateRolledBack, reason)
	p.emit(EventRolledBack, p.cfg.Station.URL, reason)
	if applyErr != nil {
		p.fail(ctx, p.cfg.Station.URL, fmt.Errorf("provisioning: apply the good bundle: %w", applyErr))
	}
}

// fail reports err and returns it; a shutdown is not a failure.
func (p *Provisioner) fail(ctx context.Context, rawURL string, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	p.mu.Lock()
	p.status.State = StateError
	p.status.Error = err.Error()
	p.mu.Unlock()
	p.emit(EventError, rawURL, err.Error())
	return err
}

// settle records a new outcome of a check.
func (p *Provisioner) settle(state, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.settled, p.settledReason = state, reason
	p.status.State, p.status.Error = state, reason
	p.status.LastChange = p.cfg.Clock.Now()
}

// unchanged returns the state to the last outcome, clearing a fetch error.
func (p *Provisioner) unchanged() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status.State, p.status.Error = p.settled, p.settledReason
}

func (p *Provisioner) emit(kind, rawURL, reason string) {
	ev := Event{Kind: kind, URL: MaskURL(rawURL), Reason: reason}
	level := slog.LevelInfo
	if kind == EventError || kind == EventRefused || kind == EventRolledBack {
		level = slog.LevelWarn
	}
	p.cfg.Logger.Log(context.Background(), level, "provisioning: "+kind, "url", ev.URL, "reason", reason)
	p.cfg.OnEvent(ev)
}

// sameContent reports whether a and b hold the same documents from the
// same places.
func sameContent(a, b Bundle) bool {
	return a.Common.URL == b.Common.URL && bytes.Equal(a.Common.Body, b.Common.Body) &&
		a.Station.URL == b.Station.URL && bytes.Equal(a.Station.Body, b.Station.Body)
}
