package sipagent

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// checkSync is the event package a PBX uses to tell a phone to fetch its
// configuration now: Asterisk's "pjsip send notify", kamailio, Polycom,
// Yealink and Snom all send it as an out-of-dialog NOTIFY.
const checkSync = "check-sync"

// onNotify turns a check-sync NOTIFY from the registrar or outbound proxy
// into a CheckSync event. Anyone else gets 403 and no event: a stranger
// must not be able to make the station reload its configuration.
// We hold no subscriptions, so the NOTIFY is not matched against one.
func (a *Agent) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	if _, ok := a.enter(); !ok {
		a.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	defer a.wg.Done()

	src := requestSource(req)
	if !src.IsValid() || !a.fromProxy(src.Addr()) {
		a.ignoredNotifies.Add(1)
		a.log.Info("sipagent: NOTIFY refused: not from the registrar or outbound proxy", "source", req.Source())
		a.respond(req, tx, sip.StatusForbidden, "Forbidden")
		return
	}
	event, err := eventHeader(req)
	if err != nil {
		a.log.Info("sipagent: NOTIFY refused", "source", src, "err", err)
		a.respond(req, tx, sip.StatusBadRequest, "Bad Request")
		return
	}
	if pkg, _, _ := strings.Cut(event, ";"); !strings.EqualFold(strings.TrimSpace(pkg), checkSync) {
		// RFC 6665 section 8.3.2: the event package is not one we understand.
		a.log.Info("sipagent: NOTIFY refused: unsupported event", "source", src, "event", event)
		a.respond(req, tx, statusBadEvent, "Bad Event")
		return
	}
	a.respond(req, tx, sip.StatusOK, "OK")
	// Parameters such as reboot=true are ignored: a fetched configuration
	// is applied without a reboot, or not at all.
	a.log.Info("sipagent: check-sync requested", "source", src, "event", event)
	a.emit(CheckSync{Source: src})
}

// statusBadEvent is 489 Bad Event (RFC 6665 section 8.3.2), which sipgo
// does not name.
const statusBadEvent = 489

// eventHeader returns the value of the request's one Event header, in its
// long or compact ("o") form; RFC 6665 requires it in every NOTIFY.
func eventHeader(req *sip.Request) (string, error) {
	hs := append(req.GetHeaders("Event"), req.GetHeaders("o")...)
	switch len(hs) {
	case 0:
		return "", errors.New("sipagent: NOTIFY without Event header")
	case 1:
	default:
		return "", fmt.Errorf("sipagent: NOTIFY with %d Event headers", len(hs))
	}
	v := strings.TrimSpace(hs[0].Value())
	if pkg, _, _ := strings.Cut(v, ";"); strings.TrimSpace(pkg) == "" {
		return "", fmt.Errorf("sipagent: NOTIFY with empty Event %q", v)
	}
	return v, nil
}

// IgnoredNotifies counts NOTIFY requests refused because they came from
// neither the registrar nor the outbound proxy.
func (a *Agent) IgnoredNotifies() uint64 { return a.ignoredNotifies.Load() }

// requestSource is the transport address a request came from; invalid
// when sipgo reports something that is not an IP:port.
func requestSource(req *sip.Request) netip.AddrPort {
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
}
