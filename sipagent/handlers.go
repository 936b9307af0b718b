package sipagent

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

const acceptTypes = "application/sdp, application/dtmf-relay, application/dtmf"

// maxUDPPayload is the largest UDP datagram IPv4 carries (RFC 768 with a
// 20-byte IP header).
const maxUDPPayload = 65507

// sipgo refuses to write UDP messages within 200 bytes of 1500, but RFC
// 3261 section 18.2.2 sends a response back where the request came from
// whatever its size: a request with long header fields (RFC 4475 section
// 3.1.1.11) would get no answer at all, and its INVITE transaction would
// end at once. IP fragments what exceeds the path MTU.
func init() { sip.UDPMTUSize = maxUDPPayload + 200 }

// handledMethods are the methods the agent implements (see handler).
var handledMethods = []sip.RequestMethod{sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.INFO, sip.OPTIONS, sip.NOTIFY, sip.UPDATE}

func (a *Agent) routes() {
	for _, m := range handledMethods {
		a.srv.OnRequest(m, a.guard(a.handler(m)))
	}
	a.srv.OnNoRoute(a.guard(a.onNoRoute))
}

// handler is the agent's handler for method, unguarded: onNoRoute for a
// method it does not implement.
func (a *Agent) handler(method sip.RequestMethod) sipgo.RequestHandler {
	switch method {
	case sip.INVITE:
		return a.onInvite
	case sip.ACK:
		return a.onAck
	case sip.BYE:
		return a.onBye
	case sip.CANCEL:
		return a.onCancel
	case sip.INFO:
		return a.onInfo
	case sip.OPTIONS:
		return a.onOptions
	case sip.NOTIFY:
		return a.onNotify
	case sip.UPDATE:
		return a.onUpdate
	}
	return a.onNoRoute
}

// guard is every request's way in. It drops, unanswered, requests from
// strangers over their rate and from scanners (defence.go; over UDP the
// datagram was filtered before parsing already), and keeps a bad request
// from taking the process down: sipgo runs handlers without recovering
// panics.
func (a *Agent) guard(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if !a.def.admitRequest(req) {
			return
		}
		defer func() {
			if r := recover(); r != nil {
				a.log.Error("sipagent: panic in request handler", "method", req.Method, "panic", fmt.Sprint(r))
				func() {
					defer func() { _ = recover() }()
					a.respond(req, tx, sip.StatusInternalServerError, "Server Internal Error")
				}()
			}
		}()
		h(req, tx)
	}
}

func (a *Agent) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, headers ...sip.Header) {
	if req.IsAck() || tx == nil {
		return
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		a.log.Debug("sipagent: respond", "method", req.Method, "code", code, "err", err)
	}
}

func (a *Agent) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	a.respond(req, tx, sip.StatusOK, "OK",
		sip.NewHeader("Allow", allowMethods),
		sip.NewHeader("Accept", acceptTypes),
		sip.NewHeader("Supported", optionTimer),
		sip.NewHeader("User-Agent", a.cfg.UserAgent))
}

// onNoRoute answers methods we do not implement; RFC 3261 section 21.4.6
// requires the Allow header with 405.
func (a *Agent) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	a.respond(req, tx, sip.StatusMethodNotAllowed, "Method Not Allowed", sip.NewHeader("Allow", allowMethods))
}

// onCancel only sees a CANCEL that matched no INVITE transaction: sipgo
// answers a matching one itself (200 to the CANCEL, 487 to the INVITE)
// and tells the dialog, which ends the pending call.
func (a *Agent) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	a.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
}

// onAck confirms an answered incoming call; without it sipgo keeps
// retransmitting the 200 OK (RFC 3261 section 13.3.1.4).
func (a *Agent) onAck(req *sip.Request, tx sip.ServerTransaction) {
	c := a.callByRequest(req)
	if c == nil || c.takeAck(req) || c.ss == nil {
		return
	}
	if err := c.ss.ReadAck(req, tx); err != nil {
		a.log.Debug("sipagent: ACK", "call", c.id, "err", err)
	}
}

func (a *Agent) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c := a.callByRequest(req)
	if c == nil {
		a.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	c.presetReason(ReasonRemoteHangup)
	var err error
	if c.cs != nil {
		err = c.cs.ReadBye(req, tx)
	} else {
		err = c.ss.ReadBye(req, tx)
	}
	if errors.Is(err, sipgo.ErrDialogInvalidCseq) {
		// An out-of-order BYE (RFC 3261 section 12.2.2) ends nothing.
		c.clearReason()
		a.respond(req, tx, sip.StatusInternalServerError, "Server Internal Error")
		return
	}
	if err != nil {
		a.log.Debug("sipagent: BYE", "call", c.id, "err", err)
	}
	c.end(ReasonRemoteHangup)
}

func (a *Agent) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	c := a.callByRequest(req)
	if c == nil {
		a.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	body := req.Body()
	if len(body) == 0 {
		// An empty INFO is a dialog keep-alive (RFC 6086 section 4.2.2).
		a.respond(req, tx, sip.StatusOK, "OK")
		return
	}
	var ct string
	if h := req.ContentType(); h != nil {
		ct, _, _ = strings.Cut(strings.ToLower(h.Value()), ";")
		ct = strings.TrimSpace(ct)
	}
	var digit rune
	var err error
	switch ct {
	case "application/dtmf-relay":
		digit, err = parseDTMFRelay(string(body))
	case "application/dtmf":
		digit, err = parseDTMFDigit(strings.TrimSpace(string(body)))
	default:
		a.respond(req, tx, sip.StatusUnsupportedMediaType, "Unsupported Media Type",
			sip.NewHeader("Accept", "application/dtmf-relay, application/dtmf"))
		return
	}
	if err != nil {
		a.log.Debug("sipagent: INFO", "call", c.id, "err", err)
		a.respond(req, tx, sip.StatusBadRequest, "Bad Request")
		return
	}
	a.respond(req, tx, sip.StatusOK, "OK")
	a.emit(DTMF{Call: c, Digit: digit})
}

// parseDTMFRelay reads the de-facto application/dtmf-relay body:
// "Signal=5\r\nDuration=160".
func parseDTMFRelay(body string) (rune, error) {
	var digit rune
	found := false
	for line := range strings.Lines(body) {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			if strings.TrimSpace(line) == "" {
				continue
			}
			return 0, fmt.Errorf("sipagent: dtmf-relay: bad line %q", strings.TrimSpace(line))
		}
		if !strings.EqualFold(strings.TrimSpace(k), "signal") {
			continue
		}
		if found {
			return 0, errors.New("sipagent: dtmf-relay: two Signal lines")
		}
		d, err := parseDTMFDigit(strings.TrimSpace(v))
		if err != nil {
			return 0, err
		}
		digit, found = d, true
	}
	if !found {
		return 0, errors.New("sipagent: dtmf-relay: no Signal")
	}
	return digit, nil
}

// parseDTMFDigit accepts one of 0-9 * # A-D, or the event codes 10 and 11
// that some phones send for * and # (RFC 4733 section 3.2 numbering).
func parseDTMFDigit(s string) (rune, error) {
	switch {
	case len(s) == 1 && strings.Contains("0123456789*#ABCD", strings.ToUpper(s)):
		return rune(strings.ToUpper(s)[0]), nil
	case s == "10":
		return '*', nil
	case s == "11":
		return '#', nil
	}
	return 0, fmt.Errorf("sipagent: bad DTMF digit %q", s)
}

func (a *Agent) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	runCtx, ok := a.enter()
	if !ok {
		a.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	defer a.wg.Done()

	if to := req.To(); to != nil && to.Params.Has("tag") {
		// A re-INVITE (RFC 3261 section 14.2).
		if c := a.callByRequest(req); c != nil {
			c.serveInDialog(runCtx, req, tx)
		} else {
			a.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		}
		return
	}
	// RFC 3261 section 8.2.2.3: of the extensions, we support timer.
	if u := unsupportedRequire(req); len(u) > 0 {
		a.respond(req, tx, sip.StatusBadExtension, "Bad Extension", sip.NewHeader("Unsupported", strings.Join(u, ", ")))
		return
	}
	timers, err := readTimerRequest(req)
	switch {
	case errors.Is(err, errSessionTooSmall):
		// RFC 4028 section 8.1.
		a.respond(req, tx, statusIntervalTooSmall, "Session Interval Too Small", minSEHeader())
		return
	case err != nil:
		a.respond(req, tx, sip.StatusBadRequest, "Bad Request")
		return
	}
	if h := req.ContentType(); h != nil && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(h.Value())), "application/sdp") {
		a.respond(req, tx, sip.StatusUnsupportedMediaType, "Unsupported Media Type", sip.NewHeader("Accept", "application/sdp"))
		return
	}
	offer, err := parseSDP(req.Body())
	if err != nil {
		a.log.Info("sipagent: INVITE refused", "from", fromURI(req), "err", err)
		if errors.Is(err, errSDPSyntax) {
			a.respond(req, tx, sip.StatusBadRequest, "Bad Request")
		} else {
			a.respond(req, tx, sip.StatusNotAcceptableHere, "Not Acceptable Here")
		}
		return
	}
	src := requestSource(req)
	host := req.Source()
	if src.IsValid() {
		host = src.Addr().String()
	}
	le, err := a.local(runCtx, host)
	if err != nil {
		a.log.Warn("sipagent: INVITE", "err", err)
		a.respond(req, tx, sip.StatusInternalServerError, "Server Internal Error")
		return
	}
	ss, err := le.dua.ReadInvite(req, tx)
	if err != nil {
		a.log.Info("sipagent: INVITE refused", "from", fromURI(req), "err", err)
		a.respond(req, tx, sip.StatusBadRequest, "Bad Request")
		return
	}
	callID := ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	c := newCall(a, le, callID, ss.ID, fromURI(req), callPending)
	c.ss, c.tx, c.offer, c.timers = ss, tx, offer, timers
	c.decisions = make(chan decision)
	a.addCall(c)
	if err := ss.Respond(sip.StatusTrying, "Trying", nil); err != nil {
		a.log.Debug("sipagent: 100 Trying", "err", err)
	}
	a.log.Info("sipagent: incoming call", "call", callID, "from", c.remote, "source", src)
	a.emit(IncomingCall{Call: c, From: c.remote, Source: src, FromProxy: src.IsValid() && a.fromProxy(src.Addr())})
	c.serveInvite(runCtx)
}

// onUpdate handles UPDATE (RFC 3311) within a call.
func (a *Agent) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	runCtx, ok := a.enter()
	if !ok {
		a.respond(req, tx, sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	defer a.wg.Done()
	c := a.callByRequest(req)
	if c == nil {
		a.respond(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	c.serveInDialog(runCtx, req, tx)
}

func fromURI(req *sip.Request) string {
	if h := req.From(); h != nil {
		return h.Address.String()
	}
	return ""
}

// serveInvite owns the INVITE server transaction until its final response:
// sipgo terminates the transaction when the handler returns.
func (c *Call) serveInvite(runCtx context.Context) {
	a := c.a
	timeout := a.clk.NewTimer(a.cfg.AnswerTimeout)
	defer timeout.Stop()
	for {
		select {
		case d := <-c.decisions:
			switch {
			case d.code < 200:
				d.result <- c.ss.Respond(d.code, d.reason, nil)
				continue
			case d.code < 300:
				res := sip.NewSDPResponseFromRequest(c.ss.InviteRequest, d.sdp)
				res.AppendHeader(sip.NewHeader("Allow", allowMethods))
				for _, h := range c.timers.headers() {
					res.AppendHeader(h)
				}
				err := c.ss.WriteResponse(res)
				if err == nil {
					c.activate(d.answer)
					a.trustCaller(runCtx, c)
					if c.timers.se > 0 {
						c.refreshed(c.timers)
					}
					a.log.Info("sipagent: call answered", "call", c.id, "media", d.answer)
				} else if errors.Is(err, sip.ErrTransactionCanceled) {
					c.end(ReasonCancelled) // the CANCEL crossed our 200
				} else {
					c.end(ReasonFailed)
				}
				d.result <- err
			default:
				d.result <- c.final(d.code, d.reason)
				c.end(d.ended)
			}
			return
		case <-c.ss.Context().Done():
			// sipgo already answered the CANCEL and sent 487.
			c.end(ReasonCancelled)
			return
		case <-timeout.C():
			if err := c.final(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"); err != nil {
				a.log.Debug("sipagent: 480", "err", err)
			}
			c.end(ReasonNoAnswer)
			return
		case <-runCtx.Done():
			if err := c.final(sip.StatusServiceUnavailable, "Service Unavailable"); err != nil {
				a.log.Debug("sipagent: 503", "err", err)
			}
			c.end(ReasonShutdown)
			return
		}
	}
}

// trustCaller exempts the source of an answered call from the rate limit
// until the call ends: its in-dialog requests are no stranger's.
func (a *Agent) trustCaller(runCtx context.Context, c *Call) {
	src := requestSource(c.ss.InviteRequest)
	if !src.IsValid() {
		return
	}
	release := a.def.trustPeer(src.Addr())
	started := a.track(func() {
		defer release()
		select {
		case <-c.Done():
		case <-runCtx.Done():
		}
	})
	if !started {
		release()
	}
}

// final sends a failure response on the INVITE transaction, which
// absorbs the ACK itself (RFC 3261 section 17.2.1), so nothing waits here.
func (c *Call) final(code int, reason string) error {
	res := sip.NewResponseFromRequest(c.ss.InviteRequest, code, reason, nil)
	if err := c.tx.Respond(res); err != nil {
		return fmt.Errorf("sipagent: respond %d: %w", code, err)
	}
	return nil
}
