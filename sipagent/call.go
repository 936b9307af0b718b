package sipagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Call is one SIP dialog: an outgoing call returned by Dial, or an
// incoming one announced by IncomingCall.
type Call struct {
	a        *Agent
	id       string // Call-ID
	dialogID string // sipgo's dialog ID, for routing in-dialog requests
	remote   string
	local    *localEnd

	cs *sipgo.DialogClientSession // outgoing
	ss *sipgo.DialogServerSession // incoming
	tx sip.ServerTransaction      // incoming: the INVITE's transaction
	// offer is the caller's SDP offer (incoming).
	offer remoteMedia
	// timers is what the caller's INVITE asked of session timers.
	timers timerRequest
	// decisions carries Accept, Reject and Ringing to the goroutine that
	// owns the INVITE transaction, while the call is pending.
	decisions chan decision
	// settled is closed when an incoming call has been answered or ended.
	settled chan struct{}

	mu     sync.Mutex
	state  int
	media  MediaAnswer
	dlg    dialogState
	reason string // preset end reason (e.g. a BYE raced with the INVITE handler)
	done   chan struct{}
}

const (
	callPending   = iota // incoming, no final response yet
	callAnswering        // incoming, 200 OK sent or being sent
	callActive
	callEnded
)

type decision struct {
	code   int
	reason string
	ended  string      // CallEnded reason after a failure response
	sdp    []byte      // with 2xx
	answer MediaAnswer // with 2xx
	result chan error
}

func newCall(a *Agent, le *localEnd, callID, dialogID, remote string, state int) *Call {
	return &Call{
		a: a, local: le, id: callID, dialogID: dialogID, remote: remote, state: state,
		done: make(chan struct{}), settled: make(chan struct{}),
	}
}

// ID is the SIP Call-ID.
func (c *Call) ID() string { return c.id }

// Remote is the peer's URI: the dialled target, or the caller's From URI.
func (c *Call) Remote() string { return c.remote }

// Done is closed when the call has ended, for whatever reason.
func (c *Call) Done() <-chan struct{} { return c.done }

// EndReason is why the call ended, as CallEnded reports it; "" while it
// has not ended. It is set before Done is closed.
func (c *Call) EndReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != callEnded {
		return ""
	}
	return c.reason
}

// Media is the negotiated stream; zero until the call is answered.
func (c *Call) Media() MediaAnswer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.media
}

// Ringing sends 180 Ringing for a pending incoming call.
func (c *Call) Ringing() error {
	return c.decide(decision{code: sip.StatusRinging, reason: "Ringing"})
}

// Reject answers a pending incoming call with a final failure response
// (3xx-6xx), for example 486 Busy Here or 403 Forbidden.
func (c *Call) Reject(code int, reason string) error {
	if code < 300 || code > 699 {
		return fmt.Errorf("sipagent: reject: bad status %d", code)
	}
	return c.decide(decision{code: code, reason: reason, ended: ReasonRejected})
}

// Accept answers a pending incoming call with 200 OK and our SDP answer,
// waits for the caller's ACK and returns the negotiated media. If the
// offer has nothing in common with local, the call is rejected with 488.
func (c *Call) Accept(ctx context.Context, local MediaOffer) (MediaAnswer, error) {
	if c.ss == nil {
		return MediaAnswer{}, errors.New("sipagent: accept: not an incoming call")
	}
	ans, crypto, err := c.answer(local)
	if err != nil {
		if rerr := c.Reject(sip.StatusNotAcceptableHere, NotAcceptableReason(err)); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return MediaAnswer{}, fmt.Errorf("sipagent: accept: %w", err)
	}
	if !ans.Local.Addr().IsValid() || ans.Local.Addr().IsUnspecified() {
		ans.Local = netip.AddrPortFrom(c.local.ip, local.Addr.Port())
	}
	l := localSDP{addr: ans.Local, codecs: []Codec{ans.Codec}, dtmfPT: ans.DTMFPayloadType, ptime: local.Ptime, dir: ans.Direction,
		savp: c.offer.savp, crypto: crypto}
	err = l.newSession()
	var body []byte
	if err == nil {
		body, err = l.marshal()
	}
	if err != nil {
		return MediaAnswer{}, errors.Join(fmt.Errorf("sipagent: accept: %w", err),
			c.Reject(sip.StatusInternalServerError, "Server Internal Error"))
	}
	caps := local
	caps.Codecs, _ = normalizeCodecs(local.Codecs) // answerFor checked them
	c.mu.Lock()
	c.initServerDialogLocked(caps, l)
	c.mu.Unlock()
	d := decision{code: sip.StatusOK, reason: "OK", sdp: body, answer: ans, result: make(chan error, 1)}
	if err := c.submit(d); err != nil {
		return MediaAnswer{}, fmt.Errorf("sipagent: accept: %w", err)
	}
	select {
	case err := <-d.result:
		if err != nil {
			return MediaAnswer{}, fmt.Errorf("sipagent: accept: %w", err)
		}
		return ans, nil
	case <-ctx.Done():
		// The answer is on the wire; do not leave a call the caller
		// thinks failed up and running.
		c.a.track(func() {
			if <-d.result == nil {
				hctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
				defer cancel()
				_ = c.hangup(hctx, ReasonLocalHangup)
			}
		})
		return MediaAnswer{}, ctx.Err()
	}
}

// Negotiate checks, without answering, that Accept with local can answer
// the call's offer: a codec in common and the SRTP policy met. A station
// calls it to refuse a call it cannot take (488 with NotAcceptableReason)
// before ringing anyone.
func (c *Call) Negotiate(local MediaOffer) error {
	if c.ss == nil {
		return errors.New("sipagent: negotiate: not an incoming call")
	}
	if _, _, err := c.answer(local); err != nil {
		return fmt.Errorf("sipagent: negotiate: %w", err)
	}
	return nil
}

// answer negotiates the answer to the call's offer.
func (c *Call) answer(local MediaOffer) (MediaAnswer, []sdesLine, error) {
	ans, err := answerFor(c.offer, local)
	if err != nil {
		return MediaAnswer{}, nil, err
	}
	mode, err := c.a.sdesMode(local.SRTP)
	if err != nil {
		return MediaAnswer{}, nil, err
	}
	var crypto []sdesLine
	if ans.SRTP, crypto, err = answerSDES(c.offer, mode, SRTPKeys{}); err != nil {
		return MediaAnswer{}, nil, err
	}
	return ans, crypto, nil
}

// decide hands a provisional or failure response to the INVITE's owner
// and waits until it is sent.
func (c *Call) decide(d decision) error {
	if c.ss == nil {
		return errors.New("sipagent: not an incoming call")
	}
	d.result = make(chan error, 1)
	if err := c.submit(d); err != nil {
		return err
	}
	return <-d.result
}

func (c *Call) submit(d decision) error {
	c.mu.Lock()
	switch {
	case c.state != callPending:
		c.mu.Unlock()
		return errors.New("sipagent: call already answered or ended")
	case d.code >= 200:
		c.state = callAnswering // no second final response can follow
	}
	c.mu.Unlock()
	select {
	case c.decisions <- d:
		return nil
	case <-c.settled:
		return errors.New("sipagent: call ended")
	}
}

// Hangup ends the call: BYE when answered, 603 Decline for an incoming
// call not yet answered. Hanging up an ended call does nothing.
func (c *Call) Hangup(ctx context.Context) error {
	return c.hangup(ctx, ReasonLocalHangup)
}

func (c *Call) hangup(ctx context.Context, reason string) error {
	c.mu.Lock()
	state := c.state
	c.mu.Unlock()
	switch state {
	case callEnded:
		return nil
	case callPending:
		code, text := sip.StatusGlobalDecline, "Decline"
		if reason == ReasonShutdown {
			code, text = sip.StatusServiceUnavailable, "Service Unavailable"
		}
		err := c.decide(decision{code: code, reason: text, ended: reason})
		if err == nil || c.isEnded() {
			return nil
		}
		return err
	case callAnswering:
		// Accept is waiting for the ACK; a BYE must follow it (RFC 3261
		// section 15).
		select {
		case <-c.settled:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.isEnded() {
		return nil
	}
	err := c.bye(ctx)
	c.end(reason)
	if err != nil {
		return fmt.Errorf("sipagent: hangup: %w", err)
	}
	return nil
}

// bye sends BYE to the remote target as the dialog's last target refresh
// left it (RFC 3261 section 12.2.1.1), through sipgo's session, which adds
// the route set. A BYE the PBX challenges goes again with credentials.
func (c *Call) bye(ctx context.Context) error {
	c.mu.Lock()
	ready, target := c.dlg.ready, c.dlg.target
	c.mu.Unlock()
	var err error
	switch {
	case !ready && c.cs != nil:
		err = c.cs.Bye(ctx)
	case !ready:
		err = c.ss.Bye(ctx)
	case c.cs != nil:
		err = c.cs.WriteBye(ctx, sip.NewRequest(sip.BYE, *target.Clone()))
	default:
		err = c.ss.WriteBye(ctx, sip.NewRequest(sip.BYE, *target.Clone()))
	}
	var de sipgo.ErrDialogResponse
	if !errors.As(err, &de) || !isChallenge(de.Res) || c.a.cfg.Password == "" {
		return err
	}
	c.mu.Lock()
	if ierr := c.initDialogLocked(); ierr != nil {
		c.mu.Unlock()
		return err
	}
	target = *c.dlg.target.Clone()
	c.mu.Unlock()
	res, err := c.withCredentials(ctx, sip.NewRequest(sip.BYE, target), de.Res)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return &StatusError{Target: c.remote, Code: res.StatusCode, Reason: res.Reason}
	}
	return nil
}

func (c *Call) isEnded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == callEnded
}

func (c *Call) activate(ans MediaAnswer) {
	c.mu.Lock()
	if c.state != callEnded {
		c.state = callActive
		c.media = ans
	}
	c.mu.Unlock()
	c.settle()
}

func (c *Call) settle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.settled:
	default:
		close(c.settled)
	}
}

// presetReason records why the call is ending before the dialog layer
// notices, so that the first, true reason is reported.
func (c *Call) presetReason(reason string) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = reason
	}
	c.mu.Unlock()
}

func (c *Call) clearReason() {
	c.mu.Lock()
	if c.state != callEnded {
		c.reason = ""
	}
	c.mu.Unlock()
}

// end marks the call ended once, closes Done and reports CallEnded.
func (c *Call) end(reason string) {
	c.mu.Lock()
	if c.state == callEnded {
		c.mu.Unlock()
		return
	}
	c.state = callEnded
	c.stopSessionTimerLocked()
	if c.reason != "" {
		reason = c.reason
	}
	c.reason = reason
	close(c.done)
	c.mu.Unlock()
	c.settle()
	c.a.removeCall(c)
	c.a.log.Info("sipagent: call ended", "call", c.id, "remote", c.remote, "reason", reason)
	c.a.emit(CallEnded{Call: c, Reason: reason})
}
