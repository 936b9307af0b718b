package provisioning

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/internal/clock/clocktest"
)

// rig runs a Provisioner against a document server on a fake clock.
type rig struct {
	t      *testing.T
	clk    *clocktest.Fake
	ds     *docServer
	srv    *httptest.Server
	store  *Store
	events chan Event
	p      *Provisioner
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	applied []Bundle
}

func newRig(t *testing.T, tweak func(*Config)) *rig {
	t.Helper()
	r := &rig{
		t:      t,
		clk:    clocktest.New(t0),
		ds:     &docServer{body: "sip: {user: new}\n", etag: `"v2"`},
		events: make(chan Event, 100),
	}
	r.srv = httptest.NewServer(r.ds)
	t.Cleanup(r.srv.Close)
	r.store = mustOpen(t, t.TempDir())
	cfg := Config{
		Station:  Source{URL: r.srv.URL + "/st/001122334455.yaml?token=s3cret"},
		Client:   r.srv.Client(),
		Store:    r.store,
		Interval: time.Hour,
		Check: func(b Bundle) error {
			if strings.Contains(string(b.Station.Body), "bad") {
				return errors.New("sip.user: bad value")
			}
			return nil
		},
		Apply: func(ctx context.Context, b Bundle) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.applied = append(r.applied, b)
			return nil
		},
		OnEvent: func(e Event) { r.events <- e },
		Clock:   r.clk,
		Rand:    func() float64 { return 0.5 },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.p = p
	return r
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.p.Run(ctx) }()
	r.t.Cleanup(r.stop)
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("Run: %v", err)
	}
	r.cancel = nil
}

func (r *rig) event(kind string) Event {
	r.t.Helper()
	e := <-r.events
	if e.Kind != kind {
		r.t.Fatalf("event %+v, want %s", e, kind)
	}
	if strings.Contains(e.URL, "s3cret") || strings.Contains(e.Reason, "s3cret") {
		r.t.Fatalf("event leaks the token: %+v", e)
	}
	return e
}

// next advances the clock to the next check, after Run armed its timer,
// and returns the wait.
func (r *rig) next() time.Duration {
	r.t.Helper()
	r.clk.WaitForTimers(1)
	d, _ := r.clk.Next()
	r.clk.Advance(d)
	return d
}

func (r *rig) appliedBodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.applied {
		out = append(out, string(b.Station.Body))
	}
	return out
}

func (r *rig) seed(body string, confirm bool) {
	r.t.Helper()
	b := Bundle{Station: Document{URL: r.p.cfg.Station.URL, Body: []byte(body), ETag: fmt.Sprintf(`"%x"`, body), Fetched: t0}}
	if err := r.store.Save(b); err != nil {
		r.t.Fatal(err)
	}
	if confirm {
		if err := r.store.Confirm(); err != nil {
			r.t.Fatal(err)
		}
	}
}

func currentBody(t *testing.T, s *Store) string {
	t.Helper()
	b, ok, err := s.Current()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return string(b.Station.Body)
}

func TestProvisionAndUnchanged(t *testing.T) {
	r := newRig(t, nil)
	r.start()
	r.event(EventProvisioned)
	good, ok, err := r.store.Good()
	if err != nil || !ok || string(good.Station.Body) != "sip: {user: new}\n" || !good.Station.Fetched.Equal(t0) {
		t.Fatalf("good after provisioning: %+v %v %v", good, ok, err)
	}
	st := r.p.Status()
	if st.State != StateApplied || st.Checks != 1 || st.ETag != `"v2"` || !st.LastChange.Equal(t0) || strings.Contains(st.URL, "s3cret") {
		t.Fatalf("status %+v", st)
	}
	if d := r.next(); d != time.Hour {
		t.Fatalf("waited %v for the next check", d)
	}
	r.event(EventUnchanged)
	r.stop()
	if got := r.appliedBodies(); len(got) != 1 {
		t.Fatalf("applied %q, want one bundle", got)
	}
	if r.ds.ifNone[1] != `"v2"` {
		t.Fatalf("second check was not conditional: %q", r.ds.ifNone)
	}
	st = r.p.Status()
	if st.State != StateApplied || st.Checks != 2 || !st.LastCheck.Equal(t0.Add(time.Hour)) || !st.LastChange.Equal(t0) {
		t.Fatalf("status after unchanged %+v", st)
	}
}

func TestRefusedKeepsStoreAndRunningConfig(t *testing.T) {
	r := newRig(t, nil)
	r.seed("sip: {user: old}\n", true)
	r.ds.set("sip: {user: bad}\n", `"bad"`)
	r.start()
	e := r.event(EventRefused)
	if !strings.Contains(e.Reason, "sip.user: bad value") {
		t.Fatalf("refusal reason %q", e.Reason)
	}
	if got := currentBody(t, r.store); got != "sip: {user: old}\n" {
		t.Fatalf("store changed to %q", got)
	}
	st := r.p.Status()
	if st.State != StateRefused || st.Refused != 1 || st.Error == "" {
		t.Fatalf("status %+v", st)
	}
	// The refused document is not fetched and judged again every interval.
	r.next()
	r.event(EventUnchanged)
	r.stop()
	if got := r.appliedBodies(); len(got) != 0 {
		t.Fatalf("refused bundle applied: %q", got)
	}
	if st := r.p.Status(); st.State != StateRefused || st.Refused != 1 {
		t.Fatalf("status after unchanged %+v", st)
	}
}

func TestRollbackWhenNotRegistered(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Registered = func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}
	})
	r.seed("sip: {user: old}\n", true)
	r.start()
	// The only timer is the rollback deadline while Registered waits.
	r.clk.WaitForTimers(1)
	if d, _ := r.clk.Next(); d != DefaultRollbackAfter {
		t.Fatalf("rollback deadline %v", d)
	}
	r.clk.Advance(DefaultRollbackAfter)
	e := r.event(EventRolledBack)
	if !strings.Contains(e.Reason, "not registered") {
		t.Fatalf("reason %q", e.Reason)
	}
	if got := currentBody(t, r.store); got != "sip: {user: old}\n" {
		t.Fatalf("current after rollback %q", got)
	}
	if got := r.appliedBodies(); len(got) != 2 || got[0] != "sip: {user: new}\n" || got[1] != "sip: {user: old}\n" {
		t.Fatalf("applied %q", got)
	}
	st := r.p.Status()
	if st.State != StateRolledBack || st.Rollbacks != 1 || !strings.Contains(st.Error, "not registered") {
		t.Fatalf("status %+v", st)
	}
	// The failed document is not applied again until the server changes it.
	r.next()
	r.event(EventUnchanged)
	r.ds.set("sip: {user: newer}\n", `"v3"`)
	r.next()
	r.clk.WaitForTimers(1)
	r.clk.Advance(DefaultRollbackAfter)
	r.event(EventRolledBack)
	r.stop()
	if got := r.appliedBodies(); len(got) != 4 || got[2] != "sip: {user: newer}\n" {
		t.Fatalf("applied %q", got)
	}
}

func TestRollbackWhenApplyOrRegistrationFails(t *testing.T) {
	for name, tweak := range map[string]func(*Config){
		"apply": func(c *Config) {
			apply := c.Apply
			c.Apply = func(ctx context.Context, b Bundle) error {
				apply(ctx, b)
				if strings.Contains(string(b.Station.Body), "new") {
					return errors.New("audio device busy")
				}
				return nil
			}
		},
		"registered": func(c *Config) {
			c.Registered = func(context.Context) error { return errors.New("403 forbidden") }
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, tweak)
			r.seed("sip: {user: old}\n", true)
			r.start()
			e := r.event(EventRolledBack)
			if !strings.Contains(e.Reason, "audio device busy") && !strings.Contains(e.Reason, "403 forbidden") {
				t.Fatalf("reason %q", e.Reason)
			}
			r.stop()
			if got := r.appliedBodies(); len(got) != 2 || got[1] != "sip: {user: old}\n" {
				t.Fatalf("applied %q", got)
			}
			if got := currentBody(t, r.store); got != "sip: {user: old}\n" {
				t.Fatalf("current %q", got)
			}
		})
	}
}

func TestRollbackWithoutGoodAppliesLocalFileOnly(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Registered = func(context.Context) error { return errors.New("no answer") }
	})
	r.start()
	r.event(EventRolledBack)
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) != 2 || !r.applied[1].IsZero() {
		t.Fatalf("applied %+v, want the new bundle then a zero one", r.applied)
	}
	if got := currentBody(t, r.store); got != "" {
		t.Fatalf("current %q after rolling back to nothing", got)
	}
}

func TestResumeVerifiesUnconfirmedBundle(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Registered = func(context.Context) error { return errors.New("401 unauthorized") }
	})
	r.seed("sip: {user: old}\n", true)
	r.seed("sip: {user: new}\n", false) // the station stopped before it registered
	r.ds.set("sip: {user: new}\n", fmt.Sprintf(`"%x"`, "sip: {user: new}\n"))
	r.start()
	r.event(EventRolledBack)
	// The check that follows does not apply the failed bundle again.
	r.event(EventUnchanged)
	r.stop()
	if got := r.appliedBodies(); len(got) != 1 || got[0] != "sip: {user: old}\n" {
		t.Fatalf("applied %q", got)
	}
}

func TestFetchErrorBacksOffAndChangesNothing(t *testing.T) {
	rnd := 0.0
	var rmu sync.Mutex
	r := newRig(t, func(c *Config) {
		c.Interval = 10 * time.Minute
		c.Rand = func() float64 { rmu.Lock(); defer rmu.Unlock(); return rnd }
	})
	r.seed("sip: {user: old}\n", true)
	r.ds.status = http.StatusInternalServerError
	r.start()
	var waits []time.Duration
	for range 7 {
		e := r.event(EventError)
		if !strings.Contains(e.Reason, "500") {
			t.Fatalf("reason %q", e.Reason)
		}
		waits = append(waits, r.next())
	}
	r.event(EventError)
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("back-off waits %v, want %v", waits, want)
		}
	}
	if st := r.p.Status(); st.State != StateError || !strings.Contains(st.Error, "500") || strings.Contains(st.Error, "s3cret") {
		t.Fatalf("status %+v", st)
	}
	// Jitter only shortens a wait, by at most 20%. Rand is read after the
	// check's event, so the new value shows in the wait after next.
	rmu.Lock()
	rnd = 0.999
	rmu.Unlock()
	r.next()
	r.event(EventError)
	r.ds.mu.Lock()
	r.ds.status = 0
	r.ds.mu.Unlock()
	if d := r.next(); d < 8*time.Minute || d >= 10*time.Minute {
		t.Fatalf("jittered wait %v", d)
	}
	// Recovery returns to the interval.
	r.event(EventProvisioned)
	if d := r.next(); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("wait after recovery %v", d)
	}
	r.event(EventUnchanged)
	r.stop()
	if got := r.appliedBodies(); len(got) != 1 {
		t.Fatalf("applied %q", got)
	}
}

func TestBackoffCap(t *testing.T) {
	for _, c := range []struct {
		interval time.Duration
		failures int
		want     time.Duration
	}{
		{time.Hour, 1, 30 * time.Second},
		{time.Hour, 7, 30 * time.Minute},
		{time.Hour, 1000, 30 * time.Minute},
		{10 * time.Second, 1, 10 * time.Second},
		{10 * time.Second, 5, 10 * time.Second},
	} {
		p := &Provisioner{cfg: Config{Interval: c.interval, Rand: func() float64 { return 0 }}}
		if got := p.backoff(c.failures); got != c.want {
			t.Errorf("backoff(interval %v, %d failures) = %v, want %v", c.interval, c.failures, got, c.want)
		}
	}
}

func TestIntervalSpread(t *testing.T) {
	for _, c := range []struct {
		r        float64
		min, max time.Duration
	}{
		{0, 54 * time.Minute, 54 * time.Minute},
		{0.5, time.Hour, time.Hour},
		{0.9999999, 66*time.Minute - time.Second, 66 * time.Minute},
	} {
		p := &Provisioner{cfg: Config{Interval: time.Hour, Rand: func() float64 { return c.r }}}
		if got := p.spread(); got < c.min || got > c.max {
			t.Errorf("spread with rand %v = %v, want in [%v, %v]", c.r, got, c.min, c.max)
		}
	}
	// Through Run, with the real random source: every wait within ±10%.
	r := newRig(t, func(c *Config) { c.Rand = nil })
	r.start()
	r.event(EventProvisioned)
	for range 20 {
		if d := r.next(); d < 54*time.Minute || d > 66*time.Minute {
			t.Fatalf("wait %v outside Interval±10%%", d)
		}
		r.event(EventUnchanged)
	}
}

func TestTriggerCoalesces(t *testing.T) {
	r := newRig(t, nil)
	for range 5 {
		r.p.Trigger() // never blocks, even with no Run
	}
	r.start()
	r.event(EventProvisioned)
	// The five triggers made one check after the first.
	r.event(EventUnchanged)
	r.clk.WaitForTimers(1)
	r.stop()
	select {
	case e := <-r.events:
		t.Fatalf("extra check: %+v", e)
	default:
	}
	if st := r.p.Status(); st.Checks != 2 {
		t.Fatalf("%d checks", st.Checks)
	}
	// A trigger ends the wait at once.
	r2 := newRig(t, nil)
	r2.start()
	r2.event(EventProvisioned)
	r2.clk.WaitForTimers(1)
	r2.p.Trigger()
	r2.event(EventUnchanged)
	if now := r2.clk.Now(); !now.Equal(t0) {
		t.Fatalf("triggered check waited until %v", now)
	}
}

func TestCommonDocument(t *testing.T) {
	common := &docServer{body: "calls: {ring_timeout: 20s}\n", etag: `"c1"`}
	csrv := httptest.NewServer(common)
	defer csrv.Close()
	r := newRig(t, func(c *Config) { c.Common = Source{URL: csrv.URL + "/common.yaml"} })
	r.start()
	r.event(EventProvisioned)
	common.set("calls: {ring_timeout: 25s}\n", `"c2"`)
	r.next()
	r.event(EventProvisioned)
	r.next()
	r.event(EventUnchanged)
	common.mu.Lock()
	common.status = http.StatusNotFound
	common.mu.Unlock()
	r.next()
	if e := r.event(EventError); !strings.Contains(e.URL, "/common.yaml") || !strings.Contains(e.Reason, "404") {
		t.Fatalf("event %+v", e)
	}
	r.stop()
	cur, _, err := r.store.Current()
	if err != nil || string(cur.Common.Body) != "calls: {ring_timeout: 25s}\n" || cur.Common.ETag != `"c2"` {
		t.Fatalf("current %+v %v", cur, err)
	}
	if got := r.appliedBodies(); len(got) != 2 {
		t.Fatalf("applied %q", got)
	}
}

func TestLoadEffective(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	check := func(b Bundle) error {
		if strings.Contains(string(b.Station.Body), "bad") {
			return errors.New("bad")
		}
		return nil
	}
	if _, ok := LoadEffective(s, check); ok {
		t.Fatal("empty store gave a bundle")
	}
	s.Save(bundle("good\n", ""))
	s.Confirm()
	s.Save(bundle("bad\n", ""))
	if b, ok := LoadEffective(s, check); !ok || string(b.Station.Body) != "good\n" {
		t.Fatalf("current fails check: %q %v", b.Station.Body, ok)
	}
	s.Save(bundle("next\n", ""))
	if b, ok := LoadEffective(s, check); !ok || string(b.Station.Body) != "next\n" {
		t.Fatalf("current passes: %q %v", b.Station.Body, ok)
	}
	writeFile(t, s.Dir(), currentFile, "{")
	if b, ok := LoadEffective(s, check); !ok || string(b.Station.Body) != "good\n" {
		t.Fatalf("corrupt current: %q %v", b.Station.Body, ok)
	}
	writeFile(t, s.Dir(), goodFile, "bad")
	if _, ok := LoadEffective(s, check); ok {
		t.Fatal("both corrupt gave a bundle")
	}
}

func TestNewValidates(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	ok := Config{Station: Source{URL: "http://h/x"}, Store: s, Check: func(Bundle) error { return nil }, Apply: func(context.Context, Bundle) error { return nil }}
	for name, mod := range map[string]func(*Config){
		"no url":    func(c *Config) { c.Station.URL = "" },
		"no store":  func(c *Config) { c.Store = nil },
		"no check":  func(c *Config) { c.Check = nil },
		"no apply":  func(c *Config) { c.Apply = nil },
		"neg inter": func(c *Config) { c.Interval = -time.Second },
		"{mac}":     func(c *Config) { c.Station.URL = "http://h/{mac}.yaml" },
		"{serial}":  func(c *Config) { c.Common.URL = "http://h/{serial}.yaml" },
	} {
		c := ok
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	p, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.Interval != DefaultInterval || p.cfg.RollbackAfter != DefaultRollbackAfter || p.cfg.Client == nil || p.cfg.Clock == nil {
		t.Fatalf("defaults %+v", p.cfg)
	}
	if st := p.Status(); st.State != StateIdle || st.URL != "http://h/x" {
		t.Fatalf("initial status %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); err == nil {
		t.Fatal("second Run accepted")
	}
}
