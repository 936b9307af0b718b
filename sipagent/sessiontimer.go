package sipagent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock"
)

// Session timers (RFC 4028).
const (
	// minSessionExpires is our Min-SE, the RFC's minimum (section 4): a
	// shorter interval is refused with 422.
	minSessionExpires = 90 * time.Second
	// defaultSessionExpires is what we ask for in our INVITEs; section 4
	// recommends 30 minutes.
	defaultSessionExpires = 1800 * time.Second
	// maxExpiryMargin caps how long before expiry a session is ended when
	// the peer should have refreshed it (section 10).
	maxExpiryMargin = 32 * time.Second
	optionTimer     = "timer"
)

// sessionTimer is a call's negotiated session interval.
type sessionTimer struct {
	interval  time.Duration
	weRefresh bool
	refresh   clock.Timer // when we refresh; nil otherwise
	expire    clock.Timer // the session's end without a refresh
}

func (st *sessionTimer) stop() {
	if st == nil {
		return
	}
	if st.refresh != nil {
		st.refresh.Stop()
	}
	st.expire.Stop()
}

// sessionTimerHeaders adds what an INVITE of ours says about session
// timers: we support them (RFC 4028 section 7.1), ask for the default
// interval and let the callee pick the refresher.
func (a *Agent) sessionTimerHeaders(req *sip.Request) {
	req.AppendHeader(sip.NewHeader("Supported", optionTimer))
	req.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(defaultSessionExpires/time.Second))))
	req.AppendHeader(sip.NewHeader("Min-SE", strconv.Itoa(int(minSessionExpires/time.Second))))
}

// startSessionTimer starts the session timer that the 2xx to our INVITE
// negotiated (RFC 4028 section 7.2): none when it carries no
// Session-Expires; the refresher parameter names who refreshes, "uac"
// (us) by default.
func (c *Call) startSessionTimer(res *sip.Response) {
	se, refresher, ok, err := parseSessionExpires(res)
	if err != nil {
		c.a.log.Debug("sipagent: ignoring Session-Expires", "call", c.id, "err", err)
		return
	}
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setSessionTimerLocked(se, refresher != "uas")
}

// setSessionTimerLocked (re)arms the session timer; c.mu is held.
func (c *Call) setSessionTimerLocked(se time.Duration, weRefresh bool) {
	if c.state == callEnded {
		return
	}
	c.dlg.st.stop()
	c.dlg.stGen++
	gen := c.dlg.stGen
	st := &sessionTimer{interval: se, weRefresh: weRefresh}
	clk := c.a.clk
	if weRefresh {
		// Section 10: the refresher sends its refresh at half the interval.
		st.refresh = clk.AfterFunc(se/2, func() {
			c.a.track(func() { c.refreshDue(gen) })
		})
	}
	// Section 10: without a refresh, the session ends min(32 s, SE/3)
	// before it expires, so that our BYE beats the peer's timer.
	st.expire = clk.AfterFunc(se-min(maxExpiryMargin, se/3), func() {
		c.a.track(func() { c.expired(gen) })
	})
	c.dlg.st = st
}

// stopSessionTimerLocked turns the session timer off; c.mu is held.
func (c *Call) stopSessionTimerLocked() {
	c.dlg.st.stop()
	c.dlg.st = nil
	c.dlg.stGen++
}

func (c *Call) currentTimer(gen uint64) (*sessionTimer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dlg.st, c.dlg.stGen == gen && c.state == callActive && c.dlg.st != nil
}

// expired ends a session nobody refreshed in time (RFC 4028 section 10).
func (c *Call) expired(gen uint64) {
	if _, ok := c.currentTimer(gen); !ok {
		return
	}
	c.a.log.Info("sipagent: session expired", "call", c.id)
	c.presetReason(ReasonSessionExpired)
	ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	if err := c.hangup(ctx, ReasonSessionExpired); err != nil {
		c.a.log.Debug("sipagent: BYE on expiry", "call", c.id, "err", err)
	}
}

// retryRefresh is how soon a refresh that met a glare (491) or a
// transaction of the peer's in progress is tried again.
const retryRefresh = 2 * time.Second

// refreshDue sends our session refresh: UPDATE when the peer allows it,
// which needs no new offer, else a re-INVITE with our unchanged SDP
// (RFC 4028 section 10). The 2xx sets the next interval.
func (c *Call) refreshDue(gen uint64) {
	st, ok := c.currentTimer(gen)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), refreshWait)
	defer cancel()
	err := c.refresh(ctx, st.interval)
	var se *StatusError
	switch {
	case err == nil:
		return
	case errors.Is(err, errBusy) || errors.As(err, &se) && se.Code == sip.StatusRequestPending:
		c.mu.Lock()
		if c.dlg.stGen == gen && c.dlg.st == st {
			st.refresh = c.a.clk.AfterFunc(retryRefresh, func() {
				c.a.track(func() { c.refreshDue(gen) })
			})
		}
		c.mu.Unlock()
		return
	case errors.As(err, &se) && se.Code != sip.StatusRequestTimeout && se.Code != sip.StatusCallTransactionDoesNotExists:
		// Any other failure leaves the session as it was (section 10);
		// it ends at expiry unless a refresh succeeds first.
		c.a.log.Info("sipagent: session refresh refused", "call", c.id, "err", err)
		return
	}
	// Section 10: a refresh that times out or gets 408 or 481 ends the
	// session.
	c.a.log.Info("sipagent: session refresh failed", "call", c.id, "err", err)
	hctx, hcancel := context.WithTimeout(context.Background(), shutdownWait)
	defer hcancel()
	c.presetReason(ReasonSessionExpired)
	if herr := c.hangup(hctx, ReasonSessionExpired); herr != nil {
		c.a.log.Debug("sipagent: BYE after failed refresh", "call", c.id, "err", herr)
	}
}

// refreshWait bounds one refresh transaction (RFC 3261 Timer B: 64*T1).
var refreshWait = 64 * sip.T1

// timerRequest is what a peer's INVITE, re-INVITE or UPDATE asked of
// session timers, and the answer we give (RFC 4028 section 9).
type timerRequest struct {
	se        time.Duration // 0: no Session-Expires
	weRefresh bool
	peerTimer bool // the peer supports timer (Supported or Require)
}

// errSessionTooSmall is a Session-Expires under our Min-SE: answered 422
// (RFC 4028 section 6).
var errSessionTooSmall = errors.New("session interval too small")

// readTimerRequest reads a request's Session-Expires as its UAS. Without
// a refresher parameter, the peer refreshes if it supports timers, else we
// do (section 9).
func readTimerRequest(req *sip.Request) (timerRequest, error) {
	tr := timerRequest{peerTimer: hasOptionTag(req, "Supported", "k", optionTimer) || hasOptionTag(req, "Require", "", optionTimer)}
	se, refresher, ok, err := parseSessionExpires(req)
	if err != nil || !ok {
		return tr, err
	}
	if se < minSessionExpires {
		return tr, fmt.Errorf("sipagent: %w: %v < %v", errSessionTooSmall, se, minSessionExpires)
	}
	tr.se = se
	switch refresher {
	case "uac":
		tr.weRefresh = !tr.peerTimer // a peer without timers cannot refresh
	case "uas":
		tr.weRefresh = true
	default:
		tr.weRefresh = !tr.peerTimer
	}
	return tr, nil
}

// headers are the 2xx's Session-Expires, and Require: timer when the peer
// supports it (section 9).
func (tr timerRequest) headers() []sip.Header {
	h := []sip.Header{sip.NewHeader("Supported", optionTimer)}
	if tr.se == 0 {
		return h
	}
	refresher := "uac"
	if tr.weRefresh {
		refresher = "uas"
	}
	h = append(h, sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=%s", int(tr.se/time.Second), refresher)))
	if tr.peerTimer {
		h = append(h, sip.NewHeader("Require", optionTimer))
	}
	return h
}

// minSEHeader goes with a 422 (section 6).
func minSEHeader() sip.Header {
	return sip.NewHeader("Min-SE", strconv.Itoa(int(minSessionExpires/time.Second)))
}

// headerReader is a request or a response.
type headerReader interface {
	GetHeader(name string) sip.Header
	GetHeaders(name string) []sip.Header
}

// parseSessionExpires reads Session-Expires (compact form "x"): the
// interval and the refresher parameter in lower case; ok is false when the
// header is absent.
func parseSessionExpires(m headerReader) (se time.Duration, refresher string, ok bool, err error) {
	h := m.GetHeader("Session-Expires")
	if h == nil {
		h = m.GetHeader("x")
	}
	if h == nil {
		return 0, "", false, nil
	}
	parts := strings.Split(h.Value(), ";")
	n, err := strconv.ParseUint(strings.TrimSpace(parts[0]), 10, 32)
	if err != nil || n == 0 {
		return 0, "", false, fmt.Errorf("sipagent: bad Session-Expires %q", h.Value())
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "refresher") {
			refresher = strings.ToLower(strings.TrimSpace(v))
		}
	}
	return time.Duration(n) * time.Second, refresher, true, nil
}

// hasOptionTag reports whether a Supported or Require header (or its
// compact form) lists tag.
func hasOptionTag(m headerReader, name, compact, tag string) bool {
	hs := m.GetHeaders(name)
	if compact != "" {
		hs = append(hs, m.GetHeaders(compact)...)
	}
	for _, h := range hs {
		for t := range strings.SplitSeq(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}
