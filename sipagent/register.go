package sipagent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

const (
	// registerTimeout bounds one REGISTER including DNS, connecting and
	// failing over: each target gets targetTimeout, so this lets about six
	// in turn be tried (sipgo's own transaction timeout is 32 s).
	registerTimeout = 30 * time.Second
	// keepaliveTimeout bounds one keep-alive OPTIONS.
	keepaliveTimeout = 5 * time.Second
	jitterFraction   = 0.2
	// maxAuthRounds allows one stale-nonce retry after the first challenge.
	maxAuthRounds = 2
)

// intervalTooBriefError is a 423 response (RFC 3261 section 10.2.8).
type intervalTooBriefError struct{ min time.Duration }

func (e *intervalTooBriefError) Error() string {
	return fmt.Sprintf("sipagent: register: 423 interval too brief, min %v", e.min)
}

// registration is the state RFC 3261 section 10.2 asks a UA to keep across
// REGISTERs: one Call-ID, increasing CSeq numbers.
type registration struct {
	a       *Agent
	callID  sip.CallIDHeader
	fromTag string
	seq     uint32
	state   string
	bound   bool // a binding may exist at the registrar
	// contact is the Contact of the last successful REGISTER.
	contact *sip.ContactHeader
	// addr is where the last successful REGISTER was answered from.
	addr netip.AddrPort
	// flow is our connection to the registrar over TCP or TLS.
	flow *flowConn
	// moved: the last REGISTER's response showed a public address other
	// than the one in our Contact (sip.nat auto).
	moved bool
	// ticks counts UDP keep-alives, every optionsEvery-th is an OPTIONS.
	ticks int
}

func (a *Agent) registerLoop(ctx context.Context) {
	r := &registration{
		a:       a,
		callID:  sip.CallIDHeader(sip.GenerateTagN(24)),
		fromTag: sip.GenerateTagN(16),
		seq:     rand.Uint32N(1 << 15),
	}
	expires := a.cfg.RegisterExpires
	backoff := a.cfg.RetryMin
	// followed limits re-registering for a new public address to once in
	// a row, so that a NAT that changes its mapping every time cannot
	// keep us in a loop.
	followed := false
	if !r.waitClock(ctx) {
		return
	}
	for ctx.Err() == nil {
		if r.state != StateRegistered && r.state != StateRegistering {
			r.report(StateRegistering, time.Time{}, nil)
		}
		a.refreshProxyIPs(ctx)
		granted, err := r.register(ctx, expires)
		if ctx.Err() != nil {
			break
		}
		var brief *intervalTooBriefError
		if errors.As(err, &brief) && brief.min > expires {
			// The registrar names the shortest interval it accepts;
			// retry with it at once.
			expires = brief.min
			continue
		}
		if err != nil {
			r.report(StateFailed, time.Time{}, err)
			wait := jitter(backoff)
			backoff = min(2*backoff, a.cfg.RetryMax)
			a.log.Warn("sipagent: registration failed", "err", err, "retry_in", wait)
			if !a.sleep(ctx, wait) {
				break
			}
			continue
		}
		backoff = a.cfg.RetryMin
		r.report(StateRegistered, a.clk.Now().Add(granted), nil)
		a.log.Info("sipagent: registered", "registrar", a.cfg.Registrar, "transport", strings.ToLower(a.transport),
			"addr", r.addr, "contact", r.contact.Address.String(), "expires", granted)
		if r.moved && !followed {
			// RFC 3581 section 4: the registrar saw us at another address;
			// bind that one so that it can reach us through the NAT.
			followed = true
			continue
		}
		followed = false
		r.hold(ctx, granted)
	}
	if r.bound {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownWait)
		defer cancel()
		if _, err := r.register(uctx, 0); err != nil {
			a.log.Warn("sipagent: un-register", "err", err)
		}
	}
}

func (r *registration) report(state string, expires time.Time, err error) {
	r.state = state
	r.a.emit(RegistrationChanged{
		State: state, Registrar: r.a.cfg.Registrar, Expires: expires, Err: err,
		Transport: strings.ToLower(r.a.transport), Addr: r.addr,
	})
}

func (a *Agent) sleep(ctx context.Context, d time.Duration) bool {
	t := a.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// jitter spreads d by ±20% so that many stations do not retry in step.
func jitter(d time.Duration) time.Duration {
	f := 1 - jitterFraction + 2*jitterFraction*rand.Float64()
	return time.Duration(float64(d) * f)
}

// request builds an out-of-dialog request to the registrar from our AOR.
func (r *registration) request(method sip.RequestMethod, le *localEnd, callID sip.CallIDHeader) *sip.Request {
	a := r.a
	req := sip.NewRequest(method, *a.registrar.Clone())
	req.SetTransport(a.transport)
	aor := a.aor(le.ip)
	// sipgo would put its user-agent name into a missing From; registrars
	// that check the From user need our AOR in both From and To.
	req.AppendHeader(&sip.FromHeader{DisplayName: a.cfg.DisplayName, Address: aor, Params: sip.HeaderParams{{K: "tag", V: r.fromTag}}})
	req.AppendHeader(&sip.ToHeader{Address: aor})
	req.AppendHeader(&callID)
	r.seq++
	req.AppendHeader(&sip.CSeqHeader{SeqNo: r.seq, MethodName: method})
	req.AppendHeader(sip.NewHeader("User-Agent", a.cfg.UserAgent))
	a.addRoute(req)
	return req
}

// register sends one REGISTER (expires 0 removes our binding) and returns
// the granted lifetime.
func (r *registration) register(ctx context.Context, expires time.Duration) (time.Duration, error) {
	a := r.a
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	// Connect first: over TLS our Contact may name the connection.
	if err := r.connect(ctx); err != nil {
		return 0, fmt.Errorf("sipagent: register: %w", err)
	}
	le, err := a.local(ctx, a.nextHop(a.registrar))
	if err != nil {
		return 0, err
	}
	req := r.request(sip.REGISTER, le, r.callID)
	contact := le.dua.ContactHDR.Clone()
	req.AppendHeader(contact)
	if expires > 0 && r.bound && r.contact != nil && !sameContact(&r.contact.Address, &contact.Address) {
		// Our address changed (a NAT's public address learnt, or lost):
		// remove the old binding in the same request (RFC 3261 section
		// 10.2.2) so that calls are not forked to an address that is gone.
		old := r.contact.Clone()
		old.Params = sip.HeaderParams{{K: "expires", V: "0"}}
		req.AppendHeader(old)
	}
	exp := sip.ExpiresHeader(uint32(expires / time.Second))
	req.AppendHeader(&exp)

	res, err := a.sendFailover(ctx, le, req, a.registrar)
	if cseq := req.CSeq(); cseq != nil && cseq.SeqNo > r.seq {
		r.seq = cseq.SeqNo // digest retries used numbers of their own
	}
	if err != nil {
		if r.flow != nil {
			if why := r.flow.lostBy(); why != nil {
				// What ended our connection explains the silence.
				err = fmt.Errorf("%w; connection closed: %w", err, why)
			}
		}
		return 0, fmt.Errorf("sipagent: register: %w", err)
	}
	switch {
	case res.StatusCode == sip.StatusIntervalToBrief:
		h := res.GetHeader("Min-Expires")
		if h == nil {
			return 0, errors.New("sipagent: register: 423 without Min-Expires")
		}
		secs, perr := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
		if perr != nil {
			return 0, fmt.Errorf("sipagent: register: bad Min-Expires %q", h.Value())
		}
		return 0, &intervalTooBriefError{min: time.Duration(secs) * time.Second}
	case !res.IsSuccess():
		return 0, fmt.Errorf("sipagent: register: %w", &StatusError{Target: a.registrar.String(), Code: res.StatusCode, Reason: res.Reason})
	}
	if expires == 0 {
		r.bound = false
		return 0, nil
	}
	granted := grantedExpiry(res, contact, expires)
	if granted <= 0 {
		return 0, errors.New("sipagent: register: registrar granted no binding")
	}
	r.bound = true
	r.contact = contact
	r.addr = responseSource(res)
	r.moved = a.natAuto && a.learnPublic(le.ip, res)
	return granted, nil
}

// grantedExpiry reads the lifetime the registrar gave our binding: our
// Contact's expires parameter, else the Expires header, else what we asked
// for (RFC 3261 section 10.2.4).
func grantedExpiry(res *sip.Response, ours *sip.ContactHeader, asked time.Duration) time.Duration {
	contacts := res.GetHeaders("Contact")
	for _, h := range contacts {
		var uri sip.Uri
		var params sip.HeaderParams
		if ch, ok := h.(*sip.ContactHeader); ok {
			uri, params = ch.Address, ch.Params
		} else if _, err := sip.ParseAddressValue(h.Value(), &uri, &params); err != nil {
			continue
		}
		if len(contacts) > 1 && !sameContact(&uri, &ours.Address) {
			continue
		}
		if v, ok := params.Get("expires"); ok {
			if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
				return time.Duration(secs) * time.Second
			}
		}
	}
	if h := res.GetHeader("Expires"); h != nil {
		if secs, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32); err == nil {
			return time.Duration(secs) * time.Second
		}
	}
	return asked
}

// options sends an OPTIONS to the registrar; any response proves the
// path (and its NAT bindings) alive. With sip.nat auto, a response showing
// that the NAT now maps us to another address is errMoved.
func (r *registration) options(ctx context.Context) error {
	a := r.a
	ctx, cancel := context.WithTimeout(ctx, keepaliveTimeout)
	defer cancel()
	le, err := a.local(ctx, a.nextHop(a.registrar))
	if err != nil {
		return err
	}
	req := r.request(sip.OPTIONS, le, sip.CallIDHeader(sip.GenerateTagN(24)))
	res, err := a.sendToHop(ctx, le, req, a.registrar)
	if err != nil {
		return fmt.Errorf("sipagent: keep-alive: %w", err)
	}
	if a.natAuto && a.learnPublic(le.ip, res) {
		return errMoved
	}
	return nil
}
