package sipagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"intercom/sipagent/sipdns"
)

// DialRequest describes an outgoing call.
type DialRequest struct {
	// Targets are SIP URIs, e.g. "sip:201@pbx.example.com"; with a
	// registrar, a bare user ("201") means that user at the registrar.
	Targets []string
	// Parallel rings all targets at once (the first to answer wins, the
	// others are cancelled); otherwise they are tried one after another.
	Parallel bool
	// RingTimeout limits ringing per target (sequential) or for the whole
	// group (parallel); zero means no limit of our own.
	RingTimeout time.Duration
	Media       MediaOffer
	// OnRinging is called, on Dial's goroutine, when a target reports 180
	// Ringing or 183 Session Progress. A target behind a forking proxy
	// counts as one, whichever of its forks (To tags) ring.
	OnRinging func(target string)
	// OnEarlyMedia is called, on Dial's goroutine and after OnRinging, when
	// a provisional response carries an SDP answer (early media, RFC 3960):
	// ans is where that target plays its ringback or announcement. It is
	// called at most once per ring group: with Parallel only for the first
	// target that sends early media, sequentially once per target; among
	// a target's forks the first with SDP plays. The 2xx carries the
	// authoritative answer (RFC 3261 section 13.2.1); it is normally the
	// same, and the returned Call's Media is what counts.
	OnEarlyMedia func(target string, ans MediaAnswer)
}

// ErrNoAnswer is returned by Dial when RingTimeout passed without an answer.
var ErrNoAnswer = errors.New("no answer")

// errLost is an answer that came after another target (or a timeout or
// cancellation) had already settled the dial; it was hung up.
var errLost = errors.New("answered too late")

// Dial calls the targets and blocks until one answers (its Call is
// returned, media negotiated and ACK sent) or all have failed. Failure
// responses come back as *StatusError within the returned error. When ctx
// is cancelled, pending INVITEs are cancelled (RFC 3261 section 9) and
// ctx.Err() is returned.
func (a *Agent) Dial(ctx context.Context, req DialRequest) (*Call, error) {
	if len(req.Targets) == 0 {
		return nil, errors.New("sipagent: dial: no targets")
	}
	targets := make([]*sip.Uri, len(req.Targets))
	for i, t := range req.Targets {
		u, err := a.parseTarget(t)
		if err != nil {
			return nil, err
		}
		targets[i] = u
	}
	codecs, err := normalizeCodecs(req.Media.Codecs)
	if err != nil {
		return nil, fmt.Errorf("sipagent: dial: %w", err)
	}
	// Refused before anything is sent: keys must not travel in the clear.
	if _, err := a.sdesMode(req.Media.SRTP); err != nil {
		return nil, fmt.Errorf("sipagent: dial: %w", err)
	}
	if req.Parallel {
		return a.ring(ctx, targets, req, codecs)
	}
	var errs []error
	for _, t := range targets {
		c, err := a.ring(ctx, []*sip.Uri{t}, req, codecs)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// parseTarget reads a SIP URI; with a registrar, a bare user part such as
// "201" means that user at the registrar.
func (a *Agent) parseTarget(t string) (*sip.Uri, error) {
	t = strings.TrimSpace(t)
	if a.registrar != nil && t != "" && !strings.ContainsAny(t, ":@;") {
		u := *a.registrar.Clone()
		u.User = t
		return &u, nil
	}
	var u sip.Uri
	if err := sip.ParseUri(t, &u); err != nil || !strings.EqualFold(u.Scheme, "sip") || u.Host == "" {
		return nil, fmt.Errorf("sipagent: dial: bad target %q", t)
	}
	u.Scheme = "sip"
	return &u, nil
}

type attemptResult struct {
	call *Call
	err  error
}

// progress is a provisional response worth reporting: ringing, or early
// media when early is set.
type progress struct {
	target string
	early  *MediaAnswer
}

// arbiter lets exactly one party settle a ring group: the first target to
// answer, or Dial giving up.
type arbiter struct {
	mu      sync.Mutex
	settled bool
}

func (b *arbiter) claim() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.settled {
		return false
	}
	b.settled = true
	return true
}

// ring INVITEs targets at once and returns the first to answer.
func (a *Agent) ring(ctx context.Context, targets []*sip.Uri, req DialRequest, codecs []Codec) (*Call, error) {
	attemptCtx, cancel := context.WithCancel(ctx)
	// Returning cancels every attempt still ringing; each sends its CANCEL
	// in the background.
	defer cancel()
	arb := &arbiter{}
	results := make(chan attemptResult, len(targets))
	// Each attempt reports ringing and early media at most once, so it
	// never blocks on a Dial that has returned.
	ringing := make(chan progress, 2*len(targets))
	var timedOut chan struct{}
	if req.RingTimeout > 0 {
		timedOut = make(chan struct{})
		t := a.clk.AfterFunc(req.RingTimeout, func() { close(timedOut) })
		defer t.Stop()
	}
	started := 0
	for _, t := range targets {
		if !a.track(func() { results <- a.attempt(attemptCtx, t, req, codecs, arb, ringing) }) {
			break
		}
		started++
	}
	if started == 0 {
		return nil, errors.New("sipagent: dial: agent not running")
	}
	var errs []error
	earlyUsed := false
	report := func(p progress) {
		switch {
		case p.early == nil:
			if req.OnRinging != nil {
				req.OnRinging(p.target)
			}
		case !earlyUsed:
			// Forked early media cannot all play at once; the first wins.
			earlyUsed = true
			if req.OnEarlyMedia != nil {
				req.OnEarlyMedia(p.target, *p.early)
			}
		}
	}
	done := ctx.Done()
	for pending := started; pending > 0; {
		select {
		case p := <-ringing:
			report(p)
		case r := <-results:
			pending--
			// An attempt reports progress before its result; keep that order.
			for drained := false; !drained; {
				select {
				case p := <-ringing:
					report(p)
				default:
					drained = true
				}
			}
			if r.call != nil {
				return r.call, nil
			}
			if !errors.Is(r.err, errLost) {
				errs = append(errs, r.err)
			}
		case <-timedOut:
			timedOut = nil
			if arb.claim() {
				return nil, fmt.Errorf("sipagent: dial %s: %w within %v", targetList(targets), ErrNoAnswer, req.RingTimeout)
			}
			// Someone answered just now; its result is on the way.
		case <-done:
			done = nil
			if arb.claim() {
				return nil, ctx.Err()
			}
		}
	}
	return nil, fmt.Errorf("sipagent: dial: %w", errors.Join(errs...))
}

func targetList(targets []*sip.Uri) string {
	s := make([]string, len(targets))
	for i, t := range targets {
		s[i] = t.String()
	}
	return strings.Join(s, ", ")
}

// maxRedirects bounds how many 3xx responses one attempt follows.
const maxRedirects = 5

// attempt INVITEs one target and waits for its final response, following
// 3xx redirects to the Contact they name (RFC 3261 section 8.1.3.4).
func (a *Agent) attempt(ctx context.Context, target *sip.Uri, req DialRequest, codecs []Codec, arb *arbiter, ringing chan<- progress) attemptResult {
	// Ringing and early media are reported at most once per attempt, over
	// all its hops, so the buffered ringing channel never fills.
	var rp reported
	tried := []*sip.Uri{target}
	for {
		r, moved := a.invite(ctx, target, req, codecs, arb, ringing, &rp)
		if moved == nil {
			return r
		}
		next, err := redirectTarget(moved, tried)
		if err != nil {
			return attemptResult{err: fmt.Errorf("%s: %w", target, err)}
		}
		a.log.Info("sipagent: call redirected", "from", target.String(), "to", next.String(), "status", moved.StatusCode)
		tried = append(tried, next)
		target = next
	}
}

// reported tracks what an attempt has reported on the ringing channel.
type reported struct {
	rang, early bool
}

// Redirect errors fail an attempt that was sent on in circles or too far.
var (
	errRedirectLoop = errors.New("redirect loop")
	errTooManyHops  = errors.New("too many redirects")
)

// redirectTarget picks the next target from a 3xx response: its sip: or
// sips: Contacts in q-value order (RFC 3261 section 20.10), skipping ones
// already tried; tried is the chain so far, first target included.
func redirectTarget(res *sip.Response, tried []*sip.Uri) (*sip.Uri, error) {
	status := &StatusError{Target: tried[len(tried)-1].String(), Code: res.StatusCode, Reason: res.Reason}
	if len(tried) > maxRedirects {
		return nil, fmt.Errorf("%w (%d): %w", errTooManyHops, maxRedirects, status)
	}
	type contact struct {
		uri *sip.Uri
		q   float64
	}
	var contacts []contact
	for _, h := range res.GetHeaders("Contact") {
		ch, ok := h.(*sip.ContactHeader)
		if !ok || (!strings.EqualFold(ch.Address.Scheme, "sip") && !strings.EqualFold(ch.Address.Scheme, "sips")) || ch.Address.Host == "" {
			continue
		}
		q := 1.0
		if v, ok := ch.Params.Get("q"); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		contacts = append(contacts, contact{uri: ch.Address.Clone(), q: q})
	}
	if len(contacts) == 0 {
		return nil, status
	}
	slices.SortStableFunc(contacts, func(x, y contact) int { return cmp.Compare(y.q, x.q) })
	for _, c := range contacts {
		if !slices.ContainsFunc(tried, func(t *sip.Uri) bool { return sameTarget(t, c.uri) }) {
			c.uri.Headers = nil
			return c.uri, nil
		}
	}
	return nil, fmt.Errorf("%w at %s: %w", errRedirectLoop, contacts[0].uri, status)
}

// sameTarget compares the parts of two URIs that pick where a request goes.
func sameTarget(x, y *sip.Uri) bool {
	port := func(u *sip.Uri) int {
		if u.Port == 0 {
			return 5060
		}
		return u.Port
	}
	return x.User == y.User && strings.EqualFold(x.Host, y.Host) && port(x) == port(y)
}

// invite sends one INVITE to target and waits for its final response; a
// 3xx is returned as moved instead of a result.
func (a *Agent) invite(ctx context.Context, target *sip.Uri, req DialRequest, codecs []Codec, arb *arbiter, ringing chan<- progress, rp *reported) (attemptResult, *sip.Response) {
	name := target.String()
	fail := func(err error) (attemptResult, *sip.Response) {
		return attemptResult{err: fmt.Errorf("%s: %w", name, err)}, nil
	}
	le, err := a.local(ctx, a.nextHop(target))
	if err != nil {
		return fail(err)
	}
	local := req.Media.Addr
	if !local.Addr().IsValid() || local.Addr().IsUnspecified() {
		local = netip.AddrPortFrom(le.ip, local.Port())
	}
	var dtmfPT uint8
	if req.Media.DTMF {
		dtmfPT = dtmfPayloadType
	}
	mode, err := a.sdesMode(req.Media.SRTP)
	if err != nil {
		return fail(err)
	}
	offer := localSDP{addr: local, codecs: codecs, dtmfPT: dtmfPT, ptime: req.Media.Ptime}
	// Fresh keys for every INVITE, so that no two targets share one.
	if offer.savp, offer.crypto, err = offerSDES(mode); err != nil {
		return fail(err)
	}
	if err := offer.newSession(); err != nil {
		return fail(err)
	}
	body, err := offer.marshal()
	if err != nil {
		return fail(err)
	}

	inv := sip.NewRequest(sip.INVITE, *target.Clone())
	inv.SetTransport(a.transport)
	inv.AppendHeader(a.fromHeader(le.ip))
	inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: target.User, Host: target.Host, Port: target.Port}})
	inv.AppendHeader(le.dua.ContactHDR.Clone())
	inv.AppendHeader(sip.NewHeader("Allow", allowMethods))
	a.sessionTimerHeaders(inv)
	inv.AppendHeader(sip.NewHeader("User-Agent", a.cfg.UserAgent))
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	a.addRoute(inv)
	inv.SetBody(body)
	hop := a.hopURI(target)
	targets, err := a.targets(ctx, hop)
	if err != nil {
		return fail(err)
	}

	fw := a.watchForks(le)
	defer func() { a.lateForksUntil(fw, a.clk.Now().Add(64*sip.T1)) }()
	cs, err := a.inviteAuth(ctx, fw, inv, hop, targets, sipgo.AnswerOptions{
		OnResponse: func(res *sip.Response) error {
			if !rp.rang && (res.StatusCode == sip.StatusRinging || res.StatusCode == sip.StatusSessionInProgress) {
				rp.rang = true
				ringing <- progress{target: name}
			}
			if !rp.early && res.IsProvisional() {
				if m, ok := a.earlyMedia(res, offer, req.Media.DTMF, mode.required); ok {
					rp.early = true
					m.Local = local
					ringing <- progress{target: name, early: &m}
				}
			}
			return nil
		},
	})
	if cs == nil {
		return fail(err)
	}
	fw.decided(cs.InviteResponse)
	if err != nil {
		if res := cs.InviteResponse; res != nil && res.IsSuccess() {
			// The callee answered while we were cancelling (RFC 3261
			// section 9.1 allows the race): confirm and end that dialog.
			a.drop(cs)
		}
		var dr *sipgo.ErrDialogResponse
		if errors.As(err, &dr) {
			if dr.Res.StatusCode >= 300 && dr.Res.StatusCode < 400 {
				return attemptResult{}, dr.Res
			}
			return attemptResult{err: &StatusError{Target: name, Code: dr.Res.StatusCode, Reason: dr.Res.Reason}}, nil
		}
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		return fail(err)
	}
	if !arb.claim() {
		a.drop(cs)
		return fail(errLost)
	}
	callID := ""
	if h := inv.CallID(); h != nil {
		callID = h.Value()
	}
	c := newCall(a, le, callID, cs.ID, name, callActive)
	c.cs = cs
	answer, perr := parseSDP(cs.InviteResponse.Body())
	var media MediaAnswer
	if perr == nil {
		media, perr = answerToOffer(answer, offer, req.Media.DTMF, mode.required)
	}
	if perr != nil {
		// RFC 3261 section 13.2.2.4: ACK the 2xx, then end the session.
		a.drop(cs)
		return attemptResult{err: fmt.Errorf("%s: %w", name, perr)}, nil
	}
	media.Local = local
	c.media = media
	a.addCall(c)
	if err := cs.Ack(ctx); err != nil {
		a.removeCall(c)
		a.drop(cs)
		return fail(fmt.Errorf("ACK: %w", err))
	}
	c.startSessionTimer(cs.InviteResponse)
	a.log.Info("sipagent: call answered", "call", callID, "target", name, "media", media)
	return attemptResult{call: c}, nil
}

// inviteAuth sends inv and waits for its final response, answering
// digest challenges as doAuth does; opts carries no credentials. sipgo
// would answer the first challenge of a response, not the strongest (RFC
// 8760 section 2.4), so each authenticated INVITE is a new client session
// with the same Call-ID and From tag (RFC 3261 section 22.2). The INVITE
// goes to the targets of its next hop in turn (RFC 3263 section 4.3) while
// one says nothing for dns.timeout, fails to send or answers 503. cs is
// nil when no INVITE could be sent; otherwise it is the last one's session
// and err its outcome.
func (a *Agent) inviteAuth(ctx context.Context, fw *forkWatch, inv *sip.Request, hop *sip.Uri, targets []sipdns.Target, opts sipgo.AnswerOptions) (*sipgo.DialogClientSession, error) {
	var auth *digestAuth
	next, rounds := 0, 0 // rounds: challenges answered at this target
	for {
		t := targets[next]
		last := next == len(targets)-1
		inv.SetDestination(t.Addr.String())
		cs, heard, err := a.inviteTarget(ctx, fw, inv, !last, opts)
		var dr *sipgo.ErrDialogResponse
		unavailable := errors.As(err, &dr) && dr.Res.StatusCode == sip.StatusServiceUnavailable
		down := ctx.Err() == nil && (!heard || unavailable)
		if down || heard {
			a.setPreferred(hop, t.Addr, !down)
		}
		if down && !last {
			a.log.Info("sipagent: INVITE fails over", "target", t.Addr, "err", err)
			next++
			// A new request for the next target (RFC 3263 section 4.3),
			// without credentials answering another server's challenge.
			for inv.RemoveHeader("Authorization") {
			}
			for inv.RemoveHeader("Proxy-Authorization") {
			}
			inv.RemoveHeader("Via")
			if cseq := inv.CSeq(); cseq != nil {
				cseq.SeqNo++
			}
			auth, rounds = nil, 0
			continue
		}
		if cs == nil {
			return nil, err
		}
		if a.cfg.Password == "" || rounds >= maxAuthRounds || !errors.As(err, &dr) || !isChallenge(dr.Res) {
			return cs, err
		}
		rounds++
		if auth == nil {
			auth = newDigestAuth(a.cfg.AuthUser, a.cfg.Password, &a.nonces)
		}
		retry, aerr := auth.answer(inv, dr.Res)
		if aerr != nil {
			return cs, aerr
		}
		if !retry {
			return cs, err
		}
	}
}

// inviteTarget sends inv and waits for its final response. With
// failover, an INVITE that hears nothing for dns.timeout is given up
// without a CANCEL (RFC 3261 section 9.1: none before a provisional
// response). heard reports whether any response came.
func (a *Agent) inviteTarget(ctx context.Context, fw *forkWatch, inv *sip.Request, failover bool, opts sipgo.AnswerOptions) (cs *sipgo.DialogClientSession, heard bool, err error) {
	cs, err = fw.dua.WriteInvite(ctx, inv)
	if err != nil {
		return nil, false, err
	}
	var answered atomic.Bool
	wait := opts
	wait.OnResponse = func(res *sip.Response) error {
		answered.Store(true)
		if opts.OnResponse != nil {
			return opts.OnResponse(res)
		}
		return nil
	}
	if !failover {
		err = a.waitAnswer(ctx, cs, wait)
		return cs, answered.Load() || cs.InviteResponse != nil, err
	}
	tctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silence := a.clk.AfterFunc(a.dns.timeout, func() {
		if !answered.Load() {
			cancel(sipgo.WaitAnswerForceCancelErr)
		}
	})
	defer silence.Stop()
	err = a.waitAnswer(tctx, cs, wait)
	heard = answered.Load() || cs.InviteResponse != nil
	if !heard && ctx.Err() == nil && context.Cause(tctx) == sipgo.WaitAnswerForceCancelErr {
		err = fmt.Errorf("%s: no response in %v", inv.Destination(), a.dns.timeout)
	}
	return cs, heard, err
}

func (a *Agent) waitAnswer(ctx context.Context, cs *sipgo.DialogClientSession, opts sipgo.AnswerOptions) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		a.mu.Lock()
		stopping := a.state == stateStopping
		a.mu.Unlock()
		if !stopping {
			panic(r)
		}
		err = fmt.Errorf("sipagent: CANCEL cut short by shutdown: %v", r)
	}()
	return cs.WaitAnswer(ctx, opts)
}

// earlyMedia reads the SDP answer of a provisional response, if it has a
// usable one. A bad one is only logged: the 2xx must carry the answer
// anyway (RFC 3261 section 13.2.1), and it is checked there.
func (a *Agent) earlyMedia(res *sip.Response, offer localSDP, dtmf, srtpRequired bool) (MediaAnswer, bool) {
	ct := res.ContentType()
	if res.StatusCode == sip.StatusTrying || len(res.Body()) == 0 || ct == nil ||
		!strings.EqualFold(strings.TrimSpace(strings.Split(ct.Value(), ";")[0]), "application/sdp") {
		return MediaAnswer{}, false
	}
	rm, err := parseSDP(res.Body())
	var m MediaAnswer
	if err == nil {
		m, err = answerToOffer(rm, offer, dtmf, srtpRequired)
	}
	if err != nil {
		a.log.Debug("sipagent: ignoring early media", "status", res.StatusCode, "err", err)
		return MediaAnswer{}, false
	}
	return m, true
}

// drop ACKs an unwanted 2xx and hangs that dialog up.
func (a *Agent) drop(cs *sipgo.DialogClientSession) {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	if err := cs.Ack(ctx); err != nil {
		a.log.Debug("sipagent: ACK unwanted answer", "err", err)
		return
	}
	if err := cs.Bye(ctx); err != nil {
		a.log.Debug("sipagent: BYE unwanted answer", "err", err)
	}
}

// forkWatch sorts the 2xx responses to one INVITE by their To tag. A
// forking proxy passes on the answer of every UAS that picks up (RFC 3261
// sections 13.2.2.4 and 19.3): the first makes the call; each other one
// must still be ACKed, and its dialog is ended with a BYE at once. sipgo
// v1.7.2 hands every 2xx after the first to the INVITE transaction's
// retransmission hook (its Accepted state, RFC 6026 section 7.2), where the
// dialog's hook would re-send the first answer's ACK for all of them; the
// INVITE's transactions are therefore created through forkWatch, which
// keeps that hook for the first answer's retransmissions alone.
type forkWatch struct {
	a   *Agent
	dua *sipgo.DialogUA // this INVITE's own, over a client sending through the watch
	// transport is the INVITE's, for the ACKs and BYEs of other forks.
	transport string

	mu     sync.Mutex
	callID string // of the INVITE, once sent
	// winner is the To tag of the 2xx that settled the INVITE; "" until
	// invite has seen it.
	winner string
	ended  map[string]bool // To tags of other forks already sent a BYE
}

var _ sipgo.ClientTransactionRequester = (*forkWatch)(nil)

// watchForks prepares the dialog user agent for one INVITE toward le.
func (a *Agent) watchForks(le *localEnd) *forkWatch {
	w := &forkWatch{a: a, transport: a.transport, ended: map[string]bool{}}
	// A copy of the shared client, so that only this INVITE's requests
	// pass through the watch.
	client := *le.client
	client.TxRequester = w
	w.dua = &sipgo.DialogUA{Client: &client, ContactHDR: le.dua.ContactHDR}
	return w
}

// Request sends the requests of this INVITE's dialog as sipgo would, and
// wraps the transaction of the dialog-forming INVITE (its To has no tag;
// a re-send with credentials gets a new transaction).
func (w *forkWatch) Request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	if req.IsAck() {
		// The ACK of a 2xx has no transaction (RFC 3261 section 13.2.2.4).
		return nil, w.a.ua.TransportLayer().WriteMsg(req)
	}
	tx, err := w.a.ua.TransactionLayer().Request(ctx, req)
	if err != nil {
		return nil, err
	}
	if to := req.To(); !req.IsInvite() || to == nil || to.Params.Has("tag") {
		return tx, nil
	}
	w.a.watchLateForks(req, w)
	ft := newForkedTx(tx, w)
	// False only if the transaction has already ended; it then gets no
	// responses either.
	tx.OnRetransmission(ft.retransmission)
	return ft, nil
}

// decided records the final response WaitAnswer ended with: a 2xx is the
// answer the call goes with (or that invite drops), and its dialog's.
func (w *forkWatch) decided(res *sip.Response) {
	if res == nil || !res.IsSuccess() {
		return
	}
	w.mu.Lock()
	w.winner = toTag(res)
	w.mu.Unlock()
}

// endFork ACKs a 2xx from a fork whose answer came too late and, the first
// time, ends that dialog with a BYE (RFC 3261 section 13.2.2.4); each
// retransmission of that 2xx gets its ACK again.
func (w *forkWatch) endFork(res *sip.Response) {
	tag := toTag(res)
	callID := ""
	if h := res.CallID(); h != nil {
		callID = h.Value()
	}
	ack, err := forkRequest(sip.ACK, res, w.transport)
	if err != nil {
		w.a.log.Debug("sipagent: forked answer", "call", callID, "tag", tag, "err", err)
		return
	}
	if err := w.dua.Client.WriteRequest(ack); err != nil {
		w.a.log.Debug("sipagent: ACK forked answer", "call", callID, "tag", tag, "err", err)
	}
	w.mu.Lock()
	first := !w.ended[tag]
	w.ended[tag] = true
	w.mu.Unlock()
	if !first {
		return
	}
	w.a.log.Info("sipagent: ending forked answer", "call", callID, "tag", tag)
	bye, err := forkRequest(sip.BYE, res, w.transport)
	if err != nil {
		w.a.log.Debug("sipagent: forked answer", "call", callID, "tag", tag, "err", err)
		return
	}
	// Not while stopping: the BYE would outlive Run's wait for its work.
	w.a.track(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		res, err := w.dua.Client.Do(ctx, bye)
		switch {
		case err != nil:
			w.a.log.Debug("sipagent: BYE forked answer", "call", callID, "tag", tag, "err", err)
		case !res.IsSuccess():
			w.a.log.Debug("sipagent: BYE forked answer", "call", callID, "tag", tag, "status", res.StatusCode)
		}
	})
}

// lateForks are the fork watches of our INVITEs by Call-ID, for 2xx
// responses that come after sipgo ended the INVITE's transaction (a hangup
// ends it at once; RFC 6026 lets a proxy forward 2xx for 64*T1 after the
// first).
type lateForks struct {
	mu sync.Mutex
	m  map[string]lateFork
}

type lateFork struct {
	w     *forkWatch
	until time.Time // zero while the INVITE is under way
}

// watchLateForks records w as the watch of the dialog-forming INVITE inv.
func (a *Agent) watchLateForks(inv *sip.Request, w *forkWatch) {
	id := inv.CallID()
	if id == nil {
		return
	}
	w.mu.Lock()
	w.callID = id.Value()
	w.mu.Unlock()
	now := a.clk.Now()
	a.late.mu.Lock()
	defer a.late.mu.Unlock()
	if a.late.m == nil {
		a.late.m = map[string]lateFork{}
	}
	for k, f := range a.late.m {
		if !f.until.IsZero() && now.After(f.until) {
			delete(a.late.m, k)
		}
	}
	a.late.m[id.Value()] = lateFork{w: w}
}

// lateForksUntil keeps w until the time given.
func (a *Agent) lateForksUntil(w *forkWatch, until time.Time) {
	w.mu.Lock()
	id := w.callID
	w.mu.Unlock()
	a.late.mu.Lock()
	defer a.late.mu.Unlock()
	if f, ok := a.late.m[id]; ok && f.w == w {
		f.until = until
		a.late.m[id] = f
	}
}

// unmatchedResponse takes a response no transaction wanted. A 2xx to one
// of our INVITEs from a fork other than the call's is ACKed and its dialog
// ended (RFC 3261 section 13.2.2.4), also when the call has ended or never
// came about; one to a call's re-INVITE is ACKed again (our ACK was lost).
// Anything else, a forged 2xx included, is only logged.
func (a *Agent) unmatchedResponse(res *sip.Response) {
	id, cseq := res.CallID(), res.CSeq()
	if id != nil && cseq != nil && cseq.MethodName == sip.INVITE && res.IsSuccess() {
		if w := a.lateFork(id.Value(), res); w != nil {
			w.endFork(res)
			return
		}
		if c := a.callWithID(id.Value()); c != nil && c.reack(res) {
			return
		}
	}
	a.log.Debug("sipagent: unmatched response", "response", res.StartLine())
}

// lateFork is the watch of our recent INVITE with Call-ID id when res
// comes from a fork other than the one that won it.
func (a *Agent) lateFork(id string, res *sip.Response) *forkWatch {
	a.late.mu.Lock()
	f, ok := a.late.m[id]
	a.late.mu.Unlock()
	if !ok || (!f.until.IsZero() && a.clk.Now().After(f.until)) {
		return nil
	}
	f.w.mu.Lock()
	winner := f.w.winner
	f.w.mu.Unlock()
	if tag := toTag(res); tag == "" || tag == winner {
		return nil
	}
	return f.w
}

// forkedTx is the dialog-forming INVITE's transaction as sipgo's dialog
// sees it: the retransmission hooks the dialog registers (the re-ACK of
// WriteAck) only see the retransmissions of the winning 2xx.
type forkedTx struct {
	sip.ClientTransaction
	w *forkWatch

	mu    sync.Mutex
	hooks []sip.FnTxResponse

	// out, done and stop are the relay's: see relay.
	out      chan *sip.Response
	done     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
}

var _ sip.ClientTransaction = (*forkedTx)(nil)

// maxProvisional is how many provisional responses the INVITE's waiter
// sees; later ones are dropped. sipgo gives up on an INVITE after ten
// responses, which a forking proxy reaches with the 180s of ten phones,
// and the call takes what it needs from them (ringing, early media) from
// the first few.
const maxProvisional = 6

func newForkedTx(tx sip.ClientTransaction, w *forkWatch) *forkedTx {
	t := &forkedTx{ClientTransaction: tx, w: w,
		out: make(chan *sip.Response), done: make(chan struct{}), stop: make(chan struct{})}
	go t.relay()
	return t
}

// relay hands the transaction's responses to the waiter, past
// maxProvisional only the final ones, one at a time as sipgo does: done
// closes only after the waiter has the last response, so that it never
// sees the transaction end before its final response. It stops when the
// transaction has ended and nothing is being handed over, or when the
// waiter terminates the transaction.
func (t *forkedTx) relay() {
	defer close(t.done)
	in, ended := t.ClientTransaction.Responses(), t.ClientTransaction.Done()
	provisional := 0
	for {
		var res *sip.Response
		select {
		case res = <-in:
		case <-ended:
			return
		case <-t.stop:
			return
		}
		if res.IsProvisional() {
			if provisional >= maxProvisional {
				continue
			}
			provisional++
		}
		select {
		case t.out <- res:
		case <-t.stop:
			return
		}
	}
}

// Responses implements sip.ClientTransaction.
func (t *forkedTx) Responses() <-chan *sip.Response { return t.out }

// Done implements sip.ClientTransaction.
func (t *forkedTx) Done() <-chan struct{} { return t.done }

// Terminate implements sip.ClientTransaction.
func (t *forkedTx) Terminate() {
	t.stopOnce.Do(func() { close(t.stop) })
	t.ClientTransaction.Terminate()
}

// OnRetransmission implements sip.ClientTransaction.
func (t *forkedTx) OnRetransmission(f sip.FnTxResponse) bool {
	select {
	case <-t.ClientTransaction.Done():
		return false
	default:
	}
	t.mu.Lock()
	t.hooks = append(t.hooks, f)
	t.mu.Unlock()
	return true
}

// retransmission gets every 2xx after the first from the transaction.
func (t *forkedTx) retransmission(res *sip.Response) {
	tag := toTag(res)
	t.w.mu.Lock()
	winner := t.w.winner
	t.w.mu.Unlock()
	switch {
	case winner == "" || tag == "":
		// invite has not yet taken in the first 2xx; the UAS retransmits
		// its 2xx until ACKed (RFC 3261 section 13.3.1.4), so nothing is
		// lost by waiting for the next copy.
	case tag == winner:
		t.mu.Lock()
		hooks := slices.Clone(t.hooks)
		t.mu.Unlock()
		for _, f := range hooks {
			f(res)
		}
	default:
		t.w.endFork(res)
	}
}

// forkRequest builds an ACK or BYE in the dialog a 2xx created (RFC 3261
// section 12.1.2): sent to its Contact and routed by its Record-Route in
// reverse, as sipgo routes the winning dialog's requests; the ACK carries
// the INVITE's CSeq number, the BYE the next one (section 12.2.1.1).
func forkRequest(method sip.RequestMethod, res *sip.Response, transport string) (*sip.Request, error) {
	contact, from, to, callID, cseq := res.Contact(), res.From(), res.To(), res.CallID(), res.CSeq()
	if contact == nil || from == nil || to == nil || callID == nil || cseq == nil {
		return nil, errors.New("sipagent: 2xx lacks Contact, From, To, Call-ID or CSeq")
	}
	req := sip.NewRequest(method, *contact.Address.Clone())
	req.SetTransport(transport)
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- {
		req.AppendHeader(sip.NewHeader("Route", rr[i].Value()))
	}
	if r := req.Route(); r != nil && !r.Address.UriParams.Has("lr") {
		// A strict router takes the request by its Request-URI.
		req.Recipient = *r.Address.Clone()
	}
	seq := cseq.SeqNo
	if method != sip.ACK {
		seq++
	}
	req.AppendHeader(sip.HeaderClone(from))
	req.AppendHeader(sip.HeaderClone(to))
	req.AppendHeader(sip.HeaderClone(callID))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	return req, nil
}

// toTag is the To tag of a response, "" if it has none.
func toTag(res *sip.Response) string {
	to := res.To()
	if to == nil {
		return ""
	}
	tag, _ := to.Params.Get("tag")
	return tag
}
