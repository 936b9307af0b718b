package device

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/device/api"
	"intercom/sipagent"
)

type fakeProvisioning struct {
	mu       sync.Mutex
	triggers int
	status   ProvisioningStatus
}

var _ Provisioning = (*fakeProvisioning)(nil)

func (p *fakeProvisioning) Trigger() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.triggers++
}

func (p *fakeProvisioning) Status() ProvisioningStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *fakeProvisioning) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.triggers
}

func newProvisionedHarness(t *testing.T) (*harness, *fakeProvisioning) {
	t.Helper()
	prov := &fakeProvisioning{}
	h := newHarnessWith(t, testYAML, func(_ *harness, c *Config) { c.Provisioning = prov })
	return h, prov
}

func TestCheckSyncTriggersProvisioning(t *testing.T) {
	h, prov := newProvisionedHarness(t)
	h.sip <- CheckSyncEvent{Source: netip.MustParseAddrPort("127.0.0.1:5060")}
	h.sync()
	if n := prov.count(); n != 1 {
		t.Fatalf("%d triggers after check-sync, want 1", n)
	}
	h.sip <- CheckSyncEvent{}
	h.sync()
	if n := prov.count(); n != 2 {
		t.Fatalf("%d triggers after a second check-sync, want 2", n)
	}
}

func TestCheckSyncWithoutProvisioning(t *testing.T) {
	h := newHarness(t, testYAML)
	h.sip <- CheckSyncEvent{}
	h.sync()
	if err := h.st.CheckProvisioning(context.Background()); !errors.Is(err, api.ErrConflict) ||
		!strings.Contains(err.Error(), "provisioning is not configured") {
		t.Fatalf("CheckProvisioning: %v, want a conflict", err)
	}
	if p := h.st.ProvisioningStatus(); p != nil {
		t.Fatalf("ProvisioningStatus %+v, want nil", p)
	}
	body := getJSON(t, h, "/api/v1/status")
	if _, ok := body["provisioning"]; ok {
		t.Errorf("status has provisioning without a fetcher: %v", body["provisioning"])
	}
}

func TestSIPEventsConvertsCheckSync(t *testing.T) {
	in := make(chan sipagent.Event, 1)
	src := netip.MustParseAddrPort("10.0.0.1:5060")
	in <- sipagent.CheckSync{Source: src}
	close(in)
	out := SIPEvents(t.Context(), in)
	if ev := <-out; ev != (CheckSyncEvent{Source: src}) {
		t.Fatalf("converted to %#v", ev)
	}
}

func TestCheckProvisioningTriggers(t *testing.T) {
	h, prov := newProvisionedHarness(t)
	rec := httptest.NewRecorder()
	api.Handler(api.Config{Station: h.st}).ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/provisioning/check", nil))
	if rec.Code != 202 || prov.count() != 1 {
		t.Fatalf("POST check: %d %s, %d triggers; want 202 and one", rec.Code, rec.Body, prov.count())
	}
}

func getJSON(t *testing.T, h *harness, path string) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	api.Handler(api.Config{Station: h.st}).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET %s: %d %q: %v", path, rec.Code, rec.Body, err)
	}
	return body
}

func TestProvisioningStatusAndMetrics(t *testing.T) {
	h, prov := newProvisionedHarness(t)
	berlin := time.FixedZone("CET", 3600)
	prov.mu.Lock()
	prov.status = ProvisioningStatus{
		URL: "https://prov.example/intercom/00-11-22-33-44-55.yaml?***", State: "idle", Error: "fetch: 503",
		LastCheck: time.Date(2026, 1, 1, 13, 0, 0, 0, berlin), Checks: 5, Refused: 2, Rollbacks: 1,
	}
	prov.mu.Unlock()

	body := getJSON(t, h, "/api/v1/status")
	want := map[string]any{
		"state": "idle", "url": "https://prov.example/intercom/00-11-22-33-44-55.yaml?***", "error": "fetch: 503",
		"last_check": "2026-01-01T12:00:00Z", "last_change": "", "checks": 5.0, "refused": 2.0, "rollbacks": 1.0,
	}
	if !reflect.DeepEqual(body["provisioning"], want) {
		t.Errorf("provisioning status\n got %v\nwant %v", body["provisioning"], want)
	}
	if body["version"] == nil || body["registration"] == nil {
		t.Errorf("status lost its other fields: %v", body)
	}

	rec := httptest.NewRecorder()
	api.Handler(api.Config{Station: h.st}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range []string{"intercom_provisioning_checks_total 5\n", "intercom_provisioning_refused_total 2\n",
		"intercom_provisioning_rollbacks_total 1\n", "intercom_calls_outgoing_total 0\n"} {
		if !strings.Contains(rec.Body.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, rec.Body)
		}
	}
}

func TestProvisioningEvent(t *testing.T) {
	h, _ := newProvisionedHarness(t)
	// Published from outside the loop, as main's provisioner does.
	var wg sync.WaitGroup
	wg.Go(func() { h.st.ProvisioningEvent(ProvisioningApplied, "etag \"7\"") })
	wg.Wait()
	if ev := h.expectEvent("provisioned"); !reflect.DeepEqual(ev.Data, map[string]any{"result": "applied", "reason": "etag \"7\""}) {
		t.Errorf("applied: %v", ev.Data)
	}
	h.st.ProvisioningEvent(ProvisioningRolledBack, "registration failed")
	if ev := h.expectEvent("provisioned"); ev.Data["result"] != "rolled_back" || ev.Data["reason"] != "registration failed" {
		t.Errorf("rolled back: %v", ev.Data)
	}
	for _, kind := range []string{ProvisioningRefused, ProvisioningError} {
		h.st.ProvisioningEvent(kind, "bad document")
		want := map[string]any{"source": "provisioning", "result": kind, "reason": "bad document"}
		if ev := h.expectEvent("error"); !reflect.DeepEqual(ev.Data, want) {
			t.Errorf("%s: %v, want %v", kind, ev.Data, want)
		}
	}
	h.st.ProvisioningEvent(ProvisioningUnchanged, "304")
	h.st.ProvisioningEvent("sideways", "bad kind")
	h.st.ProvisioningEvent(ProvisioningApplied, "last")
	// Neither published anything: the next event is the last one.
	select {
	case ev := <-h.events:
		if ev.Type != "provisioned" || ev.Data["reason"] != "last" {
			t.Errorf("after unchanged and an unknown kind: %s %v", ev.Type, ev.Data)
		}
	default:
		t.Error("no event for the last result")
	}
}

func TestProvisioningEventNeverBlocks(t *testing.T) {
	h, _ := newProvisionedHarness(t)
	h.sync()
	for len(h.events) > 0 {
		<-h.events
	}
	// The harness's subscriber reads nothing now: its buffer fills, and
	// publishing goes on by dropping.
	for range 2 * subscriberBuffer {
		h.st.ProvisioningEvent(ProvisioningError, "unreachable")
	}
	if d := h.st.bus.dropped.Load(); d != subscriberBuffer {
		t.Errorf("%d events dropped, want %d", d, subscriberBuffer)
	}
	<-h.stop()
	h.st.ProvisioningEvent(ProvisioningApplied, "after stop")
}
