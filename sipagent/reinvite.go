package sipagent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// dialogState is what a call keeps of its dialog beyond sipgo's session,
// for re-INVITE, UPDATE and session refreshes; guarded by Call.mu.
type dialogState struct {
	ready bool
	// target is the peer's Contact (RFC 3261 section 12.2.1.1), refreshed
	// by its re-INVITEs and UPDATEs (section 12.2.2).
	target    sip.Uri
	peerAllow string
	// caps is what we accept in a new offer: codecs, DTMF and ptime.
	caps MediaOffer
	// sdp is the session description we last sent.
	sdp localSDP
	// remoteCSeq is the peer's last offer-bearing request (section 12.2.2).
	remoteCSeq uint32
	outPending bool // a re-INVITE or UPDATE of ours is in progress
	inPending  bool // one of the peer's is
	// acks wait for the ACK of a 2xx to the peer's re-INVITE, by CSeq.
	acks  map[uint32]chan *sip.Request
	st    *sessionTimer
	stGen uint64
	// acked is our last re-INVITE whose 2xx we ACKed, to ACK again when
	// the 2xx is retransmitted after its transaction ended (RFC 3261
	// section 13.2.2.4): the first ACK was lost.
	acked struct {
		seq    uint32
		target sip.Uri
	}
}

// statusIntervalTooSmall is 422 (RFC 4028 section 6); sipgo has no name
// for it.
const statusIntervalTooSmall = 422

// errBusy is an in-dialog request of ours that must wait for one in
// progress (RFC 3261 section 14.1).
var errBusy = errors.New("sipagent: offer in progress")

// initDialogLocked fills the dialog state from sipgo's session the first
// time it is needed; c.mu is held. An incoming call has it from Accept.
func (c *Call) initDialogLocked() error {
	if c.dlg.ready {
		return nil
	}
	if c.cs == nil || c.cs.InviteResponse == nil {
		return errors.New("sipagent: call not established")
	}
	// Our INVITE's offer lists everything we accept; its o= line is the
	// session our later descriptions continue.
	offered, err := parseLocalSDP(c.cs.InviteRequest.Body())
	if err != nil {
		return fmt.Errorf("sipagent: own offer: %w", err)
	}
	c.dlg.caps = MediaOffer{Addr: offered.addr, Codecs: offered.codecs, DTMF: offered.dtmfPT != 0, Ptime: offered.ptime}
	// Later offers carry the keying the answer chose, not every suite
	// the first offer listed.
	offered.crypto = ownSDES(c.media.SRTP)
	offered.savp = offered.savp && offered.crypto != nil
	c.dlg.sdp = offered
	c.dlg.target = c.cs.InviteRequest.Recipient
	if h := c.cs.InviteResponse.Contact(); h != nil {
		c.dlg.target = *h.Address.Clone()
	}
	if h := c.cs.InviteResponse.GetHeader("Allow"); h != nil {
		c.dlg.peerAllow = h.Value()
	}
	c.dlg.acks = map[uint32]chan *sip.Request{}
	c.dlg.ready = true
	return nil
}

// initServerDialogLocked records an incoming call's dialog once Accept has
// built the answer body; c.mu is held.
func (c *Call) initServerDialogLocked(caps MediaOffer, sdp localSDP) {
	req := c.ss.InviteRequest
	c.dlg.caps, c.dlg.sdp = caps, sdp
	if h := req.Contact(); h != nil {
		c.dlg.target = *h.Address.Clone()
	}
	if h := req.GetHeader("Allow"); h != nil {
		c.dlg.peerAllow = h.Value()
	}
	if h := req.CSeq(); h != nil {
		c.dlg.remoteCSeq = h.SeqNo
	}
	c.dlg.acks = map[uint32]chan *sip.Request{}
	c.dlg.ready = true
}

// admit checks a peer's re-INVITE or UPDATE against the dialog (RFC 3261
// sections 12.2.2 and 14.2, RFC 3311 section 5.2) and marks it in
// progress; a non-zero code is the failure to answer with.
func (c *Call) admit(req *sip.Request) (int, string, []sip.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != callActive {
		// The initial INVITE's offer/answer is not complete yet.
		return sip.StatusRequestPending, "Request Pending", nil
	}
	if err := c.initDialogLocked(); err != nil {
		c.a.log.Debug("sipagent: in-dialog request", "call", c.id, "err", err)
		return sip.StatusInternalServerError, "Server Internal Error", nil
	}
	seq := req.CSeq().SeqNo
	if seq <= c.dlg.remoteCSeq && c.dlg.remoteCSeq != 0 {
		return sip.StatusInternalServerError, "Server Internal Error", nil
	}
	switch {
	case c.dlg.outPending:
		return sip.StatusRequestPending, "Request Pending", nil
	case c.dlg.inPending:
		return sip.StatusInternalServerError, "Server Internal Error",
			[]sip.Header{sip.NewHeader("Retry-After", strconv.Itoa(rand.IntN(10)))}
	}
	c.dlg.remoteCSeq = seq
	c.dlg.inPending = true
	// A target refresh request updates the remote target (section 12.2.2).
	if h := req.Contact(); h != nil {
		c.dlg.target = *h.Address.Clone()
	}
	if h := req.GetHeader("Allow"); h != nil {
		c.dlg.peerAllow = h.Value()
	}
	return 0, "", nil
}

func (c *Call) release() {
	c.mu.Lock()
	c.dlg.inPending = false
	c.mu.Unlock()
}

// unsupportedRequire lists the option tags of a request's Require headers
// that we do not support (RFC 3261 section 8.2.2.3); we support timer.
func unsupportedRequire(req *sip.Request) []string {
	var out []string
	for _, h := range req.GetHeaders("Require") {
		for t := range strings.SplitSeq(h.Value(), ",") {
			if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, optionTimer) {
				out = append(out, t)
			}
		}
	}
	return out
}

// hasSDP tells whether a message carries an SDP body; a body of another
// type is refused by the caller.
func hasSDP(m sip.Message) bool {
	return len(m.Body()) > 0
}

func sdpContentType(m headerReader) bool {
	h := m.GetHeader("Content-Type")
	if h == nil {
		return true
	}
	ct, _, _ := strings.Cut(strings.ToLower(h.Value()), ";")
	return strings.TrimSpace(ct) == "application/sdp"
}

// answerOfferLocked builds our answer to a new offer in the dialog: the
// same local port, a codec chosen afresh from the offer, the mirrored
// direction (RFC 3264 section 8); c.mu is held. It changes nothing.
func (c *Call) answerOfferLocked(offer remoteMedia) (localSDP, MediaAnswer, error) {
	ans, err := answerFor(offer, c.dlg.caps)
	if err != nil {
		return localSDP{}, MediaAnswer{}, err
	}
	// A call does not switch between RTP and SRTP: an SRTP call needs
	// keys in every offer, a plain one ignores them.
	srtp := c.media.SRTP.Suite != ""
	var crypto []sdesLine
	if ans.SRTP, crypto, err = answerSDES(offer, sdesMode{keys: srtp, required: srtp}, c.media.SRTP); err != nil {
		return localSDP{}, MediaAnswer{}, err
	}
	if offer.addr.Addr().IsUnspecified() {
		// Old-style hold names no address; media keeps its last one.
		ans.Remote = c.media.Remote
	}
	ans.Local = c.media.Local
	l := c.dlg.sdp.next(localSDP{
		addr: ans.Local, codecs: []Codec{ans.Codec}, dtmfPT: ans.DTMFPayloadType,
		ptime: c.dlg.caps.Ptime, dir: ans.Direction, savp: offer.savp, crypto: crypto,
	})
	return l, ans, nil
}

// offerLocked is our offer when the peer's request carried none: the
// stream as it runs, asking for sendrecv (RFC 6337 section 5.3: an offer
// in a 2xx does not keep a hold nobody asked for); c.mu is held.
func (c *Call) offerLocked() localSDP {
	return c.dlg.sdp.next(localSDP{
		addr: c.media.Local, codecs: []Codec{c.media.Codec}, dtmfPT: c.media.DTMFPayloadType,
		ptime: c.dlg.caps.Ptime, savp: c.dlg.sdp.savp, crypto: ownSDES(c.media.SRTP),
	})
}

// applyMedia makes m the call's media and reports the change.
func (c *Call) applyMedia(m MediaAnswer) {
	c.mu.Lock()
	changed := c.setMediaLocked(m)
	c.mu.Unlock()
	if changed {
		c.mediaChanged()
	}
}

// setMediaLocked makes m the call's media; false when nothing changed.
// c.mu is held.
func (c *Call) setMediaLocked(m MediaAnswer) bool {
	if c.state != callActive || c.media == m {
		return false
	}
	c.media = m
	return true
}

// mediaChanged reports the call's media as it is now, so that when two
// changes race to be reported, the later report carries the final state.
func (c *Call) mediaChanged() {
	m := c.Media()
	c.a.log.Info("sipagent: call media changed", "call", c.id, "media", m)
	c.a.emit(MediaChanged{Call: c, Media: m})
}

// okResponse is a 2xx to an in-dialog request with our Contact, what we
// allow and support, and an optional SDP body.
func (c *Call) okResponse(req *sip.Request, body []byte, extra []sip.Header) *sip.Response {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.AppendHeader(c.local.dua.ContactHDR.Clone())
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	for _, h := range extra {
		res.AppendHeader(h)
	}
	if body != nil {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res.SetBody(body)
	}
	return res
}

// negotiateRefresh reads a refreshing request's Session-Expires; when
// it has none, a running timer keeps its interval and refresher.
func (c *Call) negotiateRefresh(req *sip.Request) (timerRequest, error) {
	tr, err := readTimerRequest(req)
	if err != nil || tr.se != 0 {
		return tr, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.dlg.st; st != nil {
		tr.se, tr.weRefresh = st.interval, st.weRefresh || !tr.peerTimer
	}
	return tr, nil
}

// refreshed restarts the session timer after a successful refresh.
func (c *Call) refreshed(tr timerRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tr.se == 0 {
		c.stopSessionTimerLocked()
		return
	}
	c.setSessionTimerLocked(tr.se, tr.weRefresh)
}

// serveInDialog answers a peer's re-INVITE or UPDATE: an offer gets our
// answer in the 2xx; a re-INVITE without one gets our offer, answered in
// the ACK; an UPDATE without one only refreshes the session (RFC 3311,
// RFC 4028). Either is a session refresh.
func (c *Call) serveInDialog(ctx context.Context, req *sip.Request, tx sip.ServerTransaction) {
	a := c.a
	if u := unsupportedRequire(req); len(u) > 0 {
		a.respond(req, tx, sip.StatusBadExtension, "Bad Extension", sip.NewHeader("Unsupported", strings.Join(u, ", ")))
		return
	}
	if hasSDP(req) && !sdpContentType(req) {
		a.respond(req, tx, sip.StatusUnsupportedMediaType, "Unsupported Media Type", sip.NewHeader("Accept", "application/sdp"))
		return
	}
	tr, err := c.negotiateRefresh(req)
	if errors.Is(err, errSessionTooSmall) {
		a.respond(req, tx, statusIntervalTooSmall, "Session Interval Too Small", minSEHeader())
		return
	}
	if err != nil {
		a.respond(req, tx, sip.StatusBadRequest, "Bad Request")
		return
	}
	if code, reason, hdrs := c.admit(req); code != 0 {
		a.respond(req, tx, code, reason, hdrs...)
		return
	}
	pending := true
	defer func() {
		if pending {
			c.release()
		}
	}()

	isInvite := req.IsInvite()
	var body []byte
	var ans MediaAnswer
	var l localSDP
	offered := hasSDP(req)
	c.mu.Lock()
	if offered {
		offer, perr := parseSDP(req.Body())
		if perr == nil {
			l, ans, perr = c.answerOfferLocked(offer)
		}
		if perr != nil {
			c.mu.Unlock()
			a.log.Info("sipagent: in-dialog offer refused", "call", c.id, "method", req.Method, "err", perr)
			// Released before the answer leaves: the peer may send its
			// next offer the moment it has the answer.
			c.release()
			pending = false
			if errors.Is(perr, errSDPSyntax) {
				a.respond(req, tx, sip.StatusBadRequest, "Bad Request")
			} else {
				a.respond(req, tx, sip.StatusNotAcceptableHere, "Not Acceptable Here")
			}
			return
		}
	} else if isInvite {
		l = c.offerLocked()
	}
	c.mu.Unlock()
	if offered || isInvite {
		if body, err = l.marshal(); err != nil {
			c.release()
			pending = false
			a.respond(req, tx, sip.StatusInternalServerError, "Server Internal Error")
			return
		}
	}

	var ackCh chan *sip.Request
	if isInvite {
		ackCh = c.expectAck(req.CSeq().SeqNo)
		defer c.forgetAck(req.CSeq().SeqNo)
	}
	// The 2xx is the refresh (RFC 4028 section 10): the new interval runs
	// from when it leaves. With it, an offer of the peer's is answered and
	// the exchange complete: the next one may start before any ACK (RFC
	// 3261 section 14.2), so the state changes before the 2xx goes out.
	c.refreshed(tr)
	c.mu.Lock()
	if body != nil {
		c.dlg.sdp = l
	}
	changed := offered && c.setMediaLocked(ans)
	if offered || !isInvite {
		c.dlg.inPending, pending = false, false
	}
	c.mu.Unlock()
	res := c.okResponse(req, body, tr.headers())
	if err := tx.Respond(res); err != nil {
		a.log.Debug("sipagent: in-dialog 2xx", "call", c.id, "err", err)
	}
	if changed {
		c.mediaChanged()
	}
	if !isInvite {
		return
	}
	ack := c.waitAck(ctx, tx, res, ackCh)
	if ack == nil {
		// RFC 3261 section 13.3.1.4: no ACK within 64*T1 ends the session.
		a.log.Info("sipagent: no ACK for re-INVITE 2xx", "call", c.id)
		c.hangupAsync(ReasonFailed)
		return
	}
	if offered {
		return
	}
	// The ACK carries the answer to the offer in our 2xx (RFC 3264
	// section 5); without a usable one the session cannot go on
	// (RFC 3261 section 13.3.1.4).
	if err := c.applyAnswer(ack.Body(), l); err != nil {
		a.log.Info("sipagent: ACK without a usable answer", "call", c.id, "err", err)
		c.hangupAsync(ReasonFailed)
	}
}

// applyAnswer applies the peer's SDP answer to our offer l; an unusable
// one changes nothing.
func (c *Call) applyAnswer(body []byte, l localSDP) error {
	rm, err := parseSDP(body)
	var m MediaAnswer
	if err == nil {
		// An SRTP call stays one (see answerOfferLocked).
		m, err = answerToOffer(rm, l, l.dtmfPT != 0, len(l.crypto) > 0)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	m.Local = c.media.Local
	if rm.addr.Addr().IsUnspecified() {
		m.Remote = c.media.Remote
	}
	c.mu.Unlock()
	c.applyMedia(m)
	return nil
}

func (c *Call) hangupAsync(reason string) {
	c.a.track(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		if err := c.hangup(ctx, reason); err != nil {
			c.a.log.Debug("sipagent: hangup", "call", c.id, "err", err)
		}
	})
}

func (c *Call) expectAck(seq uint32) chan *sip.Request {
	ch := make(chan *sip.Request, 1)
	c.mu.Lock()
	c.dlg.acks[seq] = ch
	c.mu.Unlock()
	return ch
}

func (c *Call) forgetAck(seq uint32) {
	c.mu.Lock()
	delete(c.dlg.acks, seq)
	c.mu.Unlock()
}

// takeAck hands an ACK to the re-INVITE waiting for it; false when none is.
func (c *Call) takeAck(req *sip.Request) bool {
	h := req.CSeq()
	if h == nil {
		return false
	}
	c.mu.Lock()
	ch, ok := c.dlg.acks[h.SeqNo]
	c.mu.Unlock()
	if ok {
		select {
		case ch <- req:
		default: // a retransmitted ACK
		}
	}
	return ok
}

// waitAck waits for the ACK of our 2xx to a re-INVITE, retransmitting the
// 2xx over UDP from T1 doubling up to T2, for at most 64*T1 (RFC 3261
// section 13.3.1.4); nil when none came.
func (c *Call) waitAck(ctx context.Context, tx sip.ServerTransaction, res *sip.Response, acks <-chan *sip.Request) *sip.Request {
	clk := c.a.clk
	giveUp := clk.NewTimer(64 * sip.T1)
	defer giveUp.Stop()
	interval := sip.T1
	retransmit := clk.NewTimer(interval)
	defer retransmit.Stop()
	reliable := !strings.EqualFold(res.Transport(), "UDP")
	for {
		select {
		case ack := <-acks:
			return ack
		case <-retransmit.C():
			if !reliable {
				if err := tx.Respond(res); err != nil {
					c.a.log.Debug("sipagent: 2xx retransmission", "call", c.id, "err", err)
				}
			}
			interval = min(2*interval, sip.T2)
			retransmit.Reset(interval)
		case <-giveUp.C():
			return nil
		case <-c.done:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// refresh sends our session refresh with interval se (RFC 4028 section
// 10): UPDATE without a body when the peer allows UPDATE, else a re-INVITE
// with our unchanged SDP. The 2xx's Session-Expires sets the next interval.
func (c *Call) refresh(ctx context.Context, se time.Duration) error {
	c.mu.Lock()
	if c.state != callActive {
		c.mu.Unlock()
		return errors.New("sipagent: refresh: call not active")
	}
	if err := c.initDialogLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	if c.dlg.inPending || c.dlg.outPending {
		c.mu.Unlock()
		return errBusy
	}
	c.dlg.outPending = true
	target := *c.dlg.target.Clone()
	useUpdate := hasMethod(c.dlg.peerAllow, "UPDATE")
	l := c.dlg.sdp
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.dlg.outPending = false
		c.mu.Unlock()
	}()

	method := sip.INVITE
	if useUpdate {
		method = sip.UPDATE
	}
	req := sip.NewRequest(method, target)
	req.AppendHeader(c.local.dua.ContactHDR.Clone())
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	req.AppendHeader(sip.NewHeader("Supported", optionTimer))
	req.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=uac", int(se.Seconds()))))
	req.AppendHeader(minSEHeader())
	req.AppendHeader(sip.NewHeader("User-Agent", c.a.cfg.UserAgent))
	if !useUpdate {
		body, err := l.marshal()
		if err != nil {
			return err
		}
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(body)
	}
	res, err := c.do(ctx, req)
	if err != nil {
		return fmt.Errorf("sipagent: refresh: %w", err)
	}
	if !res.IsSuccess() {
		return fmt.Errorf("sipagent: refresh: %w", &StatusError{Target: c.remote, Code: res.StatusCode, Reason: res.Reason})
	}
	c.mu.Lock()
	if h := res.Contact(); h != nil {
		c.dlg.target = *h.Address.Clone()
	}
	c.mu.Unlock()
	if !useUpdate {
		if cseq := res.CSeq(); cseq != nil {
			c.mu.Lock()
			c.dlg.acked.seq, c.dlg.acked.target = cseq.SeqNo, target
			c.mu.Unlock()
		}
		if err := c.ackReinvite(target); err != nil {
			return fmt.Errorf("sipagent: refresh: ACK: %w", err)
		}
		c.answered(res, l)
	}
	nse, refresher, ok, perr := parseSessionExpires(res)
	if perr != nil {
		c.a.log.Debug("sipagent: refresh response", "call", c.id, "err", perr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok {
		// RFC 4028 section 7.4: no Session-Expires in the 2xx, no timer.
		c.stopSessionTimerLocked()
		return nil
	}
	c.setSessionTimerLocked(nse, refresher != "uas")
	return nil
}

// answered applies the SDP answer in the 2xx to our re-INVITE offer l.
func (c *Call) answered(res *sip.Response, l localSDP) {
	if err := c.applyAnswer(res.Body(), l); err != nil {
		c.a.log.Info("sipagent: re-INVITE answer unusable; media unchanged", "call", c.id, "err", err)
	}
}

// do sends an in-dialog request through sipgo's session, which adds the
// dialog's headers and route set (RFC 3261 section 12.2.1.1), and waits
// for the final response; a challenge is answered with credentials.
func (c *Call) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	res, err := c.send(ctx, req)
	if err != nil || !isChallenge(res) || c.a.cfg.Password == "" {
		return res, err
	}
	return c.withCredentials(ctx, req, res)
}

func (c *Call) send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if c.cs != nil {
		return c.cs.Do(ctx, req)
	}
	return c.ss.Do(ctx, req)
}

// withCredentials answers the challenge res to the in-dialog request req
// and sends it again, as long as challenges come that it can answer (RFC
// 3261 section 22.2: a PBX may challenge requests inside a call too).
func (c *Call) withCredentials(ctx context.Context, req *sip.Request, res *sip.Response) (*sip.Response, error) {
	return c.a.answerChallenges(ctx, req, res, func(ctx context.Context, req *sip.Request) (*sip.Response, error) {
		// The session adds the route set to every request it sends.
		for req.RemoveHeader("Route") {
		}
		return c.send(ctx, req)
	})
}

// reack ACKs again a retransmission of the 2xx to our last re-INVITE;
// false if res is not one.
func (c *Call) reack(res *sip.Response) bool {
	cseq := res.CSeq()
	c.mu.Lock()
	seq, target := c.dlg.acked.seq, c.dlg.acked.target
	c.mu.Unlock()
	if cseq == nil || seq == 0 || cseq.SeqNo != seq {
		return false
	}
	if err := c.ackReinvite(target); err != nil {
		c.a.log.Debug("sipagent: ACK again", "call", c.id, "err", err)
	}
	return true
}

// ackReinvite ACKs the 2xx to our re-INVITE (RFC 3261 section 13.2.2.4);
// sipgo's session gives it the re-INVITE's CSeq and the route set.
func (c *Call) ackReinvite(target sip.Uri) error {
	ack := sip.NewRequest(sip.ACK, target)
	ack.AppendHeader(c.local.dua.ContactHDR.Clone())
	if c.cs != nil {
		return c.cs.WriteRequest(ack)
	}
	return c.ss.WriteRequest(ack)
}

// hasMethod reports whether an Allow header value lists method.
func hasMethod(allow, method string) bool {
	for m := range strings.SplitSeq(allow, ",") {
		if strings.EqualFold(strings.TrimSpace(m), method) {
			return true
		}
	}
	return false
}
