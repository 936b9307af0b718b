package media

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// SRTPSuite is an SRTP crypto suite of SDES (RFC 4568 section 6.2).
type SRTPSuite uint8

const (
	// NoSRTP is plain RTP and RTCP.
	NoSRTP SRTPSuite = iota
	// AESCM128HMACSHA1_80 is AES_CM_128_HMAC_SHA1_80: AES counter mode,
	// 80-bit HMAC-SHA1 tags (RFC 4568 section 6.2.1).
	AESCM128HMACSHA1_80
	// AESCM128HMACSHA1_32 is AES_CM_128_HMAC_SHA1_32: as _80, but RTP
	// tags of 32 bits; SRTCP keeps 80 (RFC 4568 section 6.2.2).
	AESCM128HMACSHA1_32
)

// String returns the suite's SDES name.
func (s SRTPSuite) String() string {
	switch s {
	case NoSRTP:
		return "none"
	case AESCM128HMACSHA1_80:
		return "AES_CM_128_HMAC_SHA1_80"
	case AESCM128HMACSHA1_32:
		return "AES_CM_128_HMAC_SHA1_32"
	}
	return fmt.Sprintf("SRTPSuite(%d)", uint8(s))
}

func (s SRTPSuite) profile() (srtp.ProtectionProfile, bool) {
	switch s {
	case AESCM128HMACSHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, true
	case AESCM128HMACSHA1_32:
		return srtp.ProtectionProfileAes128CmHmacSha1_32, true
	}
	return 0, false
}

// SRTPKeyLen is the length of an SDES key: a 128-bit master key followed
// by a 112-bit master salt (RFC 4568 section 6.1).
const SRTPKeyLen = 30

const (
	srtpMasterKeyLen = 16
	// replayWindow is the replay check's window in packets, RFC 3711
	// section 3.3.2's minimum of 64.
	replayWindow = 64
)

// SRTP is a call's SRTP keying as SDES negotiated it: the suite, and the
// master key and salt of each direction. Each side protects what it sends
// with its own key (RFC 4568 section 6.1). The zero value is plain RTP.
type SRTP struct {
	Suite  SRTPSuite
	Local  [SRTPKeyLen]byte // protects what we send
	Remote [SRTPKeyLen]byte // authenticates and decrypts what we receive
}

// String names the suite only, so that keys never reach a log.
func (k SRTP) String() string { return k.Suite.String() }

// GoString is String: %#v must not print keys either.
func (k SRTP) GoString() string { return k.String() }

// LogValue is String for slog.
func (k SRTP) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText is String, for JSON and other encoders.
func (k SRTP) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

var _ slog.LogValuer = SRTP{}

// check reports whether k can protect a session.
func (k SRTP) check() error {
	if k.Suite == NoSRTP {
		return nil
	}
	if _, ok := k.Suite.profile(); !ok {
		return fmt.Errorf("unsupported srtp suite %d", uint8(k.Suite))
	}
	return nil
}

// errSRTPFailed marks a packet refused by SRTP: too short, a wrong tag, or
// a replay.
var errSRTPFailed = errors.New("srtp: packet refused")

// maxStrangers is how many packets failing authentication with an SSRC
// never authenticated the receive contexts take in before they are made
// afresh: pion keeps state per SSRC before it checks the tag, and a forger
// could otherwise grow it without bound.
const maxStrangers = 256

// maxKnownSSRCs bounds the authenticated SSRCs whose rollover counters
// survive a renewal; a call has one, or a few across re-INVITEs.
const maxKnownSSRCs = 4

// srtpState protects and unprotects one session's packets; nil contexts
// mean plain RTP. The frame loop owns txRTP and txHdr; Session.mu guards
// the rest.
type srtpState struct {
	keys           SRTP
	txRTP, txRTCP  *srtp.Context
	rxRTP, rxRTCP  *srtp.Context
	txHdr, rxHdr   rtp.Header
	known          []uint32 // SSRCs that authenticated on rxRTP
	strangers      int
	srtcpStrangers int
}

// newSRTPState makes the contexts for keys; a zero suite is plain RTP.
func newSRTPState(keys SRTP) (srtpState, error) {
	st := srtpState{keys: keys, known: make([]uint32, 0, maxKnownSSRCs)}
	if keys.Suite == NoSRTP {
		return st, nil
	}
	var err error
	if st.txRTP, err = newSRTPContext(keys.Suite, keys.Local); err != nil {
		return srtpState{}, err
	}
	if st.txRTCP, err = newSRTPContext(keys.Suite, keys.Local); err != nil {
		return srtpState{}, err
	}
	if st.rxRTP, err = newSRTPContext(keys.Suite, keys.Remote); err != nil {
		return srtpState{}, err
	}
	if st.rxRTCP, err = newSRTPContext(keys.Suite, keys.Remote); err != nil {
		return srtpState{}, err
	}
	return st, nil
}

// newSRTPContext makes one direction's context for RTP or RTCP: a pion
// Context is not safe for concurrent use, and RTP and RTCP are sent from
// different goroutines. Replays are refused (RFC 3711 section 3.3.2).
func newSRTPContext(suite SRTPSuite, key [SRTPKeyLen]byte) (*srtp.Context, error) {
	profile, ok := suite.profile()
	if !ok {
		return nil, fmt.Errorf("media: srtp: unsupported suite %d", uint8(suite))
	}
	c, err := srtp.CreateContext(key[:srtpMasterKeyLen], key[srtpMasterKeyLen:], profile,
		srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow))
	if err != nil {
		return nil, fmt.Errorf("media: srtp: %w", err)
	}
	return c, nil
}

// protectRTP protects the RTP packet b in place, when b's capacity holds
// the tag (10 bytes at most), as the sender's buffer does. Plain RTP
// returns b.
func (st *srtpState) protectRTP(b []byte) ([]byte, error) {
	if st.txRTP == nil {
		return b, nil
	}
	out, err := st.txRTP.EncryptRTP(b, b, &st.txHdr)
	if err != nil {
		return nil, fmt.Errorf("media: srtp: protect: %w", err)
	}
	return out, nil
}

// unprotectRTP authenticates and decrypts the SRTP packet b in place and
// returns the RTP packet; plain RTP returns b. Errors wrap errSRTPFailed.
func (st *srtpState) unprotectRTP(b []byte) ([]byte, error) {
	if st.rxRTP == nil {
		return b, nil
	}
	out, err := st.rxRTP.DecryptRTP(b, b, &st.rxHdr)
	if err == nil {
		if !slices.Contains(st.known, st.rxHdr.SSRC) {
			if len(st.known) == maxKnownSSRCs {
				st.known = slices.Delete(st.known, 0, 1)
			}
			st.known = append(st.known, st.rxHdr.SSRC)
		}
		return out, nil
	}
	if len(b) >= 12 && !slices.Contains(st.known, st.rxHdr.SSRC) {
		if st.strangers++; st.strangers >= maxStrangers {
			st.renewRTP()
		}
	}
	return nil, fmt.Errorf("%w: %w", errSRTPFailed, err)
}

// renewRTP makes the receive RTP context afresh, keeping the rollover
// counters of the SSRCs that authenticated (RFC 3711 section 3.3.1).
func (st *srtpState) renewRTP() {
	st.strangers = 0
	c, err := newSRTPContext(st.keys.Suite, st.keys.Remote)
	if err != nil {
		return // the keys made a context before; they cannot fail now
	}
	for _, ssrc := range st.known {
		if roc, ok := st.rxRTP.ROC(ssrc); ok {
			c.SetROC(ssrc, roc)
		}
	}
	st.rxRTP = c
}

// protectRTCP protects a compound RTCP packet; plain RTCP returns b.
func (st *srtpState) protectRTCP(b []byte) ([]byte, error) {
	if st.txRTCP == nil {
		return b, nil
	}
	out, err := st.txRTCP.EncryptRTCP(nil, b, nil)
	if err != nil {
		return nil, fmt.Errorf("media: srtcp: protect: %w", err)
	}
	return out, nil
}

// unprotectRTCP authenticates and decrypts an SRTCP packet (RFC 3711
// section 3.4) into a new buffer; plain RTCP returns b. Errors wrap
// errSRTPFailed.
func (st *srtpState) unprotectRTCP(b []byte) ([]byte, error) {
	if st.rxRTCP == nil {
		return b, nil
	}
	out, err := st.rxRTCP.DecryptRTCP(nil, b, nil)
	if err != nil {
		// SRTCP carries its index, so a renewed context loses nothing
		// but the replay window.
		if st.srtcpStrangers++; st.srtcpStrangers >= maxStrangers {
			st.srtcpStrangers = 0
			if c, cerr := newSRTPContext(st.keys.Suite, st.keys.Remote); cerr == nil {
				st.rxRTCP = c
			}
		}
		return nil, fmt.Errorf("%w: %w", errSRTPFailed, err)
	}
	return out, nil
}
