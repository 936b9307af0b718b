package sipagent

import (
	"fmt"
	"net/netip"
	"time"
)

// Event is something the agent reports on Agent.Events.
type Event interface{ event() }

// Registration states reported in RegistrationChanged.State.
const (
	StateDisabled    = "disabled" // no registrar configured (peer-to-peer)
	StateRegistering = "registering"
	StateRegistered  = "registered"
	StateFailed      = "failed"
)

// RegistrationChanged reports a registration attempt's outcome. A
// "registered" event is also sent on every successful refresh, with the new
// expiry.
type RegistrationChanged struct {
	State     string
	Registrar string
	Expires   time.Time // when the binding lapses; zero unless registered
	Err       error     // why it failed; nil unless failed
	Transport string    // "udp" or "tcp"
	// Addr is the registrar's (or outbound proxy's) address that answered
	// the last successful REGISTER; zero until one did.
	Addr netip.AddrPort
}

// IncomingCall is an INVITE with an acceptable offer, waiting for
// Call.Accept or Call.Reject (or the caller's CANCEL, or the answer timeout).
type IncomingCall struct {
	Call *Call
	// From is the caller's URI from the From header.
	From string
	// Source is the transport address the INVITE came from.
	Source netip.AddrPort
	// FromProxy is true when Source's IP is the registrar's or the outbound
	// proxy's.
	FromProxy bool
}

// CallEnded is sent exactly once for every Call the agent has handed out
// (through IncomingCall or Dial), whatever ended it.
type CallEnded struct {
	Call   *Call
	Reason string
}

// DTMF is a digit received in a SIP INFO request.
type DTMF struct {
	Call  *Call
	Digit rune
}

// MediaChanged reports that an established call's media changed: a
// re-INVITE or UPDATE moved the peer's address, switched the codec, or put
// the call on hold or took it off (RFC 3264 section 8). Media is the whole
// new stream, as Call.Media now returns it.
type MediaChanged struct {
	Call  *Call
	Media MediaAnswer
}

// CheckSync is a NOTIFY with the check-sync event package from the
// registrar or outbound proxy: the PBX asks the station to fetch its
// configuration now.
type CheckSync struct {
	// Source is the transport address the NOTIFY came from.
	Source netip.AddrPort
}

func (RegistrationChanged) event() {}
func (IncomingCall) event()        {}
func (CallEnded) event()           {}
func (DTMF) event()                {}
func (CheckSync) event()           {}
func (MediaChanged) event()        {}

// Reasons in CallEnded.
const (
	ReasonRemoteHangup = "remote hangup"
	ReasonLocalHangup  = "local hangup"
	ReasonCancelled    = "cancelled" // the caller gave up before an answer
	ReasonNoAnswer     = "no answer" // nobody accepted or rejected in time
	ReasonRejected     = "rejected"  // Call.Reject
	ReasonFailed       = "failed"    // answering failed (for example no ACK)
	ReasonShutdown     = "shutdown"  // the agent stopped
	// ReasonSessionExpired: no session refresh came in time (RFC 4028
	// section 10), or a refresh failed with 408 or 481.
	ReasonSessionExpired = "session expired"
)

// StatusError is a final failure response to an INVITE or REGISTER.
type StatusError struct {
	Target string
	Code   int
	Reason string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.Target, e.Code, e.Reason)
}
