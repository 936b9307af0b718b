package sipagent

import (
	"net"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// notify sends a NOTIFY with headers from client to a and returns the
// response code.
func notify(t *testing.T, client *sipgo.Client, a *Agent, headers ...sip.Header) int {
	t.Helper()
	req := sip.NewRequest(sip.NOTIFY, mustURI(t, target("door", a)))
	for _, h := range headers {
		req.AppendHeader(h)
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", "terminated"))
	p := &rawPeer{client: client}
	return p.do(t, req).StatusCode
}

func event(v string) sip.Header { return sip.NewHeader("Event", v) }

// strangerClient sends from 127.0.0.2, which is neither the registrar's
// nor the outbound proxy's address in these tests.
func strangerClient(t *testing.T) *sipgo.Client {
	t.Helper()
	return newRawPeerAt(t, net.IPv4(127, 0, 0, 2), nil).client
}

func registeredAgent(t *testing.T) (*fakeRegistrar, *Agent) {
	t.Helper()
	reg := newFakeRegistrar(t, func(*sip.Request) reply { return reply{200, "OK", nil} })
	a := startAgent(t, Config{Registrar: reg.addr.String(), User: "door"})
	waitEvent[RegistrationChanged](t, a)
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered {
		t.Fatalf("event %+v", e)
	}
	return reg, a
}

func TestNotifyCheckSyncFromRegistrar(t *testing.T) {
	reg, a := registeredAgent(t)
	for _, h := range []sip.Header{
		event("check-sync"),
		event("check-sync;reboot=false"),
		sip.NewHeader("o", "Check-Sync ; reboot=true"), // compact form
	} {
		if code := notify(t, reg.client, a, h); code != 200 {
			t.Errorf("%s: %d, want 200", h, code)
			continue
		}
		if e := waitEvent[CheckSync](t, a); e.Source.Addr() != reg.addr.Addr() {
			t.Errorf("%s: CheckSync from %v, want the registrar %v", h, e.Source, reg.addr.Addr())
		}
	}
}

func TestNotifyRefused(t *testing.T) {
	reg, a := registeredAgent(t)
	stranger := strangerClient(t)
	for _, tc := range []struct {
		what    string
		client  *sipgo.Client
		headers []sip.Header
		want    int
	}{
		{"check-sync from a stranger", stranger, []sip.Header{event("check-sync")}, 403},
		{"other event from a stranger", stranger, []sip.Header{event("presence")}, 403},
		{"message-summary", reg.client, []sip.Header{event("message-summary")}, 489},
		{"a longer name", reg.client, []sip.Header{event("check-sync-ish")}, 489},
		{"no Event", reg.client, nil, 400},
		{"no package", reg.client, []sip.Header{event(";reboot=true")}, 400},
		{"two Events", reg.client, []sip.Header{event("check-sync"), sip.NewHeader("o", "check-sync")}, 400},
	} {
		if code := notify(t, tc.client, a, tc.headers...); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.what, code, tc.want)
		}
	}
	if n := a.IgnoredNotifies(); n != 2 {
		t.Errorf("IgnoredNotifies %d, want the stranger's 2", n)
	}
	// A check-sync from the registrar now must be the first CheckSync: none
	// of the refused requests left one queued before it.
	if code := notify(t, reg.client, a, event("check-sync")); code != 200 {
		t.Fatalf("check-sync from registrar: %d", code)
	}
	if e := waitEvent[CheckSync](t, a); e.Source.Addr() != reg.addr.Addr() {
		t.Errorf("CheckSync from %v, want the registrar's %v", e.Source, reg.addr.Addr())
	}
	noEvent[CheckSync](t, a)
}

func TestNotifyPeerToPeerTrustsNobody(t *testing.T) {
	a := startAgent(t, Config{User: "door"})
	peer := newRawPeer(t, nil)
	if code := notify(t, peer.client, a, event("check-sync")); code != 403 {
		t.Errorf("check-sync without a registrar: %d, want 403", code)
	}
	if n := a.IgnoredNotifies(); n != 1 {
		t.Errorf("IgnoredNotifies %d, want 1", n)
	}
	noEvent[CheckSync](t, a)
}

func TestNotifyFromOutboundProxy(t *testing.T) {
	proxy := newFakeRegistrar(t, func(*sip.Request) reply { return reply{200, "OK", nil} })
	a := startAgent(t, Config{Registrar: "127.0.0.9:5999", OutboundProxy: proxy.addr.String(), User: "door"})
	waitEvent[RegistrationChanged](t, a)
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered {
		t.Fatalf("event %+v", e)
	}
	if code := notify(t, strangerClient(t), a, event("check-sync")); code != 403 {
		t.Errorf("check-sync from a stranger: %d, want 403", code)
	}
	if n := a.IgnoredNotifies(); n != 1 {
		t.Errorf("IgnoredNotifies %d, want 1", n)
	}
	if code := notify(t, proxy.client, a, event("check-sync")); code != 200 {
		t.Fatalf("check-sync from the outbound proxy: %d, want 200", code)
	}
	if e := waitEvent[CheckSync](t, a); e.Source.Addr() != proxy.addr.Addr() {
		t.Errorf("CheckSync from %v, want the proxy's %v", e.Source, proxy.addr.Addr())
	}
}
